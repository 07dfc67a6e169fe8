"""Call-centre quality assurance and speech analytics."""

import os

# Nothing may touch the network at run time: fail fast instead of retrying a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

__version__ = "0.1.0"

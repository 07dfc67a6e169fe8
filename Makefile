# The two commands a newcomer needs: `make demo` and `make test`. Both set up on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
QA := $(VENV)/bin/qa
export HF_HUB_OFFLINE := 1
export PYANNOTE_METRICS_ENABLED := 0

.PHONY: setup demo test test-fast lint bench serve clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(QA) demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not integration and not browser"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(QA) bench asr
	$(QA) bench diarization --long-minutes 60
	$(QA) bench scoring
	$(QA) bench sentiment
	$(QA) bench index
	$(QA) bench pipeline
	$(QA) bench live
	$(PY) -m pytest -q -s tests/test_dashboard_apptest.py -k 100k_calls
	QA_BENCH=1 $(PY) -m pytest -q -s tests/test_workspace_bench.py

serve: setup
	$(QA) serve

clean:
	rm -rf .qa .pytest_cache .ruff_cache

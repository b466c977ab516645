#!/bin/bash
# Reproduce models/ternvk-shakespeare and tests/fixtures/ternvk-shakespeare.json:
# setup, tokenizer + training (train.py), export + fixtures (export.py), NumPy round-trip check.
# Extra arguments go to train.py (e.g. --steps 30 for a quick pipeline check).
# Use /usr/bin/python3 (Debian's, which sees python3-torch), 2 threads, nice 10.
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
if [ "$(id -u)" = 0 ]; then bash ./setup.sh; fi
mkdir -p work
nice -n 10 $PY train.py "$@" 2>&1 | tee work/train.log
nice -n 10 $PY export.py 2>&1 | tee work/export.log
nice -n 10 $PY reference_forward.py 2>&1 | tee work/reference.log

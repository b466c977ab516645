#!/bin/sh
# Install what tools/train needs on a fresh Debian bookworm machine (run as root). Idempotent.
set -eu
need=""
/usr/bin/python3 -c "import torch" 2>/dev/null || need="$need python3-torch"
/usr/bin/python3 -c "import numpy" 2>/dev/null || need="$need python3-numpy"
/usr/bin/python3 -c "import matplotlib" 2>/dev/null || need="$need python3-matplotlib"
/usr/bin/python3 -c "import sentencepiece" 2>/dev/null || need="$need python3-sentencepiece"
command -v spm_train >/dev/null 2>&1 || need="$need sentencepiece"
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need="$need libopenblas0-pthread"
if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends $need
fi
echo "tools/train/setup.sh: dependencies present"

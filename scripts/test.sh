#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite on the machine's Vulkan device
# (lavapipe when there is no GPU) with the Khronos validation layer on.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"

#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: `ternvk run` on the model that ships in
# the repo, on the best Vulkan device of this machine. Extra arguments go to `ternvk run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
./build/apps/ternvk run "$@"

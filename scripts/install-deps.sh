#!/usr/bin/env bash
# Installs every Debian (bookworm) package ternvk needs to build, run and test. Idempotent; runs as
# root on a fresh machine (uses sudo when not root).
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libvulkan-dev mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
  glslang-tools spirv-tools
  libglm-dev libsentencepiece-dev libpcre2-dev nlohmann-json3-dev libcli11-dev
  doctest-dev
  libcpp-httplib-dev curl
  libimgui-dev libstb-dev libglfw3-dev fonts-dejavu-core xvfb xauth
  python3 dpkg-dev file binutils
)
missing=()
for p in "${packages[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == *"install ok installed"* ]] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

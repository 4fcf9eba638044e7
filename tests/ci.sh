#!/usr/bin/env bash
# The test command of a fresh machine: installs what the tests need (lavapipe for wgpu, PoCL and
# the OpenCL loader for the ocl feature, a TrueType font for charts) when missing, then fmt, clippy and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers libvulkan1)
[ -e /etc/OpenCL/vendors/pocl.icd ] || missing+=(pocl-opencl-icd)
ls /usr/lib/*/libOpenCL.so >/dev/null 2>&1 || missing+=(ocl-icd-opencl-dev)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# lavapipe and PoCL are installed above, so the wgpu and OpenCL tests must find them, not skip.
export TILEGEMM_REQUIRE_WGPU=1 TILEGEMM_REQUIRE_OCL=1
# A fresh user cache: device calibrations and tuning rows of earlier runs must not decide this one.
TILEGEMM_CACHE=$(mktemp -d)
export TILEGEMM_CACHE
trap 'rm -rf "$TILEGEMM_CACHE"' EXIT
cargo fmt --all -- --check
cargo clippy --all-targets --all-features -- -D warnings
cargo test --all-features

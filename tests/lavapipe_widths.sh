#!/usr/bin/env bash
# The tests that hold bits across pipelines (fused layers vs the separate ops, a sequence alone vs in a
# batch) and the matrix-unit GEMMs (emulated), again with lavapipe's subgroups 16 lanes wide (LP_NATIVE_VECTOR_WIDTH=512 on a CPU with
# AVX-512): the default 8 lanes hide lane-count and reduction-order assumptions a GPU's 32 or 64 would
# not. Skipped (exit 77, which ctest reports as skipped) where the default device does not run 16 wide.
#   lavapipe_widths.sh CLI TEST_DIR
set -euo pipefail
cli=$1 tests=$2
export LP_NATIVE_VECTOR_WIDTH=512 TERNVK_VALIDATION=1
if ! "$cli" devices | grep -q "subgroup size 16 (16-16)"; then
  echo "the default device does not run 16-lane subgroups with LP_NATIVE_VECTOR_WIDTH=512: not run here"
  exit 77
fi
"$tests/test_ops_matmul" -tc="fused*"
# float rows 16 lanes wide: the tiled fp16 GEMM's K split against the GEMV's, bit for bit
"$tests/test_ops_matmul" -tc="fp16 GEMM equals*"
# the matrix-unit GEMMs with their matrix operations emulated: 8 elements a lane instead of 16
TERNVK_EMULATE_MATRIX_UNITS=1 "$tests/test_ops_matmul" -tc="*matrix*"
"$tests/test_engine" -sf="*batch*,*plans*,*matrix_splits*"

#!/usr/bin/env bash
# The issue-14 measurements on a lent GPU, as one prepared call (../shared/docs/gpu.md): build and
# pack here (`bash scripts/build.sh && bash ../shared/tools/gpu/pack.sh`), then on the GPU machine
#   source .gpu/env.sh && bash bench/gpu_check.sh $OUT
# Writes at most 8 files into the folder given (the device tool returns 8):
#   devices.txt    ternvk devices
#   bench.md       2B4T full depth, vocab 32000, f16 head: tg128 and pp512 (-b 512), ternary and FP16,
#                  GPU plan and CPU plan side by side in one run (ratios per plan)
#   profile.json   --plan gpu --timing pass: undistorted GPU time and dispatches per token
#   profile.md     --plan gpu --timing dispatch: where a token's time goes, per shader and per op
#   attention.txt  bench_attention --decode-only (128 to 32k keys, every kernel)
#   kernels.txt    bench_kernels --prefill (GEMV beside the tiled GEMMs at the 2B4T shapes)
#   tests.txt      the matmul, attention and engine suites with the validation layer on
# Each step has its own timeout so that one hang cannot hold the lease; together they stay under
# the device tool's 10-minute command limit (give the call timeout_s 600).
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTPUT_DIR}
mkdir -p "$out"
t=${TERNVK:-build/apps/ternvk}
b=${TERNVK_BUILD:-build}
syn="--synthetic 2b4t --vocab 32000"
timeout 30 "$t" devices > "$out/devices.txt" 2>&1
timeout 200 "$t" bench $syn -p 512 -n 128 -b 512 -r 3 --both --plan gpu,cpu > "$out/bench.md" 2>&1
timeout 60 "$t" profile $syn -p 64 -n 32 --plan gpu --timing pass -o json > "$out/profile.json" 2>&1
timeout 60 "$t" profile $syn -p 64 -n 32 --plan gpu --timing dispatch > "$out/profile.md" 2>&1
timeout 40 "$b/bench/bench_attention" --decode-only > "$out/attention.txt" 2>&1
timeout 40 "$b/bench/bench_kernels" --prefill > "$out/kernels.txt" 2>&1
{
  cd "$b/tests" || exit 1
  for s in test_ops_matmul test_ops_attention test_engine; do
    echo "=== $s"
    TERNVK_VALIDATION=1 timeout 50 "./$s" 2>&1 | tail -4
  done
} > "$out/tests.txt" 2>&1
echo "gpu_check: done, files in $out"

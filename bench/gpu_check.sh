#!/usr/bin/env bash
# The issue-14 measurements on a lent GPU, as one prepared call (../shared/docs/gpu.md): build and
# pack here (`bash scripts/build.sh && bash ../shared/tools/gpu/pack.sh`), then on the GPU machine
#   source .gpu/env.sh && bash bench/gpu_check.sh $OUT
# Writes at most 8 files into the folder given (the device tool returns 8):
#   devices.txt    ternvk devices, then the matrix units' self-checks (devices --check-matrix-units)
#   layers.md      bench_decode_layers: 30 2B4T decode layers (fused linear layers, no attention),
#                  each matrix's split fixed (566ef0c) and picked to fill the device, ternary and FP16,
#                  the prologue alone (one workgroup a dispatch), the floor of as many empty
#                  dependent dispatches, and the picked layers with no barriers (the bound for chaining)
#   bench.md       2B4T full depth, vocab 32000, f16 head, GPU plan: tg128 and pp512 in one chunk
#                  (-b 512), ternary and the FP16 baseline side by side (the targets; each
#                  variant's prefill on its matrix units where the device passes their self-checks); then
#                  tg128 with the layers chained and not (--chain-layers off,on: no barriers between a
#                  token's fused dispatches, each waiting in its shader; and profile's GPU time a token
#                  for both), then tg128 with the attention inside qkv and apart (--fold-attention auto,off), with
#                  greedy chains of 1 and 16 tokens a submit side by side, and with the
#                  step inputs read from host memory and from device-local copies
#   profile.json   --plan gpu --timing pass: undistorted GPU time and dispatches per token
#                  (its progress lines go to this script's stderr)
#   prefill.md     --plan gpu --timing dispatch for one 512-token prefill step: where pp512's time
#                  goes, per shader (a timestamp after every dispatch distorts little at 512 tokens)
#   gemm.txt       bench_kernels --prefill at 512 tokens: the 2B4T matrices' GEMV, tiled GEMMs,
#                  matrix-unit GEMMs (where the device has int8 / fp16 matrix units), ternary and FP16;
#                  then pp512 end to end (ternary) with the tiled and the matrix-unit GEMM side by side
#   attention.txt  bench_attention --decode-only (128 to 32k keys, every kernel, and flash-decode with
#                  its split count capped at 16, 32 and 64), then --cold (a fresh copy of the cache a call),
#                  then prefill T=512: the tiled kernel beside flash-decode per token
#   tests.txt      with the validation layer on: the fused layers (and the attention inside qkv), the
#                  matrix-unit GEMM, the engine's plan, batch, greedy-chain and fold tests and the
#                  flash-decode attention right after the target figures; the other attention tests last
# Each step has its own timeout so that one hang cannot hold the lease, cut to what is left of a
# 560-second budget (the device tool's command limit is 600 s); the most wanted figures come first
# (the targets, then the tests of the kernels that gave them), so that the budget, if reached, cuts
# the least wanted.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTPUT_DIR}
mkdir -p "$out"
t=${TERNVK:-build/apps/ternvk}
b=${TERNVK_BUILD:-build}
syn="--synthetic 2b4t --vocab 32000"
step() { echo "[gpu_check] $(date +%T) $*" >&2; }
# timeout for a step: its own limit, or what is left of the budget (1 s once under 6 s are left)
limit() { local left=$((560 - SECONDS)); ((left < $1)) && echo $((left > 5 ? left : 1)) || echo "$1"; }
step devices
timeout $(limit 30) "$t" devices > "$out/devices.txt" 2>&1
step matrix-units
# The matrix units' self-checks, alone first (every engine load below runs them before using the
# units): one that never finishes would stop each step that loads a model, so then every model load
# keeps the shader cores (--gemm-units vector) and the figures still come back.
units=auto
timeout $(limit 40) "$t" devices --check-matrix-units > "$out/units.txt" 2>&1
units_rc=$?
if ((units_rc != 0)) || grep -q "did not finish" "$out/units.txt"; then
  units=vector
  echo "matrix-unit self-check failed to run (exit $units_rc, or a check did not finish): every model load" \
    "below uses --gemm-units vector" >> "$out/units.txt"
fi
cat "$out/units.txt" >> "$out/devices.txt"
rm -f "$out/units.txt"
step layers
timeout $(limit 90) "$b/bench/bench_decode_layers" > "$out/layers.md" 2>&1
step bench
timeout $(limit 200) "$t" bench $syn -p 512 -n 128 -b 512 -r 3 --both --plan gpu --gemm-units $units > "$out/bench.md" 2>&1
step bench-chain
# Chained layers (experimental, off by default): the lever for the 2.5x decode ratio if the
# dispatches' drains and launches are what a token waits on; a wait that times out is reported
# ("chain timed out: turned off") and the rows then time unchained steps.
timeout $(limit 90) "$t" bench $syn -p 0 -n 128 -r 3 --both --plan gpu --chain-layers off,on --gemm-units $units >> "$out/bench.md" 2>&1
# ... and the GPU time a token with and without, undistorted (whole passes), with the barriers a token
echo "## profile --timing pass, layers chained off and on (GPU time a token, barriers a token)" >> "$out/bench.md"
for flag in "" "--chain-layers"; do
  timeout $(limit 40) "$t" profile $syn -p 16 -n 32 --plan gpu --timing pass --gemm-units $units $flag 2>&1 |
    grep -E "^(decode|a chained)" >> "$out/bench.md"
done
step tests
# the correctness of what gave bench.md's figures, before the other measurements: failing cases with
# their first lines, then the summary (a subshell: the benches' paths stay relative to the root)
keep='TEST CASE|ERROR|THREW|CHECK|values|test cases|Status'
(
  cd "$b/tests" || exit 1
  TERNVK_VALIDATION=1 timeout $(limit 60) ./test_ops_matmul -sf="*fused*,*matrix_unit*" 2>&1 | grep -E "$keep" | head -40
  TERNVK_VALIDATION=1 timeout $(limit 90) ./test_engine -sf="*plans*,*batch*,*chain*,*fold*" 2>&1 | grep -E "$keep" | head -40
  TERNVK_VALIDATION=1 timeout $(limit 60) ./test_ops_attention -sf="*flash*" 2>&1 | grep -E "$keep" | head -40
) > "$out/tests.txt" 2>&1
step bench-variants
timeout $(limit 90) "$t" bench $syn -p 0 -n 128 -r 3 --both --plan gpu --fold-attention auto,off --gemm-units $units >> "$out/bench.md" 2>&1
timeout $(limit 90) "$t" bench $syn -p 0 -n 128 -r 3 --both --plan gpu --greedy-chain 1,16 --gemm-units $units >> "$out/bench.md" 2>&1
timeout $(limit 60) "$t" bench $syn -p 0 -n 128 -r 3 --plan gpu --step-inputs host,device --gemm-units $units >> "$out/bench.md" 2>&1
step gemm
timeout $(limit 60) "$b/bench/bench_kernels" --prefill --prefill-tokens 512 > "$out/gemm.txt" 2>&1
timeout $(limit 120) "$t" bench $syn -p 512 -n 0 -b 512 -r 3 --gemm-units $([ $units = auto ] && echo vector,matrix || echo vector) >> "$out/gemm.txt" 2>&1
step profile
timeout $(limit 60) "$t" profile $syn -p 64 -n 64 --plan gpu --timing pass --gemm-units $units -o json > "$out/profile.json"
step prefill
timeout $(limit 60) "$t" profile $syn -p 512 -b 512 -n 1 --plan gpu --timing dispatch --gemm-units $units > "$out/prefill.md" 2>&1
step attention
# with the flash-decode split count capped at 16, 32 and 64 beside the plan's (~106 a kv head on the
# H200): at 566ef0c 8k-32k keys all took ~38-40 us; this says whether the split count is why
BENCH_FLASH=0/0/0/16,0/0/0/32,0/0/0/64 timeout $(limit 40) "$b/bench/bench_attention" --decode-only > "$out/attention.txt" 2>&1
# ... and each call reading another copy of the cache (what a token pays; the rows above repeat one
# copy, which L2 may hold: K+V is 10.5 MB at 4k keys, 21 MB at 8k): is the 4k -> 8k step L2's edge?
timeout $(limit 20) "$b/bench/bench_attention" --cold >> "$out/attention.txt" 2>&1
# ... and pp512's attention: 512 prompt tokens at 512 to 4096 keys, the tiled kernel the GPU plan uses
# for prefill beside flash-decode run per token (no K/V sharing between tokens; L2 serves the re-reads)
timeout $(limit 20) "$b/bench/bench_attention" --prefill-only --prefill-tokens 512 >> "$out/attention.txt" 2>&1
step attention-tests
(
  cd "$b/tests" || exit 1
  TERNVK_VALIDATION=1 timeout $(limit 120) ./test_ops_attention -sf="*attention.cpp,*slots*" 2>&1 | grep -E "$keep" | head -40
) >> "$out/tests.txt" 2>&1
step done

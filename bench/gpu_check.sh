#!/usr/bin/env bash
# The issue-14 measurements on a lent GPU, as one prepared call (../shared/docs/gpu.md): build and
# pack here (`bash scripts/build.sh && bash ../shared/tools/gpu/pack.sh`), then on the GPU machine
#   source .gpu/env.sh && bash bench/gpu_check.sh $OUT
# Writes at most 8 files into the folder given (the device tool returns 8):
#   devices.txt    ternvk devices, then the matrix units' self-checks (devices --check-matrix-units)
#   layers.md      bench_decode_layers: 30 2B4T decode layers (fused linear layers, no attention),
#                  each matrix's split fixed (566ef0c) and picked to fill the device, ternary and FP16,
#                  the FP16 layers with their float rows 8 lanes wide (before float_row_lanes, 2026-12-07),
#                  the prologue alone (one workgroup a dispatch), the floor of as many empty
#                  dependent dispatches, and the picked layers with no barriers (the bound for chaining)
#   bench.md       2B4T full depth, vocab 32000, f16 head, GPU plan: tg128 and pp512 in one chunk
#                  (-b 512), ternary and the FP16 baseline side by side (the issue's targets; each
#                  variant's prefill on its matrix units where the device passes their self-checks; each
#                  variant's layers chained where its trial before timing kept them, and its matrices split by
#                  the rule its split trial kept, both said on stderr with each rule's time); then tg128 with
#                  the argued split rule (--matrix-splits rule, no trial) beside the trial's pick; then
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
#                  matrix-unit GEMMs (where the device has int8 / fp16 matrix units), ternary and FP16
#                  (the FP16 GEMM also with its K split 8 lanes wide, as before 2026-12-07);
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
# the least wanted. Each step that fails or is cut by its timeout is named on stderr at the end.
#
# GPU_CHECK_SMOKE=1 runs every step at a small shape (one 700m layer, vocab 1024, 16 prompt tokens, one
# repetition, the benches' quick sets) and lists the tests instead of running them: a ctest entry does
# that on lavapipe, so that a renamed flag or a test filter matching nothing shows there, not in the
# lent GPU's minutes. It then exits non-zero if a step failed or timed out, an item of a test filter
# matched no test case, or a validation error showed in an output (or in the steps' stderr, kept in
# stderr.log there). The smoke run emulates matrix units (TERNVK_EMULATE_MATRIX_UNITS=1: their kernels
# on the shader cores) and runs the GEMM step at 32 tokens, so that pp512's matrix-unit row runs too.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTPUT_DIR}
mkdir -p "$out"
t=${TERNVK:-build/apps/ternvk}
b=${TERNVK_BUILD:-build}
smoke=${GPU_CHECK_SMOKE:-0}
errs=/dev/stderr  # where a step's own stderr goes (progress lines) ...
seen=/dev/null    # ... and the lines of the profile step that bench.md does not keep
if [[ $smoke == 1 ]]; then
  [[ $out == *[[:space:]]* ]] && { echo "gpu_check: the smoke run's folder must not contain spaces: '$out'" >&2; exit 2; }
  errs=$out/stderr.log seen=$out/stderr.log
  : > "$errs"
  syn="--synthetic 700m --layers 1 --vocab 1024 --cache-dir $out/synthetic"
  P=16 N=4 R=1 Pshort=8 Nshort=4 Pmid=8 Pgemm=32
  export TERNVK_EMULATE_MATRIX_UNITS=1
  layers_args="--layers 2 --reps 1 --dims 512,1024,8,2" quick="--quick --contexts 128,1024"
  kernels_quick="--quick --reps 1"
else
  syn="--synthetic 2b4t --vocab 32000"
  P=512 N=128 R=3 Pshort=16 Nshort=32 Pmid=64 Pgemm=512
  layers_args="" quick="" kernels_quick=""
fi
name=setup
step() {
  name=$1
  echo "[gpu_check] $(date +%T) $*" >&2
}
# what went wrong: "step: what (exit N)"; 124 is a step's timeout, 137 its kill 5 s later (a process
# that did not end on SIGTERM, e.g. waiting in the driver)
problems=()
kept() {
  local rc=$1 what=$2
  ((rc == 0)) && return 0
  ((rc == 124 || rc == 137)) && problems+=("$name: $what timed out") || problems+=("$name: $what failed (exit $rc)")
}
# timeout for a step: its own limit, or what is left of the budget (1 s once under 6 s are left)
limit() { local left=$((560 - SECONDS)); ((left < $1)) && echo $((left > 5 ? left : 1)) || echo "$1"; }
# timed SECONDS WHAT COMMAND...: the command under that limit, a failure or timeout kept as WHAT
timed() {
  local secs=$1 what=$2
  shift 2
  timeout -k 5 $(limit "$secs") "$@"
  kept $? "$what"
}
# a test binary with a source-file filter: run (validation on), keeping failing cases' first lines and
# the summary; in a smoke run only listed, and a filter that matches no test case is a problem
keep='TEST CASE|ERROR|THREW|CHECK|values|test cases|Status'
tests() {
  local bin=$1 filter=$2 secs=$3
  if [[ $smoke == 1 ]]; then
    # each item of the filter alone: one renamed file must show, not only all of them
    local item listed items
    IFS=, read -ra items <<< "$filter"
    for item in "${items[@]}"; do
      listed=$(timeout -k 5 $(limit 20) "$b/tests/$bin" -ltc -sf="$item" 2>&1)
      kept $? "$bin -ltc -sf=$item"
      grep -q "passing the current filters: 0$" <<< "$listed" && problems+=("$name: $bin -sf=$item matches no test case")
      echo "$bin -sf=$item: $(grep "passing the current filters" <<< "$listed")"
    done
    return 0
  fi
  # (from the tests folder: the benches' paths stay relative to the root)
  (cd "$b/tests" && TERNVK_VALIDATION=1 timeout -k 5 $(limit "$secs") "./$bin" -sf="$filter" 2>&1) | grep -E "$keep" | head -40
  kept "${PIPESTATUS[0]}" "$bin -sf=$filter"
}
step devices
timed 30 "ternvk devices" "$t" devices > "$out/devices.txt" 2>&1
step matrix-units
# The matrix units' self-checks, alone first (every engine load below runs them before using the
# units): one that never finishes would stop each step that loads a model, so then every model load
# keeps the shader cores (--gemm-units vector) and the figures still come back.
units=auto
timeout -k 5 $(limit 40) "$t" devices --check-matrix-units > "$out/units.txt" 2>&1
units_rc=$?
kept $units_rc "ternvk devices --check-matrix-units"
if ((units_rc != 0)) || grep -q "did not finish" "$out/units.txt"; then
  units=vector
  echo "matrix-unit self-check failed to run (exit $units_rc, or a check did not finish): every model load" \
    "below uses --gemm-units vector" >> "$out/units.txt"
fi
# pp512 on the tiled and the matrix-unit GEMM side by side only where the default device's int8 units
# passed their check (--gemm-units matrix is refused elsewhere, and the refusal would take the tiled row
# with it)
prefill_units=vector
default_device=$(sed -n 's/^default device: \[\([0-9]*\)\].*/\1/p' "$out/devices.txt" | head -1)
[[ $units == auto && -n $default_device ]] &&
  grep -Eq "^\[$default_device\] .*: int8 \(ternary prefill\) matrix units( \(emulated\))?: self-check passed" \
    "$out/units.txt" &&
  prefill_units=vector,matrix
cat "$out/units.txt" >> "$out/devices.txt"
rm -f "$out/units.txt"
step layers
timed 90 "bench_decode_layers" "$b/bench/bench_decode_layers" $layers_args > "$out/layers.md" 2>&1
step bench
timed 200 "bench --both" "$t" bench $syn -p $P -n $N -b $P -r $R --both --plan gpu --gemm-units $units > "$out/bench.md" 2>&1
step bench-chain
# Chained layers (the rows above: auto, a trial before timing keeps them where they give the same bits
# and win by 2%; its verdict is on those rows' stderr lines): the lever for the 2.5x decode ratio if
# the dispatches' drains and launches are what a token waits on. Forced off and on side by side here;
# a wait that times out is reported ("chain timed out: turned off") and the rows then time unchained steps.
timed 90 "bench --chain-layers off,on" "$t" bench $syn -p 0 -n $N -r $R --both --plan gpu --chain-layers off,on --gemm-units $units >> "$out/bench.md" 2>&1
# The split rule the trial kept (the rows above, "matrix splits measured: ...") against the argued one,
# end to end: if the trial's pick loses here, its one-token pass at position 0 is not what tg128 runs.
timed 60 "bench --matrix-splits rule" "$t" bench $syn -p 0 -n $N -r $R --both --plan gpu --matrix-splits rule --gemm-units $units >> "$out/bench.md" 2>&1
# ... and the GPU time a token with and without, undistorted (whole passes), with the barriers a token
echo "## profile --timing pass, layers chained off and on (GPU time a token, barriers a token)" >> "$out/bench.md"
for flag in "--chain-layers off" "--chain-layers on"; do
  timeout -k 5 $(limit 40) "$t" profile $syn -p $Pshort -n $Nshort --plan gpu --timing pass --gemm-units $units $flag 2>&1 |
    tee -a "$seen" | grep -E "^(decode|a chained|layers chained|matrix splits)" >> "$out/bench.md"
  kept "${PIPESTATUS[0]}" "profile $flag"
done
step tests
# the correctness of what gave bench.md's figures, before the other measurements
{
  tests test_ops_matmul "*fused*,*matrix_unit*,*fp16_gemm*" 75
  tests test_engine "*plans*,*batch*,*chain*,*fold*,*matrix_splits*" 90
  tests test_ops_attention "*flash*" 60
} > "$out/tests.txt" 2>&1
step bench-variants
timed 90 "bench --fold-attention auto,off" "$t" bench $syn -p 0 -n $N -r $R --both --plan gpu --fold-attention auto,off --gemm-units $units >> "$out/bench.md" 2>&1
timed 90 "bench --greedy-chain 1,16" "$t" bench $syn -p 0 -n $N -r $R --both --plan gpu --greedy-chain 1,16 --gemm-units $units >> "$out/bench.md" 2>&1
timed 60 "bench --step-inputs host,device" "$t" bench $syn -p 0 -n $N -r $R --plan gpu --step-inputs host,device --gemm-units $units >> "$out/bench.md" 2>&1
step gemm
timed 60 "bench_kernels --prefill" "$b/bench/bench_kernels" --prefill --prefill-tokens $Pgemm $kernels_quick > "$out/gemm.txt" 2>&1
timed 120 "bench --gemm-units" "$t" bench $syn -p $Pgemm -n 0 -b $Pgemm -r $R --gemm-units $prefill_units >> "$out/gemm.txt" 2>&1
step profile
timed 60 "profile -o json" "$t" profile $syn -p $Pmid -n $Pmid --plan gpu --timing pass --gemm-units $units -o json > "$out/profile.json" 2>> "$errs"
step prefill
timed 60 "profile --timing dispatch" "$t" profile $syn -p $P -b $P -n 1 --plan gpu --timing dispatch --gemm-units $units > "$out/prefill.md" 2>&1
step attention
# with the flash-decode split count capped at 16, 32 and 64 beside the plan's (~106 a kv head on the
# H200): at 566ef0c 8k-32k keys all took ~38-40 us; this says whether the split count is why
BENCH_FLASH=0/0/0/16,0/0/0/32,0/0/0/64 timed 40 "bench_attention --decode-only" "$b/bench/bench_attention" --decode-only $quick > "$out/attention.txt" 2>&1
# ... and each call reading another copy of the cache (what a token pays; the rows above repeat one
# copy, which L2 may hold: K+V is 10.5 MB at 4k keys, 21 MB at 8k): is the 4k -> 8k step L2's edge?
timed 20 "bench_attention --cold" "$b/bench/bench_attention" --cold $quick >> "$out/attention.txt" 2>&1
# ... and pp512's attention: 512 prompt tokens at 512 to 4096 keys, the tiled kernel the GPU plan uses
# for prefill beside flash-decode run per token (no K/V sharing between tokens; L2 serves the re-reads)
timed 20 "bench_attention --prefill-only" "$b/bench/bench_attention" --prefill-only --prefill-tokens $P $quick >> "$out/attention.txt" 2>&1
step attention-tests
tests test_ops_attention "*attention.cpp,*slots*" 120 >> "$out/tests.txt" 2>&1
step done
# (the benches here run without the validation layer unless TERNVK_VALIDATION is set, as in the smoke test)
for f in "$out"/*; do
  [[ -f $f ]] && grep -q "vulkan validation error" "$f" && problems+=("validation errors in $(basename "$f")")
done
if ((${#problems[@]})); then
  echo "[gpu_check] steps that did not finish well:" >&2
  printf '  %s\n' "${problems[@]}" >&2
  [[ $smoke == 1 ]] && exit 1
fi
exit 0

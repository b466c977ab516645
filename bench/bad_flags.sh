#!/usr/bin/env bash
# The benchmarks refuse bad flags before they touch a device: each case below must exit with an error
# (not 0, not a crash) and name the flag it could not take; --help must still work.
#   bad_flags.sh BENCH_DIR
set -uo pipefail
dir=${1:?usage: bad_flags.sh BENCH_DIR}
failed=0
refuses() {  # refuses FLAG-NAMED-IN-THE-ERROR BINARY ARGS...
  local named=$1 bin=$2
  shift 2
  local text rc
  text=$(timeout 20 "$dir/$bin" "$@" 2>&1)
  rc=$?
  if ((rc == 0 || rc >= 124)) || ! grep -qF -- "$named" <<< "$text"; then
    echo "FAIL: $bin $* (exit $rc) should refuse naming '$named'; it said: $(head -c 300 <<< "$text")"
    failed=1
  fi
}
refuses --contexts bench_attention --contexts 0
refuses --contexts bench_attention --contexts 40000
refuses --contexts bench_attention --contexts 128,abc
refuses --reps bench_attention --reps -1
refuses --prefill-tokens bench_attention --prefill-tokens 0
refuses --device bench_attention --device -2
refuses --bogus bench_attention --bogus
refuses --prefill-tokens bench_kernels --prefill-tokens 0
refuses --gemv bench_kernels --gemv 5
refuses --gemv bench_kernels --gemv 0 64
refuses --tune-tiles bench_kernels --tune-tiles 1 2
refuses --reps bench_kernels --reps x
refuses --dims bench_decode_layers --dims 1,2
refuses --dims bench_decode_layers --dims 512,1024,7,2
refuses --layers bench_decode_layers --layers 0
refuses --streams bench_server --streams 1,x
refuses --tokens bench_server --tokens 0
for bin in bench_attention bench_kernels bench_decode_layers bench_server; do
  timeout 20 "$dir/$bin" --help > /dev/null 2>&1 || { echo "FAIL: $bin --help"; failed=1; }
done
((failed == 0)) && echo "every bad flag refused by name"
exit $failed

#!/usr/bin/env bash
# Regenerates the BitNet b1.58 paper-style table (Table 1 of arXiv:2402.17764: model size x ternary
# vs FP16, decode latency, memory, ratios) on the device at hand, and writes it into
# docs/performance.md between the paper-table markers (appended the first time).
#
# Every size is a synthetic model (`ternvk bench --synthetic NAME --both`): seeded random ternary
# weights of the published shape, measured as ternary (I2_S -> 2-bit) and as the FP16 baseline
# (the same weights expanded to FP16) side by side in one run, repetitions alternating.
#
# Environment (defaults in brackets; CPU devices such as lavapipe get the small settings):
#   TERNVK_BIN  the ternvk binary            [build-bench/apps/ternvk, else build/apps/ternvk]
#   SIZES       shapes                        [700m 1.3b 3b 3.9b]
#   DEVICE      device index                  [the default device]
#   LAYERS      depth cut (0: full)           [CPU: 2, GPU: 0]
#   VOCAB       vocabulary cut (0: full)      [CPU: 4096, GPU: 0]
#   PROMPT      pp test size                  [CPU: 16, GPU: 512]
#   GEN         tg test size                  [CPU: 16, GPU: 128]
#   REPS        repetitions                   [CPU: 5, GPU: 5]
#   HEADS       output head precisions        [f16,int8] (each size runs with each head; the
#               ternary and FP16 models of a row share the head)
#   DOC         the markdown file to update   [docs/performance.md]
#   CHART       also write docs/performance-decode-3b.png with `ternvk profile` [1]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TERNVK_BIN:-}
if [[ -z "$BIN" ]]; then
  for b in "$ROOT/build-bench/apps/ternvk" "$ROOT/build/apps/ternvk"; do
    [[ -x "$b" ]] && { BIN=$b; break; }
  done
fi
[[ -x "${BIN:-}" ]] || { echo "paper_table.sh: build ternvk first (or set TERNVK_BIN)" >&2; exit 1; }
command -v jq >/dev/null || { echo "paper_table.sh: needs jq" >&2; exit 1; }

DEV_ARGS=()
[[ -n "${DEVICE:-}" ]] && DEV_ARGS=(--device "$DEVICE")
# Is the chosen device a CPU (lavapipe)? `ternvk devices` lists "[i] name (TYPE, vendor)".
DEV_LINE=$("$BIN" devices 2>/dev/null | grep -E "^\[${DEVICE:-[0-9]+}\]" | head -1 || true)
if [[ -z "${DEVICE:-}" ]]; then
  DEF=$("$BIN" devices 2>/dev/null | sed -n 's/^default device: \[\([0-9]*\)\].*/\1/p')
  DEV_LINE=$("$BIN" devices 2>/dev/null | grep -E "^\[${DEF:-0}\]" | head -1 || true)
fi
CPU=0
[[ "$DEV_LINE" == *"(CPU"* ]] && CPU=1
if (( CPU )); then
  : "${LAYERS:=2}" "${VOCAB:=4096}" "${PROMPT:=16}" "${GEN:=16}" "${REPS:=5}"
else
  : "${LAYERS:=0}" "${VOCAB:=0}" "${PROMPT:=512}" "${GEN:=128}" "${REPS:=5}"
fi
SIZES=${SIZES:-"700m 1.3b 3b 3.9b"}
HEADS=${HEADS:-f16,int8}
DOC=${DOC:-$ROOT/docs/performance.md}
CHART=${CHART:-1}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

start=$(date +%s)
for s in $SIZES; do
  echo "== $s" >&2
  "$BIN" bench --synthetic "$s" --layers "$LAYERS" --vocab "$VOCAB" -p "$PROMPT" -n "$GEN" -r "$REPS" \
    --both --head "$HEADS" -o json "${DEV_ARGS[@]}" > "$OUT/$s.json"
done
elapsed=$(( $(date +%s) - start ))
files=(); for s in $SIZES; do files+=("$OUT/$s.json"); done
jq -s 'add' "${files[@]}" > "$OUT/all.json"

DEVICE_NAME=$(jq -r '.[0].device' "$OUT/all.json")
DRIVER=$(jq -r '.[0].driver' "$OUT/all.json")
DATE=$(date -u +%Y-%m-%d)
CUT_NOTE="full depth and vocabulary"
if [[ "$LAYERS" != 0 || "$VOCAB" != 0 ]]; then
  CUT_NOTE="cut for speed: ${LAYERS} layer(s) (0 = all), vocabulary ${VOCAB} (0 = full); the full-depth memory columns are estimates of the uncut shape from the same layouts"
fi

TABLE=$(jq -r --arg pp "pp$PROMPT" --arg tg "tg$GEN" '
  def pick(v; t): map(select(.variant == v and .test == t))[0];
  def heads: [.[].head] | unique | sort;  # f16 before int8
  def f2: . * 100 | round / 100 | tostring;
  def mib: . / 1048576 | round | tostring + " MiB";
  def gib: . / 1073741824 * 100 | round / 100 | tostring + " GiB";
  def paper: {"BitNet b1.58 700M": "1.23x / 2.60x", "BitNet b1.58 1.3B": "1.67x / 2.93x",
              "BitNet b1.58 3B": "2.71x / 3.55x", "BitNet b1.58 3.9B": "2.40x / 3.32x"};
  . as $all
  | [foreach .[] as $r ({seen: {}, out: null};
       if .seen[$r.model] then .out = null else .seen[$r.model] = true | .out = $r.model end;
       .out // empty)]
  | map(. as $m | $all | map(select(.model == $m)) | . as $rows | heads | map(. as $h | $rows | map(select(.head == $h))))
  | flatten(1)
  | map(
    pick("ternary"; $tg) as $t | pick("fp16"; $tg) as $f |
    pick("ternary"; $pp) as $tp | pick("fp16"; $pp) as $fp |
    ($t.model | sub(" \\[.*"; "")) as $base |
    "| \($base) | \($t.head) | \($t.layers)/\($t.full_layers) | \(1000 / $t.avg_ts | f2) | \(1000 / $f.avg_ts | f2) | **\($t.avg_ts / $f.avg_ts | f2)x** "
    + "| \($tp.avg_ts | f2) | \($fp.avg_ts | f2) | \($tp.avg_ts / $fp.avg_ts | f2)x "
    + "| \($t.peak_bytes | mib) | \($f.peak_bytes | mib) | \($f.peak_bytes / $t.peak_bytes | f2)x "
    + "| \($t.full_total_bytes | gib) | \($f.full_total_bytes | gib) | **\($f.full_total_bytes / $t.full_total_bytes | f2)x** "
    + "| \(paper[$base] // "-") |"
  ) | .[]' "$OUT/all.json")

VERDICT=$(jq -r --arg tg "tg$GEN" '
  def pick(m; h; v; t): map(select(.model == m and .head == h and .variant == v and .test == t))[0];
  . as $all | [foreach .[] as $r ({seen: {}, out: null}; if .seen[$r.model] then .out = null else .seen[$r.model] = true | .out = $r.model end; .out // empty)] as $models |
  ([.[].head] | unique | sort) as $heads |
  ($heads | map(. as $h |
    [ $models[] as $m | ($all | pick($m; $h; "ternary"; $tg).avg_ts / pick($m; $h; "fp16"; $tg).avg_ts) ] as $speed |
    "- Ternary decode >= 2.5x the FP16 baseline at every size, " + $h + " head in both: **" +
      (if ($speed | all(. >= 2.5)) then "met" else "not met" end) +
      "** (measured " + ([range(0; $models | length) as $i | ($models[$i] | sub(" \\[.*"; "")) + " " + ($speed[$i] * 100 | round / 100 | tostring) + "x"] | join(", ")) + ").") | join("\n")) as $speed_lines |
  ($all | map(select((.model | startswith("BitNet b1.58 3B")) and .head == $heads[0])) ) as $three |
  (if ($three | length) > 0 then
     ($three | map(select(.variant == "fp16"))[0].full_total_bytes) / ($three | map(select(.variant == "ternary"))[0].full_total_bytes)
   else null end) as $mem3 |
  $speed_lines + "\n" +
  "- Memory >= 3.5x lower at 3B (" + $heads[0] + " head): **" +
    (if $mem3 == null then "not measured" elif $mem3 >= 3.5 then "met" else "not met" end) +
    "** (full-depth footprint ratio " + (if $mem3 == null then "-" else ($mem3 * 100 | round / 100 | tostring) + "x" end) + ")."
' "$OUT/all.json")

CHART_MD=""
if [[ "$CHART" == 1 ]] && [[ " $SIZES " == *" 3b "* ]]; then
  png="$ROOT/docs/performance-decode-3b.png"
  CHART_HEAD=${HEADS%%,*}
  if "$BIN" profile --synthetic 3b --layers "$LAYERS" --vocab "$VOCAB" -p 8 -n 4 -b 8 --head "$CHART_HEAD" \
       --chart "$png" "${DEV_ARGS[@]}" > "$OUT/profile.md" 2>/dev/null; then
    CHART_MD=$'\n'"Decode time per shader, BitNet b1.58 3B ternary with the ${CHART_HEAD} head (same cuts), from \`ternvk profile --chart\`:"$'\n\n'"![decode time per shader](performance-decode-3b.png)"$'\n'
  fi
fi

SECTION=$(cat <<EOF
<!-- paper-table:begin (generated by bench/paper_table.sh; edits here are overwritten) -->
## BitNet b1.58 paper table: ternary vs the FP16 baseline

Device: **${DEVICE_NAME}** (${DRIVER}), ${DATE}. Synthetic models of each shape (seeded random ternary
weights; see \`runtime/engine/synthetic_model.h\` for the shapes and their sources), ${CUT_NOTE}.
\`ternvk bench --synthetic SIZE --layers ${LAYERS} --vocab ${VOCAB} -p ${PROMPT} -n ${GEN} -r ${REPS} --both --head ${HEADS}\`:
ternary and FP16 (with the same output head: f16 = the file's values, int8 = \`--head int8\`) loaded
together, repetitions alternating; decode = tg${GEN} (greedy, GPU argmax,
after a 1-token prompt), prefill = pp${PROMPT}; memory = peak GPU bytes in use (weights + KV cache
+ scratch) at a context of max(p, n + 1). Total run time ${elapsed} s.

| model | head | layers run | decode ms/token ternary | FP16 | decode speedup | prefill t/s ternary | FP16 | prefill ratio | GPU memory ternary (measured) | FP16 | ratio | full-depth memory ternary (est.) | FP16 | ratio | paper, GPU: latency / memory ratio |
| ----- | ---- | ---------: | ----------------------: | ---: | -------------: | ------------------: | ---: | ------------: | ----------------------------: | ---: | ----: | -------------------------------: | ---: | ----: | ---------------------------------- |
${TABLE}

With cuts, the head (the same in both variants of a row) is small, so the measured ratios are mostly
those of the transformer layers; at full depth and vocabulary the shared head/embedding is part of
every token in both variants (the int8 head halves its bytes).

Issue 5 targets:
${VERDICT}
${CHART_MD}
<!-- paper-table:end -->
EOF
)

mkdir -p "$(dirname "$DOC")"
touch "$DOC"
if grep -q "<!-- paper-table:begin" "$DOC"; then
  printf '%s\n' "$SECTION" > "$OUT/section.md"
  awk -v sf="$OUT/section.md" '
    /<!-- paper-table:begin/ { while ((getline line < sf) > 0) print line; skip = 1; next }
    /<!-- paper-table:end -->/ { skip = 0; next }
    !skip { print }' "$DOC" > "$OUT/doc.md"
  cat "$OUT/doc.md" > "$DOC"
else
  { [[ -s "$DOC" ]] && echo; echo "$SECTION"; } >> "$DOC"
fi
echo "$SECTION"
echo "paper_table.sh: updated $DOC in ${elapsed} s" >&2

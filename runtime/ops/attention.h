// Causal GQA attention over the fp16 KV cache (flash attention with an optional split over the
// context, i.e. flash-decoding), softmax in fp32.
//
// q: the q heads of fp32 activation rows (a QkvView: fused QKV rows or a separate [T, H*hd] buffer).
// Token t at positions[t] in sequence slot s = slots[t] attends to cache rows s*capacity + 0 ..
// s*capacity + positions[t] (causal within its own sequence; the tokens' own k/v must already be in
// the cache, e.g. by record_rope_kv_store; see kv_cache.h for the layout). Without slots every token
// is in slot 0. Output: fp32 [T, H*hd] (row stride `out_stride` floats, default H*hd), head h at
// column h*hd.
//
// Record once, replay every step: dispatch sizes come from the plan (the maximum context), the live
// length from `positions`; workgroups whose key chunk lies beyond a token's position exit at once.
// A plan serves one token count T; the engine keeps one plan for decode (T=1 or a few) and one per
// prefill size.
#pragma once
#include <cstdint>
#include <optional>

#include "runtime/device/device_info.h"
#include "runtime/device/memory.h"
#include "runtime/device/recording.h"
#include "runtime/ops/kv_cache.h"
#include "runtime/ops/rope.h"

namespace ternvk::ops {

// Overrides for tests and benchmarks; 0 picks from DeviceInfo.
struct AttentionTuning {
  uint32_t workgroup = 0;
  uint32_t tokens_per_group = 0;  // query tokens per workgroup (BT)
  uint32_t key_tile = 0;          // keys per shared-memory tile (KT)
  uint32_t chunk = 0;             // keys per workgroup; >= max_context means no split
  std::optional<bool> q_in_registers;  // default: CPU devices (lavapipe); only with one token per group
  // attention_decode (lanes split the head dimension, one subgroup per workgroup, one token per
  // workgroup, merge in the same dispatch). Default: CPU devices with subgroup arithmetic and a fixed
  // subgroup size (per-lane loads cost the most there; see docs/performance.md).
  std::optional<bool> lane_split;
  uint32_t splits = 0;     // lane_split: workgroups along the live context per (token, kv head)
  uint32_t key_block = 0;  // lane_split: keys per online-softmax block (KB)
  uint32_t min_split = 0;  // lane_split: live keys per split below which fewer splits are used
  // lane_split: read the K/V caches (and a vec4 q) as uniform texel buffers (attention_decode_texel).
  // Default: where the matmuls use texel loads (prefers_texel_loads: CPU devices). true needs
  // DeviceInfo::texel_buffer_uint4. Ranges a texel view cannot cover (offset alignment,
  // maxTexelBufferElements) fall back to storage-buffer loads at record time.
  std::optional<bool> texel_loads;
};

// Which slots the tokens of one step may be in. Every kernel reads each token's keys from its own
// slot, so both layouts are correct with any slots; the layout picks the tiling: Mixed plans one
// token per workgroup (a block of tokens from different sequences shares no keys and would loop to
// the longest one) and splits the context as for decode.
enum class SequenceLayout {
  OneSequence,  // every token of the step in one slot: prefill
  Mixed,        // any slot per token: batched decode, one token per sequence
};

struct AttentionPlan {
  HeadLayout heads;
  uint32_t tokens = 0;            // T
  uint32_t max_context = 0;       // keys a token may attend to (positions < max_context)
  uint32_t workgroup = 0;         // spec constant 0 of attention / attention_split
  uint32_t tokens_per_group = 0;  // spec constant 3 (BT)
  uint32_t key_tile = 0;          // spec constant 4 (KT)
  bool q_in_registers = false;    // spec constant 5: q of a decode token in registers, not shared memory
  uint32_t chunk = 0;             // keys per workgroup (multiple of key_tile)
  uint32_t n_chunks = 0;          // workgroups along the context; 1 = no split, no combine pass
  uint32_t combine_workgroup = 0;
  uint64_t scratch_bytes = 0;     // partials of the split (0 without split)
  // attention_decode: one token per workgroup, WG = one subgroup whose lanes split the head
  // dimension; the live context of each token is divided into n_chunks equal splits (chunk = keys
  // per split at max_context), merged by the last split in the same dispatch. Its partials and
  // arrival counters live in the scratch (the counters at counters_offset are zeroed by a fill
  // recorded before the dispatch).
  bool lane_split = false;
  uint32_t key_block = 0;         // spec constant 3 of attention_decode
  uint32_t min_split = 0;         // a token uses min(n_chunks, ceil(live keys / min_split)) splits
  uint64_t counters_offset = 0;   // bytes into the scratch
  bool texel_loads = false;       // K/V (and q) as texel buffers where the ranges allow (record time)
  SequenceLayout layout = SequenceLayout::OneSequence;
  bool split() const { return n_chunks > 1; }
  uint32_t dispatches() const { return lane_split || !split() ? 1 : 2; }
};

// Picks tiles and the split for T query tokens over up to max_context keys (per sequence: the
// cache capacity). Requires head_dim % 8 == 0 and n_heads % n_kv_heads == 0; throws ternvk::Error
// otherwise or when shared memory is short.
AttentionPlan plan_attention(const DeviceInfo& info, const HeadLayout& heads, uint32_t tokens, uint32_t max_context,
                             const AttentionTuning& tuning = {},
                             SequenceLayout layout = SequenceLayout::OneSequence);

struct AttentionArgs {
  QkvView q;              // q heads at q_col; tokens must equal plan.tokens
  BufferRange positions;  // uint32 [T]
  KvCacheLayer cache;     // capacity >= plan.max_context; capacity * sequences rows
  BufferRange out;        // fp32 [T, out_stride]
  uint32_t out_stride = 0;  // floats; 0 = n_heads * head_dim
  BufferRange scratch;    // >= plan.scratch_bytes when plan.split() (device-local, never read by the host)
  float scale = 0.0f;     // 0 = 1/sqrt(head_dim)
  BufferRange slots;      // uint32 [T], each token's sequence slot; empty = slot 0 for all
};

// Records one dispatch (no split, or the lane-split kernel after a fill of its counters) or two
// (split + combine).
void record_attention(Recording& rec, const AttentionPlan& plan, const AttentionArgs& args);

}  // namespace ternvk::ops

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
//
// Kernels (plan_attention picks one from DeviceInfo; AttentionTuning forces any of them):
//  - attention_flash_decode (GPUs, decode-like steps: Mixed batches and one-sequence steps of up to
//    kFlashDecodeMaxTokens tokens): the live context of each (token, kv head) split over many
//    workgroups, the last split to finish merging the partials. One dispatch, nothing before it.
//  - attention_decode (CPU devices such as lavapipe): lanes split the head dimension, one subgroup
//    per workgroup; the merge in the same dispatch (counters as flash-decode's, see below).
//  - attention (+ attention_combine when split): tiled flash attention, prefill on GPUs.
//
// Scratch contract (AttentionArgs::scratch, one range shared by every plan of a device, e.g. all
// layers and token counts of an engine): its first kAttentionCounterBytes hold the arrival counters
// of attention_flash_decode and attention_decode, which every plan leaves alone (partials start
// after them) and which every dispatch of those kernels leaves at 0. They must be 0 before the first dispatch:
// record_attention clears them once when it records that kernel (a one-off submit that waits; it is
// ordered after all work already submitted to the device's queue, so a replay in flight finishes
// first), so an owner that allocates the scratch, records, then replays needs to do nothing more. An
// owner that lets anything else write into that range, or that replaced its contents, calls
// clear_attention_counters() before the next replay. Two replays that share a scratch must not run
// at the same time (nor may they for the partials of any split plan).
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
  uint32_t splits = 0;     // lane_split, flash_decode: workgroups along the live context per (token, kv head)
  uint32_t key_block = 0;  // lane_split, flash_decode: keys per online-softmax block (KB)
  uint32_t min_split = 0;  // lane_split, flash_decode: live keys per split below which fewer splits are used
  // lane_split: read the K/V caches (and a vec4 q) as uniform texel buffers (attention_decode_texel).
  // Default: where the matmuls use texel loads (prefers_texel_loads: CPU devices). true needs
  // DeviceInfo::texel_buffer_uint4. Ranges a texel view cannot cover (offset alignment,
  // maxTexelBufferElements) fall back to storage-buffer loads at record time.
  std::optional<bool> texel_loads;
  // attention_flash_decode (lanes over keys, many splits, merged by the last split). Default: GPUs
  // (not CPU devices) for decode-like steps, unless lane_split is given (then that choice stands).
  // Uses workgroup, key_block (keys per key group and step), splits (most splits per token and kv
  // head) and min_split (live keys per split below which fewer splits run) from above.
  std::optional<bool> flash_decode;
  uint32_t lanes_per_key = 0;  // flash_decode: lanes sharing one key (power of two <= the subgroup size)
  // flash_decode: the subgroup size to require where the device can require one (0: its default).
  // The GPU plan gives the fused layers' workgroup and subgroup size, so that its qkv dispatch can run
  // this plan's attention (FoldedAttention) on any vendor's subgroups.
  uint32_t subgroup_size = 0;
};

// Bytes at the start of every attention scratch range that hold attention_flash_decode's arrival
// counters (one uint32 per token and kv head: a step of T tokens with KVH kv heads needs T*KVH <=
// kAttentionCounterBytes / 4). See the scratch contract above.
inline constexpr uint64_t kAttentionCounterBytes = 16384;
// One-sequence steps of at most this many tokens count as decode (attention_flash_decode on GPUs).
inline constexpr uint32_t kFlashDecodeMaxTokens = 4;

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
  // arrival counters live in the scratch: the counters are the scratch's first bytes, as
  // flash-decode's (counters_offset 0), unless tokens x kv heads exceed them; then they follow the
  // partials at counters_offset, zeroed by a fill recorded before each dispatch.
  bool lane_split = false;
  uint32_t key_block = 0;         // spec constant 3 of attention_decode
  uint32_t min_split = 0;         // a token uses min(n_chunks, ceil(live keys / min_split)) splits
  uint64_t counters_offset = 0;   // bytes into the scratch (0: the scratch's head, see above)
  bool texel_loads = false;       // K/V (and q) as texel buffers where the ranges allow (record time)
  // attention_flash_decode: workgroup lanes in key groups of lanes_per_key, key_block keys per group
  // and step; n_chunks = the most splits of a (token, kv head), each at least min_split live keys
  // (chunk = keys per split at max_context). Its counters are the scratch's first bytes (see above).
  bool flash_decode = false;
  uint32_t lanes_per_key = 0;     // spec constant 4
  uint32_t subgroup_size = 0;     // required subgroup size (0: the driver's choice)
  uint32_t max_subgroups = 0;     // subgroups per workgroup at the smallest subgroup size it may run with
  // Where the partials start in the scratch (after the counters; 0 without a split).
  uint64_t partials_offset = 0;
  SequenceLayout layout = SequenceLayout::OneSequence;
  bool split() const { return n_chunks > 1; }
  uint32_t dispatches() const { return lane_split || flash_decode || !split() ? 1 : 2; }
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
  BufferRange scratch;    // >= plan.scratch_bytes when plan.split() (device-local, never read by the host;
                          // see the scratch contract above)
  float scale = 0.0f;     // 0 = 1/sqrt(head_dim)
  BufferRange slots;      // uint32 [T], each token's sequence slot; empty = slot 0 for all
};

// Records one dispatch (no split, attention_flash_decode, or the lane-split kernel; the latter after
// a fill of its counters only when they do not fit the scratch's head) or two (split + combine).
// For a split attention_flash_decode or lane-split plan with counters in the scratch's head it also
// clears them once, now (see the scratch contract above).
void record_attention(Recording& rec, const AttentionPlan& plan, const AttentionArgs& args);

// attention_flash_decode's q scale in the log2 units its softmax runs in (scale 0: 1/sqrt(head_dim)).
// Kernels that must give its bits (the attention folded into qkv) take the same float.
float attention_scale_log2e(const HeadLayout& heads, float scale);
// Live keys up to which a flash-decode plan runs a token's context as one split (its bits then equal
// a single workgroup's over the whole context: the folded attention's).
uint32_t one_split_keys(const AttentionPlan& plan);
// Shared memory of one split's state (attention_split.glsl) for a flash-decode plan.
uint64_t split_state_shared_bytes(const AttentionPlan& plan);

// Sets the first kAttentionCounterBytes of `scratch` to 0 now: one submit that waits, ordered after
// all work already submitted to the device's queue and before all work submitted later.
void clear_attention_counters(Device& device, BufferRange scratch);

}  // namespace ternvk::ops

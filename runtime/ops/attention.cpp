#include "runtime/ops/attention.h"

#include "runtime/ops/arrival_counters.h"
#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/ops/op_checks.h"

namespace ternvk::ops {

// Declared in runtime/ops/ternary_matmul.h (whose helpers clash with this file's): the devices where
// the matmuls read texel buffers; attention_decode follows the same choice.
bool prefers_texel_loads(const DeviceInfo& info);

namespace {

uint32_t round_up(uint32_t x, uint32_t m) { return (x + m - 1) / m * m; }

uint64_t shared_bytes(const HeadLayout& h, uint32_t bt, uint32_t kt) {
  const uint64_t m = uint64_t(bt) * (h.n_heads / h.n_kv_heads);
  return 4 * (m * h.head_dim + m * kt + 3 * m + 2 * bt);  // + per token: position, slot base
}

uint32_t ceil_div(uint64_t a, uint64_t b) { return uint32_t((a + b - 1) / b); }

// Loop iterations of one attention.comp invocation over `chunk` keys (upper bound: the loops the
// compiler may not unroll are counted once per iteration, nested ones multiplied).
uint64_t tiled_loop_iterations(const HeadLayout& h, uint32_t bt, uint32_t kt, uint32_t wg, uint32_t chunk) {
  const uint64_t m = uint64_t(bt) * (h.n_heads / h.n_kv_heads), ncg = h.head_dim / 8;
  const uint64_t setup = bt + ceil_div(m * h.head_dim / 4, wg) + ceil_div(m, wg) + ceil_div(bt, wg);
  const uint64_t per_tile = 1 + ceil_div(uint64_t(bt) * kt, wg) * (1 + ncg) + ceil_div(m, wg) * (1 + 2 * kt) + kt;
  return setup + ceil_div(chunk, kt) * per_tile;
}

// attention_decode: the block loop over one split's keys and the two merge loops.
uint64_t decode_loop_iterations(uint32_t max_context, uint32_t splits, uint32_t kb) {
  const uint64_t per = uint64_t(ceil_div(ceil_div(max_context, splits), kb)) * kb;
  return per / kb + 2ull * splits + 1;
}

uint64_t align_up(uint64_t x, uint64_t a) { return a > 1 ? (x + a - 1) / a * a : x; }

bool is_pow2(uint32_t x) { return x && !(x & (x - 1)); }
uint32_t pow2_ceil(uint32_t x) {
  uint32_t p = 1;
  while (p < x) p *= 2;
  return p;
}
uint32_t pow2_floor(uint32_t x) {
  uint32_t p = 1;
  while (p * 2 <= x) p *= 2;
  return p;
}

// attention_flash_decode's shared memory: per subgroup the R*HD outputs and (max, sum) of R heads,
// the merge's split weights, the arrival flag.
uint64_t flash_shared_bytes(const HeadLayout& h, uint32_t max_subgroups, uint32_t n_chunks) {
  const uint64_t r = h.n_heads / h.n_kv_heads;
  return uint64_t(max_subgroups) * (r * h.head_dim * 4 + 8 * r) + uint64_t(n_chunks) * r * 4 + 4;
}

// attention_flash_decode: loop iterations of one invocation (the key steps of its split, the merge
// loops over subgroups and splits); see kShaderLoopBudget.
uint64_t flash_loop_iterations(const HeadLayout& h, uint32_t wg, uint32_t max_subgroups, uint32_t step,
                               uint32_t max_context, uint32_t n_chunks) {
  const uint64_t per = uint64_t(ceil_div(ceil_div(max_context, n_chunks), step)) * step;
  const uint64_t outputs = ceil_div(uint64_t(h.n_heads / h.n_kv_heads) * h.head_dim / 4, wg);
  return per / step + 8 + 2 * ceil_div(n_chunks, wg) + 3 * max_subgroups +
         outputs * (2 * max_subgroups + ceil_div(n_chunks, 8) + 2);
}

// attention_flash_decode: why this device or shape cannot run it ("" when it can).
std::string flash_unsupported(const DeviceInfo& info, const HeadLayout& heads, uint32_t tokens) {
  if (!info.subgroup_shuffle || !info.subgroup_arithmetic)
    return "device '" + info.name + "' lacks subgroup shuffles or subgroup arithmetic";
  if (uint64_t(tokens) * heads.n_kv_heads > kAttentionCounterBytes / 4)
    return std::to_string(tokens) + " tokens x " + std::to_string(heads.n_kv_heads) + " kv heads exceed the " +
           std::to_string(kAttentionCounterBytes / 4) + " arrival counters";
  return "";
}

// Fills in the attention_flash_decode fields of `plan`; returns false (plan untouched) when the
// device cannot give it the shared memory it needs.
bool plan_flash_decode(AttentionPlan& plan, const DeviceInfo& info, const AttentionTuning& tuning) {
  const HeadLayout& heads = plan.heads;
  const uint32_t ratio = heads.n_heads / heads.n_kv_heads, ncg = heads.head_dim / 8;
  // The subgroup size: required where the device allows, else any in [min, max] may run.
  const uint32_t wanted_sg = tuning.subgroup_size ? tuning.subgroup_size : info.subgroup_size;
  if (tuning.subgroup_size && info.subgroup_size_control &&
      (wanted_sg < info.min_subgroup_size || wanted_sg > info.max_subgroup_size))
    throw Error("attention: subgroups of " + std::to_string(wanted_sg) + " lanes are outside the " +
                std::to_string(info.min_subgroup_size) + ".." + std::to_string(info.max_subgroup_size) +
                " that device '" + info.name + "' can require");
  const uint32_t sg = std::max<uint32_t>(info.subgroup_size_control ? wanted_sg : info.subgroup_size, 1);
  const uint32_t min_sg = info.subgroup_size_control ? sg : std::max<uint32_t>(std::min(info.min_subgroup_size, sg), 1);
  const uint32_t max_sg = info.subgroup_size_control ? sg : std::max(info.max_subgroup_size, sg);
  // Lanes per key: q of the R heads for a lane's columns in at most 32 registers (R*HD/LPK floats;
  // 16 lanes for 2B4T's 4 x 128), no more lanes than column groups, within the smallest subgroup.
  uint32_t lpk = tuning.lanes_per_key;
  if (lpk == 0) lpk = std::min({pow2_ceil(ceil_div(uint64_t(ratio) * ncg, 4)), pow2_floor(ncg), pow2_floor(min_sg)});
  if (!is_pow2(lpk) || lpk > min_sg)
    throw Error("attention: " + std::to_string(lpk) + " lanes per key must be a power of two within the subgroup size " +
                std::to_string(min_sg));
  // Workgroup: four subgroups on GPUs (enough lanes to keep loads in flight, few enough partial
  // states to merge), one subgroup on CPU devices; whole subgroups of the largest size.
  uint32_t wg = tuning.workgroup;
  if (wg == 0) {
    wg = info.is_cpu() ? max_sg : std::clamp<uint32_t>(4 * sg, 64, 256);
    wg = std::max(round_up(wg, max_sg), lpk);
    if (info.max_workgroup_invocations) wg = std::min(wg, info.max_workgroup_invocations);
  }
  if (wg % lpk || wg % min_sg)
    throw Error("attention: a workgroup of " + std::to_string(wg) + " lanes is not whole subgroups of " +
                std::to_string(min_sg) + " and key groups of " + std::to_string(lpk));
  const uint32_t kb = tuning.key_block ? tuning.key_block : 4;
  const uint32_t step = wg / lpk * kb;  // keys per workgroup and step
  const uint32_t min_split = tuning.min_split ? tuning.min_split : 4 * step;
  // Splits: enough workgroups for about 4 per compute unit at the maximum context, each with at
  // least min_split keys there. Mixed batches plan as for one token, so that a sequence's split
  // (and so its bits) does not depend on how many others share the step.
  const uint32_t groups = (plan.layout == SequenceLayout::Mixed ? 1 : plan.tokens) * heads.n_kv_heads;
  uint32_t splits = tuning.splits;
  if (splits == 0)
    splits = std::clamp<uint32_t>(ceil_div(uint64_t(info.assumed_compute_units()) * 4, groups), 1,
                                  std::min<uint32_t>(128, ceil_div(plan.max_context, min_split)));
  uint32_t max_subgroups = wg / min_sg;
  while (splits < plan.max_context &&
         flash_loop_iterations(heads, wg, max_subgroups, step, plan.max_context, splits) > kShaderLoopBudget)
    splits *= 2;
  if (flash_loop_iterations(heads, wg, max_subgroups, step, plan.max_context, splits) > kShaderLoopBudget)
    throw Error("attention: " + std::to_string(plan.max_context) + " keys exceed the loop budget of a split");
  const uint64_t limit = info.max_shared_memory ? info.max_shared_memory : 16384;
  if (flash_shared_bytes(heads, max_subgroups, splits) > limit) return false;

  plan.flash_decode = true;
  plan.workgroup = wg;
  plan.lanes_per_key = lpk;
  plan.subgroup_size = info.subgroup_size_control ? sg : 0;
  plan.max_subgroups = max_subgroups;
  plan.key_block = kb;
  plan.key_tile = kb;
  plan.tokens_per_group = 1;
  plan.n_chunks = splits;
  plan.chunk = ceil_div(ceil_div(plan.max_context, splits), step) * step;
  plan.min_split = min_split;
  plan.combine_workgroup = 0;
  if (splits > 1) {
    const uint64_t record = (uint64_t(ratio) * heads.head_dim / 4 + (2 * ratio + 3) / 4) * 16;
    plan.partials_offset = kAttentionCounterBytes;
    plan.scratch_bytes = kAttentionCounterBytes + uint64_t(plan.tokens) * heads.n_kv_heads * splits * record;
  }
  return true;
}

}  // namespace

AttentionPlan plan_attention(const DeviceInfo& info, const HeadLayout& heads, uint32_t tokens, uint32_t max_context,
                             const AttentionTuning& tuning, SequenceLayout layout) {
  detail::check_heads(heads, "attention");
  if (heads.head_dim % 8)
    throw Error("attention: head_dim " + std::to_string(heads.head_dim) + " is not a multiple of 8");
  if (tokens == 0 || max_context == 0) throw Error("attention: the plan needs at least one token and one key");
  AttentionPlan plan;
  plan.heads = heads;
  plan.tokens = tokens;
  plan.max_context = max_context;
  plan.layout = layout;
  const bool mixed = layout == SequenceLayout::Mixed;
  const uint32_t sg = std::max<uint32_t>(info.subgroup_size, 1);
  const uint32_t ratio = heads.n_heads / heads.n_kv_heads;
  const uint32_t ncg = heads.head_dim / 8;

  // GPUs, decode-like steps: attention_flash_decode (unless tuning chose a kernel). Where it cannot
  // run by default (no subgroup shuffles, too many tokens x kv heads), the tiled kernel does.
  const bool decode_like = mixed || tokens <= kFlashDecodeMaxTokens;
  const bool want_flash = tuning.flash_decode.value_or(!info.is_cpu() && decode_like && !tuning.lane_split.has_value());
  if (want_flash) {
    const std::string why_not = flash_unsupported(info, heads, tokens);
    if (why_not.empty() && plan_flash_decode(plan, info, tuning)) return plan;
    if (tuning.flash_decode.value_or(false))
      throw Error("attention: the flash-decode kernel cannot run here: " +
                  (why_not.empty() ? std::string("device '") + info.name + "' has too little shared memory" : why_not));
  }

  // Query tokens per workgroup: all of a decode step's few tokens; blocks of 8 for prefill (K/V
  // tiles are then read once per 8 tokens), fewer if shared memory is short. Tokens of different
  // sequences (Mixed) share no keys: one per workgroup, each looping over its own live length.
  uint32_t bt = tuning.tokens_per_group ? tuning.tokens_per_group : (mixed ? 1 : std::min<uint32_t>(tokens, 8));
  uint32_t kt = tuning.key_tile ? tuning.key_tile : (bt * ratio <= 8 ? 64 : 32);
  const uint64_t limit = info.max_shared_memory ? info.max_shared_memory : 16384;
  while (shared_bytes(heads, bt, kt) > limit && (bt > 1 || kt > 8)) {
    if (tuning.tokens_per_group == 0 && bt > 1) bt = (bt + 1) / 2;
    else if (tuning.key_tile == 0 && kt > 8) kt /= 2;
    else break;
  }
  if (shared_bytes(heads, bt, kt) > limit)
    throw Error("attention: " + std::to_string(bt) + " tokens x " + std::to_string(ratio) + " heads of dimension " +
                std::to_string(heads.head_dim) + " need " + std::to_string(shared_bytes(heads, bt, kt)) +
                " bytes of shared memory; this device has " + std::to_string(limit));
  // CPU devices, decode and prefill (measured 2x and 5x faster on lavapipe, docs/performance.md):
  // attention_decode (lanes split the head dimension, one subgroup per workgroup, the merge in the
  // same dispatch). Needs subgroup arithmetic and a workgroup that is exactly one subgroup: a
  // required subgroup size, or a device with a single subgroup size.
  const bool fixed_subgroup =
      info.subgroup_size_control ||
      (info.min_subgroup_size == info.max_subgroup_size && info.min_subgroup_size == info.subgroup_size);
  const bool lane_split_ok = info.subgroup_arithmetic && fixed_subgroup && info.subgroup_size >= 1 &&
                             info.subgroup_size <= 128;
  const bool lane_split = tuning.lane_split.value_or(info.is_cpu()) && lane_split_ok;
  if (tuning.lane_split.value_or(false) && !lane_split_ok)
    throw Error("attention: the lane-split decode kernel needs subgroup arithmetic and a fixed subgroup size");
  if (lane_split) {
    const uint32_t kb = tuning.key_block ? tuning.key_block : 8;
    // Mixed (batched decode): planned as for one token, so a sequence's split -- and so its bits --
    // do not depend on how many others share the step.
    const uint32_t groups = tokens * heads.n_kv_heads;
    const uint32_t split_groups = layout == SequenceLayout::Mixed ? heads.n_kv_heads : groups;
    // Enough workgroups to spread over the device's threads (several each), never an empty split
    // at the maximum context, and few enough keys per split for the loop budget.
    uint32_t splits = tuning.splits ? tuning.splits : std::clamp<uint32_t>(ceil_div(32, split_groups), 1, 64);
    splits = std::min(splits, ceil_div(max_context, kb));
    while (splits < max_context && decode_loop_iterations(max_context, splits, kb) > kShaderLoopBudget) splits *= 2;
    if (decode_loop_iterations(max_context, splits, kb) > kShaderLoopBudget)
      throw Error("attention: " + std::to_string(max_context) + " keys exceed the loop budget of a split");
    plan.lane_split = true;
    plan.key_block = kb;
    plan.workgroup = info.subgroup_size;
    plan.tokens_per_group = 1;
    plan.key_tile = kb;
    plan.n_chunks = splits;
    plan.chunk = ceil_div(ceil_div(max_context, splits), kb) * kb;
    plan.combine_workgroup = 0;
    plan.min_split = tuning.min_split ? tuning.min_split : 64;
    if (tuning.texel_loads.value_or(false) && !info.texel_buffer_uint4)
      throw Error("attention: texel loads need R32G32B32A32_UINT uniform texel buffers, which device '" + info.name +
                  "' does not support");
    plan.texel_loads = tuning.texel_loads.value_or(prefers_texel_loads(info)) && info.texel_buffer_uint4;
    if (splits > 1) {
      const uint64_t ratio64 = ratio, ncg64 = heads.head_dim / 8;
      const uint64_t record = (ratio64 * ncg64 * 2 + (2 * ratio64 + 3) / 4) * 16;
      const uint64_t align = std::max<uint64_t>(info.min_storage_buffer_offset_alignment, 16);
      plan.partials_offset = kAttentionCounterBytes;
      // The counters: the scratch's head (cleared once, left at 0 by every dispatch, as flash-decode's)
      // where they fit, else after the partials with a fill before each dispatch.
      const uint64_t partials_end = kAttentionCounterBytes + align_up(uint64_t(groups) * splits * record, align);
      plan.counters_offset = uint64_t(groups) * 4 <= kAttentionCounterBytes ? 0 : partials_end;
      plan.scratch_bytes = plan.counters_offset ? partials_end + uint64_t(groups) * 4 : partials_end;
    }
    return plan;
  }

  plan.tokens_per_group = bt;
  plan.key_tile = kt;

  // Workgroup: one lane per (8-column group, token) item of the P*V step, whole subgroups, at most 256.
  uint32_t wg = tuning.workgroup;
  if (wg == 0) {
    wg = std::clamp<uint32_t>(round_up(ncg * bt, sg), sg, 256);
    if (info.max_workgroup_invocations) wg = std::min(wg, info.max_workgroup_invocations);
  }
  plan.workgroup = wg;
  // CPU devices gather every shared-memory load lane by lane: for one query token keep q in registers.
  plan.q_in_registers = tuning.q_in_registers.value_or(info.is_cpu()) && bt == 1;

  // Split the context when one token block cannot fill the device (decode, batched decode): chunks
  // of 256 keys.
  uint32_t chunk = tuning.chunk;
  if (chunk == 0) chunk = tokens <= bt || mixed ? 256 : max_context;
  chunk = round_up(std::min(chunk, round_up(max_context, kt)), kt);
  // Keep each invocation's loop iterations within the budget (see kShaderLoopBudget): split instead.
  while (chunk > kt && tiled_loop_iterations(heads, bt, kt, wg, chunk) > kShaderLoopBudget)
    chunk = round_up(chunk / 2, kt);
  if (tiled_loop_iterations(heads, bt, kt, wg, chunk) > kShaderLoopBudget)
    throw Error("attention: a tile of " + std::to_string(kt) + " keys exceeds the loop budget");
  plan.chunk = chunk;
  plan.n_chunks = (max_context + chunk - 1) / chunk;
  plan.combine_workgroup = std::max(sg, std::min<uint32_t>(64, round_up(heads.head_dim, sg)));
  if (plan.split()) {
    plan.partials_offset = kAttentionCounterBytes;
    plan.scratch_bytes =
        kAttentionCounterBytes + uint64_t(tokens) * heads.n_heads * plan.n_chunks * (heads.head_dim + 2) * 4;
  }
  return plan;
}

void record_attention(Recording& rec, const AttentionPlan& plan, const AttentionArgs& args) {
  const HeadLayout& h = plan.heads;
  detail::check_heads(h, "attention");
  if (args.q.tokens != plan.tokens)
    throw Error("attention: the plan is for " + std::to_string(plan.tokens) + " tokens, the activations hold " +
                std::to_string(args.q.tokens));
  const uint64_t q_end = uint64_t(args.q.q_col) + uint64_t(h.n_heads) * h.head_dim;
  if (q_end > args.q.row_stride)
    throw Error("attention: q heads (columns up to " + std::to_string(q_end) + ") exceed rows of " +
                std::to_string(args.q.row_stride) + " floats");
  if (args.cache.capacity < plan.max_context)
    throw Error("attention: the plan covers " + std::to_string(plan.max_context) + " positions but the KV cache holds " +
                std::to_string(args.cache.capacity));
  detail::check_cache(args.cache, h, plan.tokens, args.slots, "attention");
  // Without slots the shaders never read the slots binding (spec constant off): bind the positions.
  const bool has_slots = args.slots.buffer != VK_NULL_HANDLE;
  const BufferRange slots = has_slots ? args.slots : args.positions;
  const uint32_t slot_rows = args.cache.capacity, max_slot = args.cache.sequences - 1;
  const uint32_t out_stride = args.out_stride ? args.out_stride : h.n_heads * h.head_dim;
  const uint64_t out_bytes = (uint64_t(plan.tokens - 1) * out_stride + uint64_t(h.n_heads) * h.head_dim) * 4;
  if (args.out.size && args.out.size < out_bytes)
    throw Error("attention: output range holds " + std::to_string(args.out.size) + " bytes, needs " +
                std::to_string(out_bytes));
  if (plan.split() && (!args.scratch.buffer || (args.scratch.size && args.scratch.size < plan.scratch_bytes)))
    throw Error("attention: the split plan needs a scratch range of " + std::to_string(plan.scratch_bytes) + " bytes");

  const uint32_t ratio = h.n_heads / h.n_kv_heads;
  // The scratch past the flash-decode counters (see attention.h).
  const BufferRange partials{args.scratch.buffer, args.scratch.offset + plan.partials_offset,
                             args.scratch.size ? args.scratch.size - plan.partials_offset : 0};
  // The arrival counters at the scratch's head (flash-decode, and lane-split where they fit), cleared
  // once now (see attention.h).
  auto head_counters = [&] {
    clear_attention_counters(rec.device(), args.scratch);
    return BufferRange{args.scratch.buffer, args.scratch.offset, kAttentionCounterBytes};
  };
  // attention_decode and attention_flash_decode take the same push constants and bindings.
  struct {
    uint32_t tokens, q_stride, q_col, n_kv_heads, n_chunks, capacity;
    float scale_log2e;
    uint32_t out_stride, min_split, slot_rows, max_slot;
  } decode_push{plan.tokens, args.q.row_stride, args.q.q_col, h.n_kv_heads, plan.n_chunks, plan.max_context,
                attention_scale_log2e(h, args.scale), out_stride, plan.min_split, slot_rows, max_slot};
  const bool q_vec4 = args.q.row_stride % 4 == 0 && args.q.q_col % 4 == 0;
  // q read, the output written, positions; K and V rows read once per live key; q.k and p.v for
  // every head and attended key. A split adds its partials (written, then read by the merge).
  const double T = plan.tokens, hd = h.head_dim, q_floats = T * h.n_heads * hd;
  const auto work = [&](double partial_bytes) {
    return DispatchWork{.bytes = 2 * q_floats * 4 + T * (has_slots ? 8 : 4) + partial_bytes,
                        .bytes_per_key = 2.0 * h.n_kv_heads * hd * 2,
                        .macs_per_key = 2.0 * h.n_heads * hd};
  };
  const double partials_bytes = plan.split() ? T * h.n_heads * plan.n_chunks * (hd + 2) * 4 : 0;
  if (plan.flash_decode) {
    const Pipeline& pipe = rec.device().pipeline(
        "attention_flash_decode", {.constants = {{0, plan.workgroup},
                                                 {1, h.head_dim},
                                                 {2, ratio},
                                                 {3, plan.key_block},
                                                 {4, plan.lanes_per_key},
                                                 {5, q_vec4 ? 1u : 0u},
                                                 {6, has_slots ? 1u : 0u},
                                                 {7, plan.max_subgroups},
                                                 {8, plan.n_chunks}},
                                   .required_subgroup_size = plan.subgroup_size});
    BufferRange part = args.out, counters = args.out;  // unused without a split
    if (plan.split()) {
      counters = head_counters();
      part = partials;
    }
    // binding 7 is the q buffer again, read as vec4 when q_vec4
    rec.dispatch(pipe, {args.q.buffer, args.positions, args.cache.k, args.cache.v, args.out, part, counters,
                        args.q.buffer, slots},
                 decode_push, plan.n_chunks, h.n_kv_heads, plan.tokens, {"", work(2 * partials_bytes)});
    return;
  }
  if (plan.lane_split) {
    // Texel loads (attention_decode_texel) when the whole K and V ranges -- all slots -- suit texel
    // views: aligned offsets, at most maxTexelBufferElements uvec4s. q then is a texel view too when
    // it is read as vec4 and its range suits one; else q is read as scalars and binding 7 (unused)
    // gets the K view.
    const DeviceInfo& info = rec.device().info();
    const uint64_t kv_bytes = kv_cache_bytes(args.cache.capacity, h.n_kv_heads, h.head_dim) * args.cache.sequences;
    auto fits_texel = [&](const BufferRange& r, uint64_t bytes) {
      const uint64_t align = std::max<uint64_t>(info.min_texel_buffer_offset_alignment, 1);
      return r.offset % align == 0 && bytes % 16 == 0 && bytes / 16 <= info.max_texel_buffer_elements;
    };
    const bool texel = plan.texel_loads && fits_texel(args.cache.k, kv_bytes) && fits_texel(args.cache.v, kv_bytes);
    const uint64_t q_bytes = (uint64_t(plan.tokens - 1) * args.q.row_stride + q_end) * 4;
    const bool q_texel = texel && q_vec4 && fits_texel(args.q.buffer, q_bytes) &&
                         (args.q.buffer.size == 0 || args.q.buffer.size >= q_bytes);
    const BufferRange k = texel ? BufferRange{args.cache.k.buffer, args.cache.k.offset, kv_bytes} : args.cache.k;
    const BufferRange v = texel ? BufferRange{args.cache.v.buffer, args.cache.v.offset, kv_bytes} : args.cache.v;
    const BufferRange q4 = !texel ? args.q.buffer
                           : q_texel ? BufferRange{args.q.buffer.buffer, args.q.buffer.offset, q_bytes}
                                     : k;
    const bool read_q4 = texel ? q_texel : q_vec4;
    const Pipeline& pipe = rec.device().pipeline(
        texel ? "attention_decode_texel" : "attention_decode",
        {.constants = {{0, plan.workgroup},
                       {1, h.head_dim},
                       {2, ratio},
                       {3, plan.key_block},
                       {4, read_q4 ? 1u : 0u},
                       {5, has_slots ? 1u : 0u}},
         .required_subgroup_size = plan.workgroup});
    BufferRange part = args.out, counters = args.out;  // unused without a split
    if (plan.split()) {
      if (plan.counters_offset == 0) {
        counters = head_counters();
        part = partials;
      } else {  // too many for the head: after the partials, filled before each dispatch
        part = {args.scratch.buffer, args.scratch.offset + plan.partials_offset,
                plan.counters_offset - plan.partials_offset};
        counters = {args.scratch.buffer, args.scratch.offset + plan.counters_offset,
                    plan.scratch_bytes - plan.counters_offset};
        rec.fill(counters, 0);
      }
    }
    // binding 7 is the q buffer again, read as vec4 when read_q4
    rec.dispatch(pipe, {args.q.buffer, args.positions, k, v, args.out, part, counters, q4, slots},
                 decode_push, plan.n_chunks, h.n_kv_heads, plan.tokens, {"", work(2 * partials_bytes)});
    return;
  }
  const uint32_t capacity = std::min(plan.max_context, plan.n_chunks * plan.chunk);
  const uint32_t stats_offset = plan.tokens * h.n_heads * plan.n_chunks * h.head_dim;
  struct {
    uint32_t tokens, q_stride, q_col, n_kv_heads, chunk, n_chunks, capacity;
    float scale_log2e;
    uint32_t out_stride, stats_offset, slot_rows, max_slot;
  } push{plan.tokens, args.q.row_stride, args.q.q_col, h.n_kv_heads, plan.chunk, plan.n_chunks, capacity,
         attention_scale_log2e(h, args.scale), out_stride, stats_offset, slot_rows, max_slot};
  const PipelineOptions options{.constants = {{0, plan.workgroup},
                                              {1, h.head_dim},
                                              {2, ratio},
                                              {3, plan.tokens_per_group},
                                              {4, plan.key_tile},
                                              {5, plan.q_in_registers ? 1u : 0u},
                                              {6, has_slots ? 1u : 0u}}};
  const uint32_t blocks = (plan.tokens + plan.tokens_per_group - 1) / plan.tokens_per_group;
  if (!plan.split()) {
    const Pipeline& pipe = rec.device().pipeline("attention", options);
    rec.dispatch(pipe, {args.q.buffer, args.positions, args.cache.k, args.cache.v, args.out, slots}, push, 1,
                 h.n_kv_heads, blocks, {"", work(0)});
    return;
  }
  const Pipeline& split = rec.device().pipeline("attention_split", options);
  DispatchWork split_work = work(partials_bytes);
  split_work.bytes -= q_floats * 4;  // the split writes partials, not the output
  rec.dispatch(split, {args.q.buffer, args.positions, args.cache.k, args.cache.v, partials, slots}, push,
               plan.n_chunks, h.n_kv_heads, blocks, {"", split_work});
  const Pipeline& combine = rec.device().pipeline(
      "attention_combine", {.constants = {{0, plan.combine_workgroup}, {1, h.head_dim}}});
  struct {
    uint32_t n_heads, chunk, n_chunks, capacity, out_stride, stats_offset;
  } cpush{h.n_heads, plan.chunk, plan.n_chunks, capacity, out_stride, stats_offset};
  rec.dispatch(combine, {args.positions, partials, args.out}, cpush, h.n_heads, plan.tokens, 1,
               {"", DispatchWork{.bytes = partials_bytes + q_floats * 4 + T * 4}});
}

float attention_scale_log2e(const HeadLayout& heads, float scale) {
  const float s = scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(heads.head_dim));
  return s * 1.4426950408889634f;
}

uint32_t one_split_keys(const AttentionPlan& plan) {
  if (!plan.flash_decode) throw Error("internal: one_split_keys of a plan that is not flash-decode");
  return plan.split() ? std::min(plan.min_split, plan.max_context) : plan.max_context;
}

uint64_t split_state_shared_bytes(const AttentionPlan& plan) {
  return flash_shared_bytes(plan.heads, plan.max_subgroups, 0) - 4;
}

void clear_attention_counters(Device& device, BufferRange scratch) {
  if (!scratch.buffer) throw Error("attention: no scratch range to clear");
  if (scratch.size && scratch.size < kAttentionCounterBytes)
    throw Error("attention: a scratch range of " + std::to_string(scratch.size) + " bytes has no room for the " +
                std::to_string(kAttentionCounterBytes) + " bytes of counters");
  zero_counters_now(device, {scratch.buffer, scratch.offset, kAttentionCounterBytes});
}

}  // namespace ternvk::ops

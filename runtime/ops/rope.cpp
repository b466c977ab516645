#include "runtime/ops/rope.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"

namespace ternvk::ops {

QkvView QkvView::fused(BufferRange buffer, uint32_t tokens, const HeadLayout& heads) {
  const uint32_t hd = heads.head_dim;
  return {buffer, tokens, (heads.n_heads + 2 * heads.n_kv_heads) * hd, 0, heads.n_heads * hd,
          (heads.n_heads + heads.n_kv_heads) * hd};
}

float rope_theta_scale(float theta, uint32_t head_dim) {
  return std::pow(theta, -2.0f / static_cast<float>(head_dim));
}

namespace detail {

void check_heads(const HeadLayout& heads, const char* op) {
  if (heads.n_heads == 0 || heads.n_kv_heads == 0 || heads.head_dim == 0)
    throw Error(std::string(op) + ": head counts and head_dim must be > 0");
  if (heads.n_heads % heads.n_kv_heads)
    throw Error(std::string(op) + ": n_heads (" + std::to_string(heads.n_heads) + ") must be a multiple of n_kv_heads (" +
                std::to_string(heads.n_kv_heads) + ")");
}

void check_view(const QkvView& act, const HeadLayout& heads, bool needs_v, const char* op) {
  const uint64_t hd = heads.head_dim;
  uint64_t end = std::max<uint64_t>(act.q_col + heads.n_heads * hd, act.k_col + heads.n_kv_heads * hd);
  if (needs_v) end = std::max<uint64_t>(end, act.v_col + heads.n_kv_heads * hd);
  if (end > act.row_stride)
    throw Error(std::string(op) + ": the q/k/v columns (up to " + std::to_string(end) +
                ") do not fit in activation rows of " + std::to_string(act.row_stride) + " floats");
  const uint64_t need = act.tokens == 0 ? 0 : ((act.tokens - 1ull) * act.row_stride + end) * 4;
  if (act.buffer.size && act.buffer.size < need)
    throw Error(std::string(op) + ": activation range holds " + std::to_string(act.buffer.size) + " bytes, " +
                std::to_string(act.tokens) + " tokens need " + std::to_string(need));
}

uint32_t rope_workgroup(const DeviceInfo& info) {
  // Tiny elementwise op: a few subgroups per workgroup, never fewer than one subgroup.
  return std::clamp<uint32_t>(info.subgroup_size * 4, std::max<uint32_t>(info.subgroup_size, 32), 256);
}

}  // namespace detail

void record_rope(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                 const RopeParams& rope, bool rotate_q, bool rotate_k) {
  detail::check_heads(heads, "rope");
  detail::check_view(act, heads, false, "rope");
  if (heads.head_dim % 4)
    throw Error("rope: head_dim " + std::to_string(heads.head_dim) + " is not a multiple of 4");
  if (act.tokens == 0 || (!rotate_q && !rotate_k)) return;
  const uint32_t wg = detail::rope_workgroup(rec.device().info());
  const Pipeline& pipe = rec.device().pipeline(
      "rope", {.constants = {{0, wg}, {1, heads.head_dim}, {2, rope.form == RopeForm::NeoX ? 1u : 0u}}});
  const uint32_t first = rotate_q ? 0 : heads.n_heads;
  const uint32_t slots = (rotate_q ? heads.n_heads : 0) + (rotate_k ? heads.n_kv_heads : 0);
  struct {
    uint32_t row_stride, q_col, k_col, v_col, n_heads, n_kv_heads, first_slot, n_slots, flags, capacity;
    float theta_scale;
    uint32_t sequences;  // KV store only
  } push{act.row_stride, act.q_col, act.k_col, act.v_col, heads.n_heads, heads.n_kv_heads, first, slots,
         (rotate_q ? 1u : 0u) | (rotate_k ? 2u : 0u), 0, rope_theta_scale(rope.theta, heads.head_dim), 0};
  const uint32_t items = slots * (heads.head_dim / 4);
  // The rotated heads read and written in place, and the positions.
  const double moved = double(act.tokens) * slots * heads.head_dim * 4;
  rec.dispatch(pipe, {act.buffer, positions}, push, (items + wg - 1) / wg, act.tokens, 1,
               {"", DispatchWork{.bytes = 2 * moved + double(act.tokens) * 4}});
}

}  // namespace ternvk::ops

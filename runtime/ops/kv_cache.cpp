#include "runtime/ops/kv_cache.h"

#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"

namespace ternvk::ops {

uint64_t kv_cache_bytes(uint32_t capacity, uint32_t n_kv_heads, uint32_t head_dim) {
  return uint64_t(capacity) * n_kv_heads * head_dim * 2;
}

namespace {

void record_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                  const RopeParams& rope, const KvCacheLayer& cache, bool rotate, const char* op) {
  detail::check_heads(heads, op);
  detail::check_view(act, heads, true, op);
  if (heads.head_dim % 4)
    throw Error(std::string(op) + ": head_dim " + std::to_string(heads.head_dim) + " is not a multiple of 4");
  if (cache.capacity == 0) throw Error(std::string(op) + ": the KV cache has no capacity");
  const uint64_t bytes = kv_cache_bytes(cache.capacity, heads.n_kv_heads, heads.head_dim);
  if ((cache.k.size && cache.k.size < bytes) || (cache.v.size && cache.v.size < bytes))
    throw Error(std::string(op) + ": KV cache ranges hold fewer than the " + std::to_string(bytes) + " bytes that " +
                std::to_string(cache.capacity) + " positions need");
  if (act.tokens == 0) return;
  const uint32_t wg = detail::rope_workgroup(rec.device().info());
  const Pipeline& pipe = rec.device().pipeline(
      "rope_kv", {.constants = {{0, wg}, {1, heads.head_dim}, {2, rope.form == RopeForm::NeoX ? 1u : 0u}}});
  const uint32_t first = rotate ? 0 : heads.n_heads;
  const uint32_t slots = (rotate ? heads.n_heads : 0) + 2 * heads.n_kv_heads;
  struct {
    uint32_t row_stride, q_col, k_col, v_col, n_heads, n_kv_heads, first_slot, n_slots, flags, capacity;
    float theta_scale;
    uint32_t pad;
  } push{act.row_stride, act.q_col, act.k_col, act.v_col, heads.n_heads, heads.n_kv_heads, first, slots,
         rotate ? 3u : 0u, cache.capacity, rope_theta_scale(rope.theta, heads.head_dim), 0};
  const uint32_t items = slots * (heads.head_dim / 4);
  rec.dispatch(pipe, {act.buffer, positions, cache.k, cache.v}, push, (items + wg - 1) / wg, act.tokens);
}

}  // namespace

void record_kv_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                     const KvCacheLayer& cache) {
  record_store(rec, act, heads, positions, RopeParams{}, cache, false, "kv_store");
}

void record_rope_kv_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                          const RopeParams& rope, const KvCacheLayer& cache) {
  record_store(rec, act, heads, positions, rope, cache, true, "rope_kv_store");
}

}  // namespace ternvk::ops

#include "runtime/ops/kv_cache.h"

#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"

namespace ternvk::ops {

uint64_t kv_cache_bytes(uint32_t capacity, uint32_t n_kv_heads, uint32_t head_dim) {
  return uint64_t(capacity) * n_kv_heads * head_dim * 2;
}

namespace detail {

void check_cache(const KvCacheLayer& cache, const HeadLayout& heads, uint32_t tokens, BufferRange slots,
                 const char* op) {
  if (cache.capacity == 0) throw Error(std::string(op) + ": the KV cache has no capacity");
  if (cache.sequences == 0) throw Error(std::string(op) + ": the KV cache has no sequence slots");
  const uint64_t rows = uint64_t(cache.capacity) * cache.sequences;
  const uint64_t bytes = rows * heads.n_kv_heads * heads.head_dim * 2;
  // The shaders index the cache with 32-bit words.
  if (bytes / 4 > 0xffffffffull)
    throw Error(std::string(op) + ": a KV cache of " + std::to_string(rows) + " rows exceeds 32-bit indexing");
  auto check_range = [&](const BufferRange& r, const char* which) {
    if (r.size && r.size < bytes)
      throw Error(std::string(op) + ": the " + which + " cache range holds " + std::to_string(r.size) +
                  " bytes; " + std::to_string(cache.sequences) + " sequences x " + std::to_string(cache.capacity) +
                  " positions need " + std::to_string(bytes));
  };
  check_range(cache.k, "K");
  check_range(cache.v, "V");
  if (slots.buffer && slots.size && slots.size < uint64_t(tokens) * 4)
    throw Error(std::string(op) + ": the slots range holds " + std::to_string(slots.size) + " bytes; " +
                std::to_string(tokens) + " tokens need " + std::to_string(uint64_t(tokens) * 4));
}

}  // namespace detail

namespace {

void record_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                  const RopeParams& rope, const KvCacheLayer& cache, BufferRange slots, bool rotate, const char* op) {
  detail::check_heads(heads, op);
  detail::check_view(act, heads, true, op);
  if (heads.head_dim % 4)
    throw Error(std::string(op) + ": head_dim " + std::to_string(heads.head_dim) + " is not a multiple of 4");
  detail::check_cache(cache, heads, act.tokens, slots, op);
  if (act.tokens == 0) return;
  const uint32_t wg = detail::rope_workgroup(rec.device().info());
  const bool has_slots = slots.buffer != VK_NULL_HANDLE;
  const Pipeline& pipe = rec.device().pipeline(
      "rope_kv", {.constants = {{0, wg},
                                {1, heads.head_dim},
                                {2, rope.form == RopeForm::NeoX ? 1u : 0u},
                                {3, has_slots ? 1u : 0u}}});
  const uint32_t first = rotate ? 0 : heads.n_heads;
  const uint32_t n_slots = (rotate ? heads.n_heads : 0) + 2 * heads.n_kv_heads;
  struct {
    uint32_t row_stride, q_col, k_col, v_col, n_heads, n_kv_heads, first_slot, n_slots, flags, capacity;
    float theta_scale;
    uint32_t sequences;
  } push{act.row_stride, act.q_col, act.k_col, act.v_col, heads.n_heads, heads.n_kv_heads, first, n_slots,
         rotate ? 3u : 0u, cache.capacity, rope_theta_scale(rope.theta, heads.head_dim), cache.sequences};
  const uint32_t items = n_slots * (heads.head_dim / 4);
  // Without slots the shader never reads binding 4 (spec constant 3 off): bind the positions there.
  // Every slot's head read, the rotated ones written back, k and v stored as fp16; positions, slots.
  const double T = act.tokens, hd = heads.head_dim, kv = double(heads.n_kv_heads) * hd;
  const double rotated = (rotate ? heads.n_heads + heads.n_kv_heads : 0) * hd;
  const DispatchWork work{.bytes = T * n_slots * hd * 4 + T * rotated * 4 + T * 2 * kv * 2 + T * (has_slots ? 8 : 4)};
  rec.dispatch(pipe, {act.buffer, positions, cache.k, cache.v, has_slots ? slots : positions}, push,
               (items + wg - 1) / wg, act.tokens, 1, {"", work});
}

}  // namespace

void record_kv_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                     const KvCacheLayer& cache, BufferRange slots) {
  record_store(rec, act, heads, positions, RopeParams{}, cache, slots, false, "kv_store");
}

void record_rope_kv_store(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                          const RopeParams& rope, const KvCacheLayer& cache, BufferRange slots) {
  record_store(rec, act, heads, positions, rope, cache, slots, true, "rope_kv_store");
}

}  // namespace ternvk::ops

// Rotary position embedding (RoPE) on the q and k heads of fp32 activations, in place.
//
// Activations are viewed as T rows of `row_stride` floats holding n_heads q heads at column q_col and
// n_kv_heads k (and v) heads at k_col (v_col), head_dim floats each: the engine's fused QKV output
// [T, (H + 2*KVH) * hd] is {row_stride = (H+2KVH)*hd, q_col = 0, k_col = H*hd, v_col = (H+KVH)*hd};
// separate q [T, H*hd] and k [T, KVH*hd] buffers are two views with their own strides.
// Positions: uint32 [T], written by the host before each replay.
#pragma once
#include <cstdint>

#include "runtime/device/device_info.h"
#include "runtime/device/memory.h"
#include "runtime/device/recording.h"

namespace ternvk::ops {

// Head counts of one attention layer (n_heads a multiple of n_kv_heads).
struct HeadLayout {
  uint32_t n_heads = 0;
  uint32_t n_kv_heads = 0;
  uint32_t head_dim = 0;
};

// Where q, k and v sit in fp32 activation rows (all in floats). Unused columns may be left at 0.
struct QkvView {
  BufferRange buffer;
  uint32_t tokens = 0;
  uint32_t row_stride = 0;
  uint32_t q_col = 0;
  uint32_t k_col = 0;
  uint32_t v_col = 0;
  // The fused [T, (H + 2*KVH) * hd] layout: q, then k, then v.
  static QkvView fused(BufferRange buffer, uint32_t tokens, const HeadLayout& heads);
};

enum class RopeForm {
  NeoX,           // dimension i rotates with i + head_dim/2 (both BitNet archs)
  AdjacentPairs,  // dimension 2i rotates with 2i + 1 (LLaMA-arch GGUF, permuted q/k)
};

struct RopeParams {
  float theta = 10000.0f;  // the file's rope freq base
  RopeForm form = RopeForm::NeoX;
};

// Frequency of rotation pair i: theta_scale^i with theta_scale = theta^(-2/head_dim) in fp32 (as
// llama.cpp); angle = float(pos) * frequency in fp32. Exposed for CPU references.
float rope_theta_scale(float theta, uint32_t head_dim);

// Rotates the q heads and/or the k heads of every token in place (one dispatch).
// Requires head_dim % 4 == 0.
void record_rope(Recording& rec, const QkvView& act, const HeadLayout& heads, BufferRange positions,
                 const RopeParams& rope, bool rotate_q = true, bool rotate_k = true);

namespace detail {
// Shared by rope and the fused rope + KV store (kv_cache.cpp).
void check_heads(const HeadLayout& heads, const char* op);
void check_view(const QkvView& act, const HeadLayout& heads, bool needs_v, const char* op);
uint32_t rope_workgroup(const DeviceInfo& info);
}  // namespace detail

}  // namespace ternvk::ops

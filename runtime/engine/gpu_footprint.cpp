#include "runtime/engine/gpu_footprint.h"

#include <algorithm>

namespace ternvk {
namespace {
uint64_t ternary_bytes(uint64_t rows, uint64_t cols) { return rows * ((cols + 63) / 64 * 16) + rows * 4; }
}  // namespace

GpuFootprint estimate_gpu_footprint(const ModelConfig& c, int context, int sequences, int prefill_chunk,
                                    int layers, bool with_embedding, bool with_head, HeadPrecision head) {
  if (layers < 0) layers = c.n_layers;
  GpuFootprint f;
  const uint64_t per_layer = ternary_bytes(c.q_dim() + 2ull * c.kv_dim(), c.dim) + ternary_bytes(c.dim, c.q_dim()) +
                             ternary_bytes(2ull * c.ffn_dim, c.dim) + ternary_bytes(c.dim, c.ffn_dim);
  f.ternary_weights = per_layer * layers;
  const uint64_t norms = uint64_t(layers) * 4 * (2ull * c.dim + c.q_dim() + c.ffn_dim) + 4ull * c.dim;
  const uint64_t f16_table = uint64_t(c.vocab) * ((c.dim + 7) / 8 * 8) * 2;
  const uint64_t head_table =
      head == HeadPrecision::Int8 ? uint64_t(c.vocab) * ((c.dim + 15) / 16 * 16 + 4) : f16_table;
  // Tied: one table serves both (in the head's precision); untied: an FP16 embedding table and the head.
  const uint64_t tables = c.tied_head ? ((with_embedding || with_head) ? head_table : 0)
                                      : (with_embedding ? f16_table : 0) + (with_head ? head_table : 0);
  f.weights = f.ternary_weights + norms + tables;
  f.kv_cache = 2ull * layers * uint64_t(context) * c.kv_dim() * 2 * sequences;
  const uint64_t t = prefill_chunk;
  f.scratch = t * 4 * (2ull * c.dim + c.q_dim() + 2ull * c.kv_dim() + 3ull * c.ffn_dim) + t * 4 * c.vocab +
              t * (c.ffn_dim + 64);
  return f;
}

GpuFootprint estimate_fp16_footprint(const ModelConfig& c, int context, int sequences, int prefill_chunk,
                                     int layers, bool with_embedding, bool with_head, HeadPrecision head) {
  if (layers < 0) layers = c.n_layers;
  GpuFootprint f =
      estimate_gpu_footprint(c, context, sequences, prefill_chunk, layers, with_embedding, with_head, head);
  auto fp16 = [](uint64_t rows, uint64_t cols) { return rows * ((cols + 7) / 8 * 8) * 2; };
  const uint64_t per_layer = fp16(c.q_dim() + 2ull * c.kv_dim(), c.dim) + fp16(c.dim, c.q_dim()) +
                             fp16(2ull * c.ffn_dim, c.dim) + fp16(c.dim, c.ffn_dim);
  f.weights = f.weights - f.ternary_weights + per_layer * layers;
  f.ternary_weights = 0;
  f.scratch += uint64_t(prefill_chunk) * std::max({c.dim, c.q_dim(), c.ffn_dim}) * 4;
  return f;
}

}  // namespace ternvk

#include "runtime/engine/gpu_footprint.h"

namespace ternvk {
namespace {
uint64_t ternary_bytes(uint64_t rows, uint64_t cols) { return rows * ((cols + 63) / 64 * 16) + rows * 4; }
}  // namespace

GpuFootprint estimate_gpu_footprint(const ModelConfig& c, int context, int sequences, int prefill_chunk,
                                    int layers, bool with_embedding, bool with_head) {
  if (layers < 0) layers = c.n_layers;
  GpuFootprint f;
  const uint64_t per_layer = ternary_bytes(c.q_dim() + 2ull * c.kv_dim(), c.dim) + ternary_bytes(c.dim, c.q_dim()) +
                             ternary_bytes(2ull * c.ffn_dim, c.dim) + ternary_bytes(c.dim, c.ffn_dim);
  f.ternary_weights = per_layer * layers;
  const uint64_t norms = uint64_t(layers) * 4 * (2ull * c.dim + c.q_dim() + c.ffn_dim) + 4ull * c.dim;
  const uint64_t table = uint64_t(c.vocab) * ((c.dim + 7) / 8 * 8) * 2;
  f.weights = f.ternary_weights + norms + ((with_embedding || with_head) ? table : 0);
  f.kv_cache = 2ull * layers * uint64_t(context) * c.kv_dim() * 2 * sequences;
  const uint64_t t = prefill_chunk;
  f.scratch = t * 4 * (2ull * c.dim + c.q_dim() + 2ull * c.kv_dim() + 3ull * c.ffn_dim) + t * 4 * c.vocab +
              t * (c.ffn_dim + 64);
  return f;
}

}  // namespace ternvk

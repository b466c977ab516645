// How many bytes a model takes on the GPU in ternvk's layouts, computed from its shape alone, so
// a plan can be checked against a device's heaps before anything is uploaded.
#pragma once
#include <cstdint>

#include "runtime/engine/model_config.h"

namespace ternvk {

// How the output head (and the tied embedding) is held on the GPU: FP16 (the file's values, the
// default) or int8 rows with one scale per row (half the bytes; an explicit choice, never silent).
enum class HeadPrecision { F16, Int8 };

struct GpuFootprint {
  uint64_t ternary_weights = 0;  // 2-bit packed linear layers (+ per-row code sums)
  uint64_t weights = 0;          // everything uploaded once: ternary + embedding/head + norms
  uint64_t kv_cache = 0;         // fp16 K and V for `context` positions of `sequences` sequences
  uint64_t scratch = 0;          // activations for one prefill chunk
  uint64_t total() const { return weights + kv_cache + scratch; }
};

// `layers` < 0 means all of them (a pipeline stage passes its own count).
GpuFootprint estimate_gpu_footprint(const ModelConfig& c, int context, int sequences, int prefill_chunk = 64,
                                    int layers = -1, bool with_embedding = true, bool with_head = true,
                                    HeadPrecision head = HeadPrecision::F16);

// The same model as the FP16 baseline: every linear weight in FP16, plus float normed activations.
GpuFootprint estimate_fp16_footprint(const ModelConfig& c, int context, int sequences, int prefill_chunk = 64,
                                     int layers = -1, bool with_embedding = true, bool with_head = true,
                                     HeadPrecision head = HeadPrecision::F16);

}  // namespace ternvk

// Helpers shared by the engine tests: options for weights-only files, logits rows, the comparison
// with the CPU reference, greedy decoding from full logits.
#pragma once
#include <doctest/doctest.h>

#include <span>
#include <vector>

#include "common/gpu.h"
#include "engine/reference_forward.h"
#include "runtime/engine/engine.h"

namespace ternvk::test {

inline EngineOptions weights_only(int chunk = 64) {
  EngineOptions o;
  o.prefill_chunk = chunk;
  o.load_tokenizer = false;
  o.context = 64;
  // The tiled GEMM: on a device with matrix units every engine would otherwise run their self-check
  // again (its own VkDevice); tests/ops_matmul/test_matrix_unit_gemm.cpp covers them.
  o.gemm_units = ops::GemmUnits::Vector;
  // One form a step: on a GPU the default (auto) would run every engine's first steps twice
  // (tests/engine/test_engine_layer_chain.cpp tests the trial).
  o.chain_layers = LayerChain::Off;
  return o;
}

// [n * vocab] logits as n rows.
// The GPU's rule for splitting the fused layers' matrices (FusedLinearShape::pick on a GPU), pushed to
// its widest lane groups: 32 lanes a row where the sums are exact, wider than this device's subgroups
// (their pieces meet in shared memory), so that the engine runs it here. (Batch invariance under it is
// checked per op, against separate matmuls of the same reduction: test_fused_linear.cpp.) Float rows
// split over as many lanes as this device's separate matmuls (float_row_lanes: its subgroup), as on a
// GPU; the bits still differ from theirs here (lavapipe's separate GEMVs reduce with subgroupAdd).
inline ops::FusedLinearShape widest_gpu_split() {
  ops::FusedLinearShape s;
  s.workgroup = 128;
  s.lanes = 8;
  s.float_lanes = ops::float_row_lanes(device().info());
  s.subgroup_add = false;
  s.fit_to_device = true;
  s.max_lanes = 32;
  s.target_workgroups = 1u << 20;
  return s;
}

inline std::vector<std::vector<float>> rows(const std::vector<float>& flat, size_t vocab) {
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < flat.size(); i += vocab) out.emplace_back(flat.begin() + long(i), flat.begin() + long(i + vocab));
  return out;
}

// Every row close to the reference's (cosine >= 0.999) with the same argmax.
inline void check_against_reference(const std::vector<std::vector<float>>& got,
                                    const std::vector<std::vector<float>>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t t = 0; t < got.size(); ++t) {
    CAPTURE(t);
    CHECK(cosine(got[t], want[t]) >= 0.999);
    CHECK(argmax_index(got[t]) == argmax_index(want[t]));
  }
}

// `n` greedy tokens after `prompt`, picked on the host from the full logits.
inline std::vector<uint32_t> greedy(Engine& engine, std::vector<uint32_t> prompt, int n) {
  engine.reset();
  std::vector<uint32_t> out;
  auto logits = engine.eval(prompt);
  for (int i = 0; i < n; ++i) {
    uint32_t next = uint32_t(argmax_index(logits));
    out.push_back(next);
    const uint32_t one[] = {next};
    logits = engine.eval(one);
  }
  return out;
}

}  // namespace ternvk::test

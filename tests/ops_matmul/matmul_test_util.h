// GPU-side helpers shared by the matmul op tests: the load paths a device can run, and the check of a
// dense (fp32-activation) matmul's output against a double-precision reference.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <functional>
#include <optional>
#include <vector>

#include "common/gpu.h"
#include "ops_matmul/reference.h"
#include "runtime/ops/fused_linear.h"
#include "runtime/ops/ternary_matmul.h"

namespace ternvk::test {

// Quantized activations on the device.
struct GpuActivations {
  Buffer values, meta;
  ops::QuantizedActivations view;
};

inline GpuActivations upload_activations(const QuantRef& x) {
  GpuActivations a;
  a.values = upload(x.values_words(), "test activations");
  a.meta = upload(x.meta_words(), "test activation scales");
  a.view = {a.values.range(), a.meta.range(), x.cols};
  return a;
}

// Storage loads always; texel loads where R32G32B32A32_UINT uniform texel buffers work.
inline std::vector<ops::MatmulLoad> load_paths() {
  std::vector<ops::MatmulLoad> loads = {ops::MatmulLoad::Storage};
  if (device().info().texel_buffer_uint4) loads.push_back(ops::MatmulLoad::Texel);
  else MESSAGE("device has no uint4 uniform texel buffers: the texel path is not tested");
  return loads;
}

// A GPU-like shape: workgroups of up to 64 invocations holding several clusters of `lanes` lanes
// that each own `rows` rows and reduce by shuffle-xor (as MatmulShape::pick does on GPUs), 3 tokens
// per workgroup. Empty when the device's subgroups are narrower than `lanes`.
inline std::optional<ops::MatmulShape> cluster_shape(uint32_t lanes, uint32_t rows) {
  const DeviceInfo& info = device().info();
  if (lanes > info.min_subgroup_size) return std::nullopt;
  ops::MatmulShape s;
  s.workgroup = std::min(64u, info.max_workgroup_invocations);
  s.lanes = lanes;
  s.rows = rows;
  s.tokens = 3;
  s.subgroup_add = false;
  return s;
}

// Checks y [tokens, n] against sum_k weight(n, k) * x[t, k] (plus y0 with Epilogue::Accumulate),
// computed in double: |y - ref| <= 3e-5 * sum_k |w x| + 1e-6 (fp32 accumulation in another order is a
// few ulps of the largest partial sums; a wrong, missing or wrongly scaled element is far larger).
inline void check_dense_matmul(const std::vector<float>& y, const std::vector<float>& y0, const std::vector<float>& x,
                               uint32_t n, uint32_t k, uint32_t tokens, ops::Epilogue epilogue,
                               const std::function<double(uint32_t, uint32_t)>& weight, bool texel) {
  for (uint32_t t = 0; t < tokens; ++t)
    for (uint32_t r = 0; r < n; ++r) {
      double ref = 0.0, mag = 0.0;
      for (uint32_t i = 0; i < k; ++i) {
        const double p = weight(r, i) * x[size_t(t) * k + i];
        ref += p;
        mag += std::fabs(p);
      }
      const size_t at = size_t(t) * n + r;
      if (epilogue == ops::Epilogue::Accumulate) {
        ref += y0[at];
        mag += std::fabs(y0[at]);
      }
      INFO("N=" << n << " K=" << k << " T=" << tokens << " t=" << t << " n=" << r << " texel=" << texel);
      REQUIRE(std::fabs(y[at] - ref) <= 3e-5 * mag + 1e-6);
    }
}

// The GPU rule for splitting matrices (FusedLinearShape::pick on an H200: 128 invocations, ternary
// rows 8 to 32 lanes, float rows 32, two workgroups per each of 132 compute units), forced here: lane
// groups wider than this device's subgroups add their pieces through shared memory.
inline ops::FusedLinearShape h200_like() {
  ops::FusedLinearShape s;
  s.workgroup = 128;
  s.lanes = 8;
  s.float_lanes = 32;
  s.rows = 2;
  s.paired_rows = 4;
  s.max_tokens = 4;
  s.subgroup_add = false;
  s.loads_in_flight = 8;
  s.fit_to_device = true;
  s.max_lanes = 32;
  s.target_workgroups = 264;
  return s;
}

// One-token fused-layer shapes for the ops that finish in a last workgroup (the attention inside qkv,
// the argmax inside the head): this device's pick, a fixed 64-lane shape (rows not dividing the test
// matrices; float rows as wide as this device's subgroups, up to 32, so that their lane groups reduce
// inside a subgroup by shuffles, as on a GPU), and the GPU rule at both ends (the most workgroups:
// lane groups of 32, wider than lavapipe's subgroups; the fewest).
inline std::vector<ops::FusedLinearShape> one_token_shapes() {
  ops::FusedLinearShape fixed = h200_like();
  fixed.workgroup = 64;
  fixed.rows = 3;
  fixed.fit_to_device = false;
  fixed.max_lanes = 0;
  fixed.float_lanes = std::min(32u, device().info().min_subgroup_size);
  ops::FusedLinearShape most = h200_like(), fewest = h200_like();
  most.target_workgroups = 1u << 20;
  fewest.target_workgroups = 1;
  return {ops::FusedLinearShape::pick(device().info()), fixed, most, fewest};
}

}  // namespace ternvk::test

// RMSNorm + int8 quantization against the CPU reference of architecture.md.
//
// Tolerance: q must equal the reference except where the reference's v / s lies within 1e-4 of a
// .5 tie (the GPU's sum of squares is reduced in another order and its inversesqrt / division may
// differ by an ulp, which can move such a value across the tie); there q may be off by one. s must
// match within relative 2e-6. sum_q must equal the sum of the GPU's own q exactly, and the padding
// bytes must be zero. In plain-quantize mode with an exact s (max |x| = 127) ties must round to even.
#include <doctest/doctest.h>

#include <cmath>

#include "common/gpu.h"
#include "ops_matmul/reference.h"
#include "runtime/ops/gated_activation.h"
#include "runtime/ops/rmsnorm_quant.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

struct GpuQuant {
  std::vector<int8_t> q;  // [tokens, padded]
  std::vector<float> s;
  std::vector<int32_t> sum_q;
};

// `gating` != 0: x is gate|up [tokens, 2 * cols] and the op is the fused record_gated
// (1 = squared ReLU, 2 = SiLU).
GpuQuant run(const std::vector<float>& x, const std::vector<float>* norm, float eps, uint32_t tokens, uint32_t cols,
             MatmulLoad load = MatmulLoad::Auto, int gating = 0) {
  Device& dev = test::device();
  Buffer gx = test::upload(x, "rmsnorm_quant input");
  Buffer gn = norm ? test::upload(*norm, "norm weight") : Buffer();
  auto out = QuantizedActivationsBuffers::create(dev, tokens, cols, "rmsnorm_quant output");
  // Poison the output so that unwritten padding shows up.
  std::vector<uint8_t> junk(out.values.size(), 0xab);
  dev.upload(out.values, junk.data(), junk.size());
  RmsNormQuant op(dev, 0, load);
  Recording rec(dev);
  if (gating)
    op.record_gated(rec, gx.range(), gating == 1 ? Gating::SquaredRelu : Gating::Silu, gn.range(), eps, tokens,
                    out.view());
  else if (norm) op.record(rec, gx.range(), gn.range(), eps, tokens, out.view());
  else op.record_quantize(rec, gx.range(), tokens, out.view());
  rec.submit_and_wait();
  GpuQuant g;
  const uint32_t kp = out.view().padded_cols();
  g.q = test::download<int8_t>(out.values, size_t(tokens) * kp);
  const auto meta = test::download<uint32_t>(out.meta, size_t(tokens) * 2);
  for (uint32_t t = 0; t < tokens; ++t) {
    g.s.push_back(std::bit_cast<float>(meta[2 * t]));
    g.sum_q.push_back(static_cast<int32_t>(meta[2 * t + 1]));
  }
  return g;
}

void check(const GpuQuant& g, const test::QuantRef& r) {
  const uint32_t kp = r.padded();
  for (uint32_t t = 0; t < r.tokens; ++t) {
    INFO("token " << t << " of " << r.tokens << ", K = " << r.cols);
    CHECK(std::fabs(g.s[t] - r.s[t]) <= 2e-6f * r.s[t]);
    int32_t sum = 0;
    for (uint32_t k = 0; k < kp; ++k) {
      const int got = g.q[size_t(t) * kp + k];
      sum += got;
      if (k >= r.cols) {
        REQUIRE(got == 0);
        continue;
      }
      const int want = r.q[size_t(t) * r.cols + k];
      if (got != want) {
        const float scaled = r.scaled[size_t(t) * r.cols + k];
        const float frac = std::fabs(scaled - std::trunc(scaled));
        INFO("k = " << k << ": gpu " << got << ", cpu " << want << ", v/s = " << scaled);
        REQUIRE(std::abs(got - want) == 1);
        REQUIRE(std::fabs(frac - 0.5f) <= 1e-4f);
      }
    }
    CHECK(g.sum_q[t] == sum);
  }
}

}  // namespace

TEST_CASE("rmsnorm_quant matches the CPU on awkward shapes") {
  test::ValidationGuard guard;
  std::mt19937 rng(11);
  for (uint32_t k : {1u, 13u, 63u, 64u, 65u, 257u, 2560u + 17u})
    for (uint32_t t : {1u, 5u, 9u}) {
      auto x = test::random_floats(rng, size_t(t) * k, -3.0f, 3.0f);
      x[0] = 40.0f;  // an outlier, as in real activations
      const auto norm = test::random_floats(rng, k, 0.2f, 2.0f);
      const float eps = 1e-5f;
      check(run(x, &norm, eps, t, k), test::quantize_ref(x, t, k, norm.data(), eps));
      check(run(x, nullptr, 0.0f, t, k), test::quantize_ref(x, t, k, nullptr, 0.0f));
    }
}

TEST_CASE("quantize: ties round to even, zero rows use the 1e-5 floor, values clamp") {
  test::ValidationGuard guard;
  // Token 0: max |x| = 127 so s = 1 exactly and x / s = x.
  // Token 1: all zero: s = 1e-5 / 127, every q = 0.
  const uint32_t k = 10;
  std::vector<float> x = {127.0f, 2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 1.5f, -126.5f, -127.0f, 125.5f};
  x.resize(2 * k, 0.0f);
  const auto g = run(x, nullptr, 0.0f, 2, k);
  const int want[k] = {127, 2, -2, 4, 0, 0, 2, -126, -127, 126};
  REQUIRE(g.s[0] == 1.0f);
  for (uint32_t i = 0; i < k; ++i) CHECK(g.q[i] == want[i]);
  CHECK(g.sum_q[0] == 127 + 2 - 2 + 4 + 2 - 126 - 127 + 126);
  CHECK(g.s[1] == 1e-5f / 127.0f);
  CHECK(g.sum_q[1] == 0);
  for (uint32_t i = 0; i < 64; ++i) CHECK(g.q[64 + i] == 0);
}

// The texel variant (CPU devices' default, K % 4 == 0) and the storage variant, each forced, on
// shapes that are and are not multiples of the 16-element step or the 64-element padding.
TEST_CASE("rmsnorm_quant: texel and storage loads both match the CPU") {
  test::ValidationGuard guard;
  std::mt19937 rng(12);
  const bool texel = test::device().info().texel_buffer_uint4;
  for (uint32_t k : {4u, 12u, 20u, 60u, 64u, 68u, 2560u, 2576u, 6912u})
    for (uint32_t t : {1u, 3u, 9u}) {
      auto x = test::random_floats(rng, size_t(t) * k, -3.0f, 3.0f);
      x[0] = -40.0f;
      const auto norm = test::random_floats(rng, k, 0.2f, 2.0f);
      const auto want = test::quantize_ref(x, t, k, norm.data(), 1e-6f);
      const auto want_plain = test::quantize_ref(x, t, k, nullptr, 0.0f);
      for (MatmulLoad load : {MatmulLoad::Storage, MatmulLoad::Texel}) {
        if (load == MatmulLoad::Texel && !texel) continue;
        INFO("K = " << k << ", T = " << t << (load == MatmulLoad::Texel ? ", texel" : ", storage"));
        RmsNormQuant op(test::device(), 0, load);
        CHECK(op.uses_texel_loads() == (load == MatmulLoad::Texel));
        check(run(x, &norm, 1e-6f, t, k, load), want);
        check(run(x, nullptr, 0.0f, t, k, load), want_plain);
      }
    }
}

// The gated activation fused in front of the norm must quantize exactly what the two-dispatch path
// (gated_activation, then rmsnorm_quant) quantizes: q, s and sum_q are compared for equality. The
// squared ReLU is also checked against the CPU (relu(g)^2 then * u, as gated_activation.comp), where
// the float operations are exact; SiLU's exp is the device's.
TEST_CASE("rmsnorm_quant gated: act(gate) * up fused equals gated_activation + rmsnorm_quant") {
  test::ValidationGuard guard;
  std::mt19937 rng(13);
  Device& dev = test::device();
  const bool texel = dev.info().texel_buffer_uint4;
  for (int gating : {1, 2})
    for (uint32_t f : {13u, 64u, 100u, 6912u})
      for (uint32_t t : {1u, 4u}) {
        const auto gu = test::random_floats(rng, size_t(t) * 2 * f, -3.0f, 3.0f);
        const auto norm = test::random_floats(rng, f, 0.2f, 2.0f);
        for (MatmulLoad load : {MatmulLoad::Storage, MatmulLoad::Texel}) {
          if (load == MatmulLoad::Texel && !texel) continue;
          INFO("F = " << f << ", T = " << t << ", gating " << gating << (load == MatmulLoad::Texel ? ", texel" : ""));
          const GpuQuant fused = run(gu, &norm, 1e-5f, t, f, load, gating);
          // Two dispatches: the gated activation into a [t, f] buffer, then the norm + quantization.
          Buffer ggu = test::upload(gu, "gate|up");
          Buffer act = dev.create_buffer(uint64_t(t) * f * 4, MemoryKind::DeviceLocal, "gated activations");
          {
            Recording rec(dev);
            record_gated_activation(rec, {.gate_up = ggu.range(), .out = act.range(), .tokens = t, .features = f,
                                          .gating = gating == 1 ? Gating::SquaredRelu : Gating::Silu});
            rec.submit_and_wait();
          }
          const auto act_host = test::download<float>(act, size_t(t) * f);
          const GpuQuant split = run(act_host, &norm, 1e-5f, t, f, load);
          CHECK(fused.s == split.s);
          CHECK(fused.sum_q == split.sum_q);
          CHECK(fused.q == split.q);
          if (gating == 1) {
            std::vector<float> ref(size_t(t) * f);
            for (uint32_t tt = 0; tt < t; ++tt)
              for (uint32_t i = 0; i < f; ++i) {
                const float r = std::max(gu[size_t(tt) * 2 * f + i], 0.0f);
                const float a = r * r;
                ref[size_t(tt) * f + i] = a * gu[size_t(tt) * 2 * f + f + i];
              }
            CHECK(act_host == ref);
            check(fused, test::quantize_ref(ref, t, f, norm.data(), 1e-5f));
          }
        }
      }
}

// gated_activation and residual_add vs the CPU. Tolerances: squared ReLU and residual add are exact
// (the same fp32 operations); SiLU allows 1e-6 absolute + 2e-6 relative for the device's exp().
#include <doctest/doctest.h>

#include <cmath>

#include "common/gpu.h"
#include "ops_basic/basic_util.h"
#include "runtime/ops/gated_activation.h"
#include "runtime/ops/residual_add.h"

using namespace ternvk;

namespace {

std::vector<float> gated_ref(const std::vector<float>& in, uint32_t tokens, uint32_t f, ops::Gating gating) {
  std::vector<float> out(size_t(tokens) * f);
  for (uint32_t t = 0; t < tokens; ++t)
    for (uint32_t i = 0; i < f; ++i) {
      const float g = in[size_t(t) * 2 * f + i], u = in[size_t(t) * 2 * f + f + i];
      float a;
      if (gating == ops::Gating::SquaredRelu) {
        const float r = std::max(g, 0.0f);
        a = r * r;
      } else {
        a = float(double(g) / (1.0 + std::exp(-double(g))));
      }
      out[size_t(t) * f + i] = a * u;
    }
  return out;
}

}  // namespace

TEST_CASE("gated_activation (squared ReLU and SiLU) matches the CPU over awkward shapes") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  for (auto gating : {ops::Gating::SquaredRelu, ops::Gating::Silu})
    for (uint32_t tokens : {1u, 3u, 17u})
      for (uint32_t f : {1u, 7u, 13u, 255u, 257u, 2563u}) {
        CAPTURE(int(gating));
        CAPTURE(tokens);
        CAPTURE(f);
        auto in = test::random_floats(size_t(tokens) * 2 * f, tokens * 31 + f, -12.0f, 12.0f);
        in[0] = -100.0f;  // silu: exp overflow must give -0, not NaN
        Buffer bin = test::upload(in);
        Buffer bout = dev.create_buffer(size_t(tokens) * f * 4, MemoryKind::DeviceLocal, "act");
        Recording rec(dev);
        ops::record_gated_activation(rec, {.gate_up = bin.range(), .out = bout.range(), .tokens = tokens,
                                           .features = f, .gating = gating});
        rec.submit_and_wait();
        const bool exact = gating == ops::Gating::SquaredRelu;
        CHECK(test::count_mismatches(test::download<float>(bout, size_t(tokens) * f), gated_ref(in, tokens, f, gating),
                                     exact ? 0 : 1e-6, exact ? 0 : 2e-6) == 0);
      }
}

TEST_CASE("residual_add matches the CPU exactly, including counts beyond one grid row") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  // 1 .. 2563*17 elements, and one count that needs a 2-D grid with a workgroup of 1.
  struct Case {
    uint32_t count, workgroup;
  };
  for (Case c : {Case{1, 0}, Case{7, 0}, Case{13, 0}, Case{255, 0}, Case{257, 0}, Case{2563 * 17, 0},
                 Case{2563 * 3, 13}, Case{70001, 1}}) {
    CAPTURE(c.count);
    CAPTURE(c.workgroup);
    auto x = test::random_floats(c.count, c.count, -5, 5), y = test::random_floats(c.count, c.count + 1, -5, 5);
    // x and y live in one buffer (as in an activation arena), y at an aligned offset.
    const uint64_t y_offset = (uint64_t(c.count) * 4 + 255) / 256 * 256;
    Buffer arena = dev.create_buffer(y_offset + uint64_t(c.count) * 4, MemoryKind::DeviceLocal, "arena");
    dev.upload(arena, x.data(), x.size() * 4);
    dev.upload(arena, y.data(), y.size() * 4, y_offset);
    Recording rec(dev);
    ops::record_residual_add(rec, {.x = arena.range(0, c.count * 4ull), .y = arena.range(y_offset, c.count * 4ull),
                                   .count = c.count, .workgroup = c.workgroup});
    rec.submit_and_wait();
    std::vector<float> got(c.count), want(c.count);
    dev.download(arena, got.data(), got.size() * 4, y_offset);
    for (uint32_t i = 0; i < c.count; ++i) want[i] = y[i] + x[i];
    CHECK(test::count_mismatches(got, want, 0, 0) == 0);
  }
}

TEST_CASE("elementwise ops: wrong sizes and overlaps are actionable errors") {
  Device& dev = test::device();
  Buffer a = dev.create_buffer(1024, MemoryKind::DeviceLocal, "a");
  Buffer b = dev.create_buffer(1024, MemoryKind::DeviceLocal, "b");
  Recording rec(dev);
  CHECK_THROWS_WITH_AS(ops::record_gated_activation(rec, {.gate_up = a.range(), .out = b.range(), .tokens = 2,
                                                          .features = 129}),
                       doctest::Contains("needs 2064"), Error);
  CHECK_THROWS_WITH_AS(ops::record_residual_add(rec, {.x = a.range(0, 512), .y = a.range(256, 512), .count = 128}),
                       doctest::Contains("must not overlap"), Error);
  CHECK_THROWS_WITH_AS(ops::record_residual_add(rec, {.x = b.range(), .y = a.range(0, 512), .count = 200}),
                       doctest::Contains("y holds 512 bytes"), Error);
}

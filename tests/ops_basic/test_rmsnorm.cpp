// rmsnorm on the device vs a double-precision CPU reference. Tolerance: 2e-6 absolute + 1e-5 relative
// (fp32 sum of squares in a different order, inversesqrt within a few ulp).
#include <doctest/doctest.h>

#include <cmath>

#include "common/gpu.h"
#include "ops_basic/basic_util.h"
#include "runtime/ops/rmsnorm.h"

using namespace ternvk;

namespace {

std::vector<float> rmsnorm_ref(const std::vector<float>& x, const std::vector<float>& w, uint32_t rows,
                               uint32_t cols, float eps) {
  std::vector<float> y(x.size());
  for (uint32_t t = 0; t < rows; ++t) {
    double ss = 0;
    for (uint32_t c = 0; c < cols; ++c) ss += double(x[t * cols + c]) * x[t * cols + c];
    const double scale = 1.0 / std::sqrt(ss / cols + eps);
    for (uint32_t c = 0; c < cols; ++c) y[t * cols + c] = float(x[t * cols + c] * scale * w[c]);
  }
  return y;
}

void check_rmsnorm(uint32_t rows, uint32_t cols, uint32_t workgroup, bool shared_only) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(workgroup);
  CAPTURE(shared_only);
  Device& dev = test::device();
  auto x = test::random_floats(size_t(rows) * cols, rows * 1000 + cols, -3.0f, 3.0f);
  auto w = test::random_floats(cols, cols, 0.5f, 1.5f);
  const float eps = 1e-6f;
  Buffer bx = test::upload(x), bw = test::upload(w);
  Buffer by = dev.create_buffer(x.size() * 4, MemoryKind::DeviceLocal, "rmsnorm y");
  Recording rec(dev);
  ops::record_rmsnorm(rec, {.x = bx.range(), .weight = bw.range(), .y = by.range(), .rows = rows, .cols = cols,
                            .eps = eps, .workgroup = workgroup, .force_shared_reduction = shared_only});
  rec.submit_and_wait();
  CHECK(test::count_mismatches(test::download<float>(by, x.size()), rmsnorm_ref(x, w, rows, cols, eps), 2e-6, 1e-5) == 0);
}

}  // namespace

TEST_CASE("rmsnorm matches the CPU over awkward shapes") {
  test::ValidationGuard guard;
  for (uint32_t rows : {1u, 3u, 17u})
    for (uint32_t cols : {1u, 7u, 13u, 255u, 257u, 2563u}) check_rmsnorm(rows, cols, 0, false);
}

TEST_CASE("rmsnorm: both reductions and odd workgroup sizes agree with the CPU") {
  test::ValidationGuard guard;
  for (bool shared_only : {false, true})
    for (uint32_t wg : {1u, 8u, 13u, 64u, 256u}) check_rmsnorm(3, 2563, wg, shared_only);
}

TEST_CASE("rmsnorm: wrong sizes are actionable errors") {
  Device& dev = test::device();
  Buffer small = dev.create_buffer(64, MemoryKind::DeviceLocal, "small");
  Buffer big = dev.create_buffer(4096, MemoryKind::DeviceLocal, "big");
  Recording rec(dev);
  CHECK_THROWS_WITH_AS(ops::record_rmsnorm(rec, {.x = big.range(), .weight = small.range(), .y = big.range(),
                                                 .rows = 1, .cols = 32}),
                       doctest::Contains("weight holds 64 bytes"), Error);
  CHECK_THROWS_WITH_AS(ops::record_rmsnorm(rec, {.x = big.range(), .weight = big.range(), .y = small.range(),
                                                 .rows = 2, .cols = 32}),
                       doctest::Contains("y holds 64 bytes"), Error);
}

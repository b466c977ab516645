// The int8-weight GEMV/GEMM (the optional int8 head) against a double-precision CPU reference on
// the same quantized rows, and the row quantization itself.
//
// Tolerance: |y - ref| <= 3e-5 * sum_k |w x| + 1e-6, as for the FP16 kernel: fp32 accumulation in
// another order; a wrong, missing or wrongly scaled element would be far larger.
#include <doctest/doctest.h>

#include <cmath>

#include "common/gpu.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/core/half.h"
#include "runtime/ops/int8_matmul.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

struct Case {
  uint32_t n, k, t;
  uint64_t max_segment_bytes = 0;
  Epilogue epilogue = Epilogue::Store;
  std::optional<MatmulShape> shape;
  MatmulLoad load = MatmulLoad::Storage;
};

std::vector<uint16_t> random_halves(std::mt19937& rng, size_t n) {
  const auto wf = test::random_floats(rng, n, -1.0f, 1.0f);
  std::vector<uint16_t> wh(n);
  for (size_t i = 0; i < n; ++i) wh[i] = float_to_half(wf[i]);
  return wh;
}

size_t run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const Int8Rows m = quantize_rows_int8(random_halves(rng, size_t(c.n) * c.k), c.n, c.k);
  const auto x = test::random_floats(rng, size_t(c.t) * c.k, -2.0f, 2.0f);

  Device& dev = test::device();
  Int8MatrixGpu gw(dev, m, "test int8 matrix", c.max_segment_bytes);
  Buffer gx = test::upload(x, "int8 test input");
  std::vector<float> y0(size_t(c.t) * c.n);
  for (size_t i = 0; i < y0.size(); ++i) y0[i] = c.epilogue == Epilogue::Accumulate ? float(i % 13) - 6.0f : NAN;
  Buffer gy = test::upload(y0, "int8 test output");
  Int8Matmul op(dev, {.shape = c.shape, .load = c.load});
  REQUIRE(op.uses_texel_loads() == (c.load == MatmulLoad::Texel));
  Recording rec(dev);
  op.record(rec, gw, gx.range(), c.t, {gy.range()}, c.epilogue);
  rec.submit_and_wait();
  const auto y = test::download<float>(gy, y0.size());
  test::check_dense_matmul(y, y0, x, c.n, c.k, c.t, c.epilogue,
                           [&](uint32_t r, uint32_t i) { return double(m.q[size_t(r) * c.k + i]) * m.scales[r]; }, c.load == MatmulLoad::Texel);
  return gw.segments().size();
}

}  // namespace

TEST_CASE("int8 row quantization: scale = max|w| / 127, round to nearest, zero rows") {
  std::vector<uint16_t> h;
  for (float v : {0.5f, -1.0f, 0.25f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 2.0f, 1.0f, -0.0078125f, 0.0f})
    h.push_back(float_to_half(v));
  const Int8Rows m = quantize_rows_int8(h, 3, 4);
  CHECK(m.scales[0] == doctest::Approx(1.0 / 127));
  CHECK(m.q[0] == 64);  // 0.5 * 127 = 63.5 -> 64 (ties away from zero do not matter here: nearbyint is even)
  CHECK(m.q[1] == -127);
  CHECK(m.q[2] == 32);
  CHECK(m.scales[1] == 0.0f);
  for (int k = 4; k < 8; ++k) CHECK(m.q[k] == 0);
  CHECK(m.q[8] == 127);
  CHECK(m.q[9] == 64);
  CHECK(m.q[10] == 0);
  // Every value is reproduced within half a step.
  for (int n = 0; n < 3; ++n)
    for (int k = 0; k < 4; ++k)
      CHECK(std::fabs(m.q[n * 4 + k] * m.scales[n] - half_to_float(h[n * 4 + k])) <= m.scales[n] / 2 + 1e-7);
  CHECK_THROWS_AS(quantize_rows_int8(h, 2, 4), Error);
  h[5] = 0x7c00;  // +inf
  CHECK_THROWS_WITH_AS(quantize_rows_int8(h, 3, 4), doctest::Contains("row 1"), Error);
}

TEST_CASE("int8 GEMV and GEMM on awkward shapes") {
  test::ValidationGuard guard;
  // K % 16 != 0 leaves a partial last chunk whose activations past K are masked.
  for (MatmulLoad load : test::load_paths()) {
    CAPTURE(int(load));
    uint32_t seed = 700;
    for (uint32_t k : {4u, 12u, 16u, 60u, 68u, 256u, 2560u, 2564u})
      for (uint32_t n : {1u, 7u, 129u})
        for (uint32_t t : {1u, 2u, 5u, 9u}) run_case({n, k, t, 0, Epilogue::Store, std::nullopt, load}, seed++);
  }
}

TEST_CASE("int8 matmul: forced segments, residual epilogue, GPU-like shapes, bad input") {
  test::ValidationGuard guard;
  for (MatmulLoad load : test::load_paths())
    for (uint32_t t : {1u, 5u}) {
      CAPTURE(int(load));
      const auto any = std::nullopt;
      // 272 padded columns = 272 bytes a row; 1000 bytes hold 3 rows: 43 segments for 129 rows.
      CHECK(run_case({129, 260, t, 1000, Epilogue::Store, any, load}, 40) == 43);
      CHECK(run_case({129, 264, t, 1000, Epilogue::Accumulate, any, load}, 41) == 43);
      run_case({129, 260, t, 0, Epilogue::Accumulate, any, load}, 42);
    }
  // rows not a multiple of the lanes: some lanes own no row (3 over 4), or a second, partial group (6 over 4).
  for (auto [lanes, rows] : {std::pair{1u, 3u}, std::pair{4u, 3u}, std::pair{4u, 6u}}) {
    const auto s = test::cluster_shape(lanes, rows);
    if (!s) continue;
    for (MatmulLoad load : test::load_paths()) {
      run_case({129, 260, 5, 0, Epilogue::Store, s, load}, 50 + lanes + rows);
      run_case({129, 252, 1, 0, Epilogue::Store, s, load}, 60 + lanes + rows);
    }
  }
  Device& dev = test::device();
  Int8Rows tiny{.rows = 1, .cols = 40, .q = std::vector<int8_t>(40), .scales = {1.0f}};
  CHECK_THROWS_WITH_AS(Int8MatrixGpu(dev, tiny, "tiny", 16), doctest::Contains("more than a segment"), Error);
  tiny.scales.clear();
  CHECK_THROWS_WITH_AS(Int8MatrixGpu(dev, tiny, "tiny"), doctest::Contains("inconsistent"), Error);
  const Int8Rows odd = quantize_rows_int8(std::vector<uint16_t>(2 * 6, 0x3c00), 2, 6);
  Int8MatrixGpu g(dev, odd, "odd width");
  Buffer x = dev.create_buffer(64, MemoryKind::DeviceLocal, "x"), y = dev.create_buffer(64, MemoryKind::DeviceLocal, "y");
  Recording rec(dev);
  CHECK_THROWS_WITH_AS(Int8Matmul(dev).record(rec, g, x.range(), 1, {y.range()}), doctest::Contains("divisible by 4"),
                       Error);
}

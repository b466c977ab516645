// The FP16-weight GEMV/GEMM against a double-precision CPU reference on the same fp16 weights.
//
// Tolerance: |y - ref| <= 3e-5 * sum_k |w x| + 1e-6: fp32 accumulation in another order (a few
// ulps of the largest partial sums); a wrong or missing element would be far larger.
#include <doctest/doctest.h>

#include <cmath>

#include "common/device_profiles.h"
#include "common/gpu.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/core/half.h"
#include "runtime/ops/fp16_matmul.h"

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

size_t run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto wh = test::random_halves(rng, size_t(c.n) * c.k, -1.0f, 1.0f);
  const auto x = test::random_floats(rng, size_t(c.t) * c.k, -2.0f, 2.0f);

  Device& dev = test::device();
  Fp16MatrixGpu gw(dev, wh, c.n, c.k, "test fp16 matrix", c.max_segment_bytes);
  Buffer gx = test::upload(x, "fp16 test input");
  std::vector<float> y0(size_t(c.t) * c.n);
  for (size_t i = 0; i < y0.size(); ++i) y0[i] = c.epilogue == Epilogue::Accumulate ? float(i % 13) - 6.0f : NAN;
  Buffer gy = test::upload(y0, "fp16 test output");
  Fp16Matmul op(dev, {.shape = c.shape, .load = c.load});
  REQUIRE(op.uses_texel_loads() == (c.load == MatmulLoad::Texel));
  Recording rec(dev);
  op.record(rec, gw, gx.range(), c.t, {gy.range()}, c.epilogue);
  rec.submit_and_wait();
  const auto y = test::download<float>(gy, y0.size());
  test::check_dense_matmul(y, y0, x, c.n, c.k, c.t, c.epilogue,
                           [&](uint32_t r, uint32_t i) { return double(half_to_float(wh[size_t(r) * c.k + i])); }, c.load == MatmulLoad::Texel);
  return gw.segments().size();
}

}  // namespace

TEST_CASE("fp16 GEMV and GEMM on awkward shapes (vec4 and scalar activation loads)") {
  test::ValidationGuard guard;
  // K % 4 == 0 takes the vec4 variant (with a masked tail when K % 8 != 0), other K the scalar one;
  // with texel loads the weights are texel buffers, and the activations too in the vec4 variant.
  for (MatmulLoad load : test::load_paths()) {
    CAPTURE(int(load));
    uint32_t seed = 300;
    for (uint32_t k : {1u, 12u, 13u, 63u, 65u, 255u, 257u, 2560u, 2564u, 2560u + 17u})
      for (uint32_t n : {1u, 7u, 129u})
        for (uint32_t t : {1u, 2u, 5u, 9u}) run_case({n, k, t, 0, Epilogue::Store, std::nullopt, load}, seed++);
  }
}

TEST_CASE("fp16 matmul: forced segments, residual epilogue, GPU-like shapes") {
  test::ValidationGuard guard;
  for (MatmulLoad load : test::load_paths())
    for (uint32_t t : {1u, 5u}) {
      CAPTURE(int(load));
      const auto any = std::nullopt;
      // 264 padded columns = 528 bytes a row; 2000 bytes hold 3 rows: 43 segments for 129 rows.
      CHECK(run_case({129, 260, t, 2000, Epilogue::Store, any, load}, 40) == 43);
      CHECK(run_case({129, 261, t, 2000, Epilogue::Accumulate, any, load}, 41) == 43);
      run_case({129, 260, t, 0, Epilogue::Accumulate, any, load}, 42);
    }
  // rows 6 over 4 lanes: each lane stores up to two rows, the second group partly.
  for (auto [lanes, rows] : {std::pair{4u, 2u}, std::pair{4u, 6u}}) {
    const auto s = test::cluster_shape(lanes, rows);
    if (!s) continue;
    for (MatmulLoad load : test::load_paths()) {
      run_case({129, 260, 5, 0, Epilogue::Store, s, load}, 50 + lanes);
      run_case({129, 257, 1, 0, Epilogue::Store, s, load}, 60 + lanes);
    }
  }
  Device& dev = test::device();
  std::vector<uint16_t> one(10, 0);
  CHECK_THROWS_WITH_AS(Fp16MatrixGpu(dev, one, 1, 10, "tiny", 8), doctest::Contains("more than a segment"), Error);
  CHECK_THROWS_AS(Fp16MatrixGpu(dev, one, 3, 10, "tiny"), Error);
}

TEST_CASE("float rows take a whole subgroup up to 32 lanes on GPUs, in every kernel alike") {
  // The separate GEMVs (fp16 and int8), the fp16 GEMM's K split and the fused layers all split a float
  // row over float_row_lanes(): one sum order, so a sequence's bits do not depend on its batch.
  DeviceInfo gpu = test::h200_like_info();
  CHECK(float_row_lanes(gpu) == 32);
  CHECK(MatmulShape::pick(gpu, 1, false).lanes == 32);
  CHECK(MatmulShape::pick(gpu, 4, false).lanes == 32);
  CHECK(MatmulShape::pick(gpu, 1, true).lanes == 8);  // ternary rows: integer sums, the tuned 8
  CHECK(Fp16Matmul(test::device(), {}).gemm().shape_for(100, 100).lanes == float_row_lanes(test::device().info()));
  // A wave64 device whose subgroups may be 32 wide: 32 (the butterfly stays inside the smallest subgroup).
  gpu.min_subgroup_size = 32;
  gpu.max_subgroup_size = 64;
  CHECK(float_row_lanes(gpu) == 32);
  // An Intel-like device (8 to 32 lanes, none required by the GEMV): 8.
  gpu.min_subgroup_size = 8;
  gpu.max_subgroup_size = 32;
  CHECK(float_row_lanes(gpu) == 8);
  CHECK(MatmulShape::pick(gpu, 1, false).lanes == 8);
  // A mobile GPU of 4-lane subgroups: 4.
  gpu.min_subgroup_size = 4;
  gpu.max_subgroup_size = 16;
  CHECK(float_row_lanes(gpu) == 4);
  // CPU devices: the subgroup, the whole workgroup of their shape.
  gpu.type = VK_PHYSICAL_DEVICE_TYPE_CPU;
  gpu.min_subgroup_size = gpu.max_subgroup_size = 16;
  CHECK(float_row_lanes(gpu) == 16);
  CHECK(MatmulShape::pick(gpu, 1, false).lanes == 16);
}

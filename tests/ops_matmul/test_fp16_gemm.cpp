// The tiled FP16 GEMM (forced with MatmulKernel::Gemm) against the GEMV with the same lanes reduced by
// shuffles (the GPU shape), bit for bit, and against a double-precision CPU reference on the same
// fp16 weights; shapes that are not tile multiples, K not a multiple of 4, 8 or the K block, forced
// segments, strided outputs, the accumulate epilogue, and 2B4T shapes at 64 tokens.
//
// Tolerance against the CPU, from the math: the fp16 weights and fp32 activations multiply exactly
// in double, so the error is the fp32 rounding of the sums. Each output is a chain of fma()s per lane
// (8 per chunk, ceil(chunks / lanes) chunks) and log2(lanes) adds across lanes (plus one add for the
// accumulate epilogue); each rounds once, by at most 2^-24 of a partial sum, and every partial sum is
// at most sum_k |w x| (+ |y0|). So |y - ref| <= steps * 2^-24 * (sum_k |w x| + |y0|), with steps =
// 8 ceil(chunks / lanes) + log2(lanes) + 1 (first order; the second-order term is below 2^-40 of it).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "common/gpu.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/core/half.h"
#include "runtime/ops/fp16_matmul.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

struct GemmCase {
  uint32_t n, k, t;
  uint32_t lanes = 8;              // the GEMV's lanes, and the GEMM's K split
  std::optional<GemmShape> shape;  // none: GemmShape::pick_fp16 with `lanes`
  uint64_t max_segment_bytes = 0;
  Epilogue epilogue = Epilogue::Store;
  uint32_t y_stride = 0, y_offset = 0;
  uint32_t checked_rows = 0;  // rows checked against the CPU (spread over N); 0: all
};

size_t run_gemm_case(const GemmCase& c, uint32_t seed) {
  CAPTURE(c.n);
  CAPTURE(c.k);
  CAPTURE(c.t);
  CAPTURE(c.lanes);
  CAPTURE(int(c.epilogue));
  std::mt19937 rng(seed);
  const auto wh = test::random_halves(rng, size_t(c.n) * c.k, -1.0f, 1.0f);
  const auto x = test::random_floats(rng, size_t(c.t) * c.k, -2.0f, 2.0f);
  Device& dev = test::device();
  Fp16MatrixGpu gw(dev, wh, c.n, c.k, "fp16 gemm test matrix", c.max_segment_bytes);
  Buffer gx = test::upload(x, "fp16 gemm test input");

  const uint32_t stride = c.y_stride ? c.y_stride : c.n;
  std::vector<float> y0(size_t(c.t) * stride);
  for (size_t i = 0; i < y0.size(); ++i) y0[i] = c.epilogue == Epilogue::Accumulate ? float(i % 13) - 6.0f : NAN;
  // The GEMV with `lanes` lanes per row reduced by shuffle-xor: the shape MatmulShape::pick gives GPUs.
  const auto gemv_shape = test::cluster_shape(c.lanes, 2);
  if (!gemv_shape) {  // a GEMV reducing `lanes` by shuffles needs subgroups that wide
    MESSAGE("device '" << dev.info().name << "' may run subgroups under " << c.lanes << " lanes: case not run");
    return 0;
  }
  auto run = [&](MatmulKernel kernel) {
    Buffer gy = test::upload(y0, "fp16 gemm test output");
    Fp16Matmul op(dev, {.shape = gemv_shape, .load = MatmulLoad::Storage, .kernel = kernel, .gemm_shape = c.shape});
    REQUIRE(op.uses_gemm(c.t) == (kernel == MatmulKernel::Gemm));
    Recording rec(dev);
    op.record(rec, gw, gx.range(), c.t, {gy.range(), c.y_stride, c.y_offset}, c.epilogue);
    rec.submit_and_wait();
    return test::download<float>(gy, y0.size());
  };
  const auto gemm = run(MatmulKernel::Gemm);
  const auto gemv = run(MatmulKernel::Gemv);
  REQUIRE(std::memcmp(gemm.data(), gemv.data(), gemm.size() * 4) == 0);

  const uint32_t chunks = (c.k + 7) / 8;
  const double steps = 8.0 * ((chunks + c.lanes - 1) / c.lanes) + std::log2(double(c.lanes)) + 1.0;
  const uint32_t step = c.checked_rows ? std::max(1u, c.n / c.checked_rows) : 1;
  for (uint32_t t = 0; t < c.t; ++t)
    for (uint32_t col = 0; col < stride; ++col) {
      const size_t at = size_t(t) * stride + col;
      if (col < c.y_offset || col >= c.y_offset + c.n) {  // columns of other matrices are left alone
        REQUIRE(std::memcmp(&gemm[at], &y0[at], 4) == 0);
        continue;
      }
      const uint32_t n = col - c.y_offset;
      if (n % step != 0 && n != c.n - 1) continue;
      double ref = 0.0, mag = 0.0;
      for (uint32_t i = 0; i < c.k; ++i) {
        const double p = double(half_to_float(wh[size_t(n) * c.k + i])) * x[size_t(t) * c.k + i];
        ref += p;
        mag += std::fabs(p);
      }
      if (c.epilogue == Epilogue::Accumulate) {
        ref += y0[at];
        mag += std::fabs(y0[at]);
      }
      INFO("t=" << t << " n=" << n);
      REQUIRE(std::fabs(gemm[at] - ref) <= steps * 0x1p-24 * mag);
    }
  return gw.segments().size();
}

// (GEMV lanes, GEMM shape) pairs: with 8 lanes this device's pick and the GPU pick fitted to it; with
// 16 and 32 (where this device's subgroups are that wide: lavapipe_widths.sh runs 16, a GPU 32) the
// GPU pick for float rows that wide (a GPU's are float_row_lanes(), 32 on NVIDIA); with 4 lanes an odd shape (3 x 5 rows by 2 x 3
// tokens, K blocks of 3 rounds). Each shape costs pipeline compilations (seconds on lavapipe), so there
// are few.
std::vector<std::pair<uint32_t, GemmShape>> test_shapes() {
  const DeviceInfo& info = test::device().info();
  DeviceInfo gpu = info;
  gpu.max_subgroup_size = gpu.subgroup_size = 32;
  gpu.type = VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU;
  std::vector<std::pair<uint32_t, GemmShape>> shapes;
  if (info.min_subgroup_size >= 8) {
    shapes.push_back({8, GemmShape::pick_fp16(info, 8, 127, 13)});
    shapes.push_back({8, GemmShape::pick_fp16(gpu, 8, 100000, 512)});
  }
  for (const uint32_t wide : {16u, 32u})
    if (info.min_subgroup_size >= wide) shapes.push_back({wide, GemmShape::pick_fp16(gpu, wide, 100000, 512)});
  if (info.min_subgroup_size >= 4)
    shapes.push_back({4, {.row_groups = 3, .token_groups = 2, .rows = 5, .tokens = 3, .k_block = 3, .lanes = 4}});
  REQUIRE_FALSE(shapes.empty());
  return shapes;
}

}  // namespace

TEST_CASE("fp16 GEMM equals the shuffle-reduced GEMV bit for bit, and the CPU within fp32 rounding") {
  test::ValidationGuard guard;
  uint32_t seed = 1700;
  for (const auto& [lanes, shape] : test_shapes()) {
    CAPTURE(shape.tile_rows());
    CAPTURE(shape.tile_tokens());
    CAPTURE(shape.k_block);
    // K = 200: vec4 loads, a partial K block; 13: scalar loads, a partial chunk; 2564: vec4 loads and
    // half a chunk of padding; 1: one element.
    const uint32_t cases[][3] = {{127, 200, 13}, {7, 13, 5}, {65, 2564, 37}, {1, 1, 1}};
    for (auto [n, k, t] : cases) run_gemm_case({.n = n, .k = k, .t = t, .lanes = lanes, .shape = shape}, seed++);
  }
}

TEST_CASE("fp16 GEMM: forced segments, strided outputs and the accumulate epilogue") {
  test::ValidationGuard guard;
  uint32_t seed = 1800;
  for (const auto& [lanes, shape] : test_shapes()) {
    CAPTURE(shape.tile_rows());
    // 264 padded columns = 528 bytes a row; 2000 bytes hold 3 rows: 43 segments for 129 rows.
    CHECK(run_gemm_case({.n = 129, .k = 260, .t = 13, .lanes = lanes, .shape = shape, .max_segment_bytes = 2000},
                        seed++) == 43);
    CHECK(run_gemm_case({.n = 129, .k = 261, .t = 13, .lanes = lanes, .shape = shape, .max_segment_bytes = 2000,
                         .epilogue = Epilogue::Accumulate},
                        seed++) == 43);
    run_gemm_case({.n = 127, .k = 200, .t = 13, .lanes = lanes, .shape = shape, .y_stride = 150, .y_offset = 7}, seed++);
    run_gemm_case({.n = 127, .k = 203, .t = 13, .lanes = lanes, .shape = shape, .epilogue = Epilogue::Accumulate,
                   .y_stride = 150, .y_offset = 7},
                  seed++);
  }
}

TEST_CASE("fp16 GEMM on 2B4T shapes at 64 tokens") {
  test::ValidationGuard guard;
  uint32_t seed = 1900;
  const uint32_t shapes[][2] = {{2560, 2560}, {2560, 6912}};
  for (auto [n, k] : shapes) run_gemm_case({.n = n, .k = k, .t = 64, .checked_rows = 32}, seed++);
}

TEST_CASE("fp16 GEMM shapes from device properties") {
  const DeviceInfo& info = test::device().info();
  DeviceInfo h200 = info;  // an H200-like device: subgroup 32, 48 KiB shared, 1024 invocations
  h200.min_subgroup_size = h200.max_subgroup_size = h200.subgroup_size = 32;
  h200.max_shared_memory = 48 << 10;
  h200.max_workgroup_invocations = 1024;
  h200.subgroup_shuffle = true;
  h200.type = VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU;
  const GemmShape s = GemmShape::pick_fp16(h200, 8, 100000, 512);
  CHECK(s.workgroup() == 256);
  CHECK(s.lanes == 8);
  CHECK(s.tile_rows() == 64);
  CHECK(s.tile_tokens() == 32);
  CHECK(s.fp16_shared_bytes() <= h200.max_shared_memory);
  // 2560 rows x 64 tokens would be 80 such tiles: 4 x 4 sums per group, 32 x 16 tiles.
  const GemmShape few = GemmShape::pick_fp16(h200, 8, 2560, 64);
  CHECK(few.tile_rows() == 32);
  CHECK(few.tile_tokens() == 16);
  // Float rows 32 lanes wide (the H200's float_row_lanes): 8 groups, rows first (a 32 x 16 tile
  // moves 2/16 + 4/32 bytes a multiply through L2, 16 x 32 would move 2/32 + 4/16), and the K block
  // of one round that 48 KiB hold (a round of 32 chunks is 1 KiB of fp32 activations a token).
  const GemmShape wide = GemmShape::pick_fp16(h200, float_row_lanes(h200), 100000, 512);
  CHECK(wide.lanes == 32);
  CHECK(wide.workgroup() == 256);
  CHECK(wide.tile_rows() == 32);
  CHECK(wide.tile_tokens() == 16);
  CHECK(wide.k_block == 1);
  CHECK(wide.fp16_shared_bytes() <= h200.max_shared_memory);
  // 16 lanes: 16 groups, 32 x 32 tiles (as before float rows took the subgroup).
  CHECK(GemmShape::pick_fp16(h200, 16, 100000, 512).tile_rows() == 32);
  CHECK(GemmShape::pick_fp16(h200, 16, 100000, 512).tile_tokens() == 32);
  // Devices of 32 KiB with 32-lane float rows (64- or 128-wide subgroups, as Adreno's): a K block of one
  // round does not fit 16 tokens, so the tokens a group shrink before the rows; every size of prefill
  // step gets a valid shape, and every float_row_lanes() GEMM shape of these devices fits.
  DeviceInfo small32 = h200;
  small32.max_shared_memory = 32 << 10;
  small32.min_subgroup_size = 64;
  small32.max_subgroup_size = small32.subgroup_size = 128;
  small32.subgroup_size_control = false;
  REQUIRE(float_row_lanes(small32) == 32);
  for (const uint32_t rows : {2560u, 32000u, 100000u})
    for (const uint32_t tokens : {16u, 97u, 512u}) {
      CAPTURE(rows);
      CAPTURE(tokens);
      const GemmShape g = GemmShape::pick_fp16(small32, float_row_lanes(small32), rows, tokens);
      CHECK(g.fp16_shared_bytes() <= small32.max_shared_memory);
      CHECK(g.tile_rows() >= 16);
      CHECK_NOTHROW(g.validate_fp16(small32));
    }
  // ... keeping the tile's 32 rows (the tokens a group halve instead).
  CHECK(GemmShape::pick_fp16(small32, 32, 100000, 512).tile_rows() == 32);
  CHECK(GemmShape::pick_fp16(small32, 32, 100000, 512).tile_tokens() == 8);
  DeviceInfo small = h200;
  small.max_shared_memory = 16 << 10;
  CHECK(GemmShape::pick_fp16(small, 8, 100000, 512).fp16_shared_bytes() <= small.max_shared_memory);
  CHECK_THROWS_WITH_AS(s.validate_fp16(small), doctest::Contains("shared memory"), Error);
  // Lanes of a group must share a subgroup.
  DeviceInfo narrow = h200;
  narrow.min_subgroup_size = 4;
  CHECK_THROWS_WITH_AS(s.validate_fp16(narrow), doctest::Contains("subgroups"), Error);
  // The GEMM follows the GEMV's lanes: an explicit GEMV shape's, else the device's.
  if (const auto gemv = test::cluster_shape(4, 2))
    CHECK(Fp16Matmul(test::device(), {.shape = gemv, .kernel = MatmulKernel::Gemm}).gemm().shape_for(100, 100).lanes == 4);
}

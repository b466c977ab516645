// The tiled ternary GEMM (forced with MatmulKernel::Gemm) against the GEMV on the same inputs, bit for
// bit (integer sums, the same float epilogue), and against the integer CPU reference; shapes that are
// not tile multiples, K not a multiple of the K block, forced segments, strided outputs, the
// accumulate epilogue, and the 2B4T shapes at 64 tokens. Also how the GEMM is chosen and shaped from
// device properties.
//
// Tolerance against the CPU: exact with unit scales (the output is float(integer sum), |sum| < 2^24);
// with real scales 2 ulps for the order of the two multiplies (an integer sum off by one is off by
// 1/|sum|, far more). Against the GEMV: none, every float bit must match.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "common/gpu.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/ops/ternary_matmul.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

struct GemmCase {
  uint32_t n, k, t;
  TernaryDot dot = TernaryDot::Swar;
  std::optional<GemmShape> shape;  // none: GemmShape::pick_ternary for this device
  bool unit_scale = false;
  uint64_t max_segment_bytes = 0;
  Epilogue epilogue = Epilogue::Store;
  uint32_t y_stride = 0, y_offset = 0;
  uint32_t checked_rows = 0;  // rows checked against the CPU (spread over N); 0: all
};

std::vector<TernaryDot> dot_paths() {
  std::vector<TernaryDot> paths = {TernaryDot::Swar};
  if (test::device().info().integer_dot_product) paths.push_back(TernaryDot::PackedInt8);
  else MESSAGE("device has no shaderIntegerDotProduct: the OpSDot GEMM is not tested");
  return paths;
}

// This device's description with GPU-sized subgroups: GemmShape::pick_ternary then picks the GPU
// shape (256 invocations), fitted to this device's shared memory and workgroup limits.
DeviceInfo gpu_like(DeviceInfo info) {
  info.min_subgroup_size = std::min(info.min_subgroup_size, 8u);
  info.max_subgroup_size = info.subgroup_size = 32;
  info.type = VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU;
  return info;
}

// Runs the GEMV and the GEMM on the same inputs; checks both against each other (bits) and the GEMM
// against the CPU. Returns the segments used.
size_t run_gemm_case(const GemmCase& c, uint32_t seed) {
  CAPTURE(c.n);
  CAPTURE(c.k);
  CAPTURE(c.t);
  CAPTURE(int(c.dot));
  CAPTURE(int(c.epilogue));
  std::mt19937 rng(seed);
  const auto w = test::random_ternary(rng, size_t(c.n) * c.k);
  const float scale = c.unit_scale ? 1.0f : 0.37f;
  const auto x = test::random_quantized(rng, c.t, c.k, c.unit_scale);
  Device& dev = test::device();
  TernaryMatrixGpu gw(dev, pack_ternary(w, c.n, c.k, scale), "gemm test matrix", c.max_segment_bytes);
  auto gx = test::upload_activations(x);

  const uint32_t stride = c.y_stride ? c.y_stride : c.n;
  std::vector<float> y0(size_t(c.t) * stride);
  for (size_t i = 0; i < y0.size(); ++i) y0[i] = c.epilogue == Epilogue::Accumulate ? float(i % 17) - 8.0f : NAN;
  auto run = [&](MatmulKernel kernel) {
    Buffer gy = test::upload(y0, "gemm test output");
    TernaryMatmul op(dev, {.dot = c.dot, .kernel = kernel, .gemm_shape = c.shape});
    REQUIRE(op.uses_gemm(c.t) == (kernel == MatmulKernel::Gemm));
    Recording rec(dev);
    op.record(rec, gw, gx.view, c.t, {gy.range(), c.y_stride, c.y_offset}, c.epilogue);
    rec.submit_and_wait();
    return test::download<float>(gy, y0.size());
  };
  const auto gemm = run(MatmulKernel::Gemm);
  const auto gemv = run(MatmulKernel::Gemv);
  REQUIRE(std::memcmp(gemm.data(), gemv.data(), gemm.size() * 4) == 0);

  const auto acc = test::ternary_dot_ref(w, c.n, c.k, x);
  const uint32_t step = c.checked_rows ? std::max(1u, c.n / c.checked_rows) : 1;
  for (uint32_t t = 0; t < c.t; ++t)
    for (uint32_t col = 0; col < stride; ++col) {
      const size_t at = size_t(t) * stride + col;
      const bool ours = col >= c.y_offset && col < c.y_offset + c.n;
      if (!ours) {  // columns of other matrices are left alone
        REQUIRE(std::memcmp(&gemm[at], &y0[at], 4) == 0);
        continue;
      }
      const uint32_t n = col - c.y_offset;
      if (n % step != 0 && n != c.n - 1) continue;
      const int64_t sum = acc[size_t(t) * c.n + n];
      float expect = float(sum) * scale * x.s[t];
      if (c.epilogue == Epilogue::Accumulate) expect += y0[at];
      INFO("t=" << t << " n=" << n << " sum=" << sum);
      if (c.unit_scale) REQUIRE(gemm[at] == expect);
      else REQUIRE(std::fabs(gemm[at] - expect) <= 2.4e-7f * std::fabs(expect) +
                                                   (c.epilogue == Epilogue::Accumulate ? 1e-6f : 0.0f));
    }
  return gw.segments().size();
}

// Runs `body` on each inner-product path with each shape the tests use: this device's pick, the GPU
// picks fitted to it (large tiles; small tiles whose K blocks are split over slices of the
// workgroup), and an odd one (tiles of 3 x 5 rows by 2 x 3 tokens, K blocks of 3 x 3 chunks split
// over 3 slices: nothing is a power of two).
void for_each_path_and_shape(const std::function<void(TernaryDot, const GemmShape&)>& body) {
  const DeviceInfo& info = test::device().info();
  for (TernaryDot dot : dot_paths()) {
    const bool int8 = dot == TernaryDot::PackedInt8;
    const GemmShape large = GemmShape::pick_ternary(gpu_like(info), int8, 100000, 512);
    REQUIRE(large.workgroup() == 256);
    REQUIRE(large.k_split == 1);
    const GemmShape split = GemmShape::pick_ternary(gpu_like(info), int8, 2560, 64);
    REQUIRE(split.k_split > 1);
    const GemmShape odd{.row_groups = 3, .token_groups = 2, .rows = 5, .tokens = 3, .k_block = 3, .k_split = 3};
    for (const GemmShape& shape : {GemmShape::pick_ternary(info, int8, 127, 13), large, split, odd}) {
      CAPTURE(shape.tile_rows());
      CAPTURE(shape.tile_tokens());
      CAPTURE(shape.k_block);
      CAPTURE(shape.k_split);
      body(dot, shape);
    }
  }
}

}  // namespace

TEST_CASE("ternary GEMM equals the GEMV bit for bit on shapes that are not tile multiples") {
  test::ValidationGuard guard;
  uint32_t seed = 700;
  for_each_path_and_shape([&](TernaryDot dot, const GemmShape& shape) {
    // 13 tokens x 127 rows x K = 200 (a partial K block and a padded chunk); one of everything;
    // 70 tokens over several token tiles; K = 2577 (41 chunks: a partial last block).
    const uint32_t cases[][3] = {{127, 200, 13}, {1, 1, 1}, {65, 64, 70}, {129, 2577, 9}};
    for (auto [n, k, t] : cases) {
      run_gemm_case({.n = n, .k = k, .t = t, .dot = dot, .shape = shape, .unit_scale = true}, seed++);
      run_gemm_case({.n = n, .k = k, .t = t, .dot = dot, .shape = shape}, seed++);
    }
  });
}

TEST_CASE("ternary GEMM: forced segments, strided outputs and the accumulate epilogue") {
  test::ValidationGuard guard;
  uint32_t seed = 800;
  for_each_path_and_shape([&](TernaryDot dot, const GemmShape& shape) {
    // 320 padded columns = 80 bytes a row: 13 segments of 10 rows (the last of 9), each its own
    // dispatch with its own row base; the GEMM's tiles straddle no segment.
    CHECK(run_gemm_case({.n = 129, .k = 300, .t = 13, .dot = dot, .shape = shape, .max_segment_bytes = 800},
                        seed++) == 13);
    CHECK(run_gemm_case({.n = 129, .k = 300, .t = 13, .dot = dot, .shape = shape, .max_segment_bytes = 800,
                         .epilogue = Epilogue::Accumulate},
                        seed++) == 13);
    // Columns 7 .. 7+127 of rows of 150 floats (a fused Q|K|V-style output), stored and added.
    run_gemm_case({.n = 127, .k = 200, .t = 13, .dot = dot, .shape = shape, .y_stride = 150, .y_offset = 7}, seed++);
    run_gemm_case({.n = 127, .k = 200, .t = 13, .dot = dot, .shape = shape, .epilogue = Epilogue::Accumulate,
                   .y_stride = 150, .y_offset = 7},
                  seed++);
    // One row per segment.
    CHECK(run_gemm_case({.n = 7, .k = 1000, .t = 5, .dot = dot, .shape = shape, .max_segment_bytes = 256}, seed++) ==
          7);
  });
}

// The 2B4T projections (qkv fused, o, gate|up fused, down) at 64 tokens, on this device's GEMM shape.
TEST_CASE("ternary GEMM on the 2B4T shapes at 64 tokens") {
  test::ValidationGuard guard;
  uint32_t seed = 900;
  const auto dots = dot_paths();
  const uint32_t shapes[][2] = {{3840, 2560}, {2560, 2560}, {13824, 2560}, {2560, 6912}};
  for (auto [n, k] : shapes)
    for (TernaryDot dot : dots)
      run_gemm_case({.n = n, .k = k, .t = 64, .dot = dot, .checked_rows = 64}, seed++);
}

TEST_CASE("the matmuls choose and shape the GEMM from device properties") {
  const DeviceInfo& info = test::device().info();
  const DeviceInfo gpu = gpu_like(info);
  // Auto: the GEMM on GPUs from kGemmMinTokens tokens; CPU devices keep the GEMV (faster there).
  CHECK_FALSE(use_gemm(MatmulKernel::Auto, gpu, kGemmMinTokens - 1));
  CHECK(use_gemm(MatmulKernel::Auto, gpu, kGemmMinTokens));
  CHECK(use_gemm(MatmulKernel::Gemm, info, 1));
  CHECK_FALSE(use_gemm(MatmulKernel::Gemv, gpu, 512));
  if (info.is_cpu()) CHECK_FALSE(TernaryMatmul(test::device()).uses_gemm(512));

  // An H200-like device: 48 KiB of shared memory, 1024 invocations.
  DeviceInfo h200 = gpu;
  h200.max_shared_memory = 48 << 10;
  h200.max_workgroup_invocations = 1024;
  for (bool dot : {true, false}) {
    CAPTURE(dot);
    const GemmShape big = GemmShape::pick_ternary(h200, dot, 13824, 512);
    CHECK(big.workgroup() == 256);
    CHECK(big.tile_rows() == 128);
    CHECK(big.tile_tokens() == 64);
    CHECK(big.ternary_shared_bytes(dot) <= h200.max_shared_memory);
    // 2560 rows x 512 tokens is 160 such tiles, too few for a large GPU (and 64 tokens 20): 32 x 32
    // tiles whose K blocks are split over 8 slices of 32 invocations (4 where the SWAR tiles would
    // overflow 48 KiB).
    for (uint32_t t : {512u, 64u}) {
      const GemmShape split = GemmShape::pick_ternary(h200, dot, 2560, t);
      CHECK(split.tile_rows() == 32);
      CHECK(split.tile_tokens() == 32);
      CHECK(split.k_split == (dot ? 8u : 4u));
      CHECK(split.ternary_shared_bytes(dot) <= h200.max_shared_memory);
    }
    // Few tokens: a tile of at most twice as many tokens.
    CHECK(GemmShape::pick_ternary(h200, dot, 13824, 20).tile_tokens() < 40);
    // 16 KiB of shared memory: the K block, then the rows per invocation shrink to fit.
    DeviceInfo small = h200;
    small.max_shared_memory = 16 << 10;
    const GemmShape fitted = GemmShape::pick_ternary(small, dot, 13824, 512);
    CHECK(fitted.ternary_shared_bytes(dot) <= small.max_shared_memory);
    CHECK(fitted.k_block == 1);
    // A shape over the device's limits is refused, naming them.
    CHECK_THROWS_WITH_AS(big.validate_ternary(small, dot), doctest::Contains("shared memory"), Error);
    DeviceInfo narrow = h200;
    narrow.max_workgroup_invocations = 128;
    CHECK_THROWS_WITH_AS(big.validate_ternary(narrow, dot), doctest::Contains("invocations"), Error);
    CHECK(GemmShape::pick_ternary(narrow, dot, 13824, 512).workgroup() <= 128);
  }
  // A CPU device keeps the CPU tiles whatever its subgroup width (lavapipe runs 8 or 16 lanes, 4 with
  // LP_NATIVE_VECTOR_WIDTH=128): the same question the GEMVs ask (uses_one_subgroup_workgroups).
  DeviceInfo cpu = h200;
  cpu.type = VK_PHYSICAL_DEVICE_TYPE_CPU;
  cpu.min_subgroup_size = cpu.max_subgroup_size = cpu.subgroup_size = 8;
  for (uint32_t lanes : {4u, 8u, 16u}) {
    CAPTURE(lanes);
    DeviceInfo wide = cpu;
    wide.min_subgroup_size = wide.max_subgroup_size = wide.subgroup_size = lanes;
    for (bool dot : {true, false}) {
      const GemmShape a = GemmShape::pick_ternary(cpu, dot, 13824, 512);
      const GemmShape b = GemmShape::pick_ternary(wide, dot, 13824, 512);
      CHECK(b.tile_rows() == a.tile_rows());
      CHECK(b.tile_tokens() == a.tile_tokens());
      CHECK(b.k_split == a.k_split);
    }
    const uint32_t fp16_lanes = std::min(8u, lanes);
    CHECK(GemmShape::pick_fp16(wide, fp16_lanes, 13824, 512).tile_rows() ==
          GemmShape::pick_fp16(cpu, fp16_lanes, 13824, 512).tile_rows());
  }
  CHECK(GemmShape::pick_ternary(cpu, true, 13824, 512).tile_rows() != GemmShape::pick_ternary(h200, true, 13824, 512).tile_rows());
  GemmShape too_big;
  too_big.row_groups = 64;
  too_big.token_groups = 64;
  CHECK_THROWS_AS(TernaryMatmul(test::device(), {.kernel = MatmulKernel::Gemm, .gemm_shape = too_big}), Error);
}

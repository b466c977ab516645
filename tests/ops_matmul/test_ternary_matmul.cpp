// Ternary packing and the ternary GEMV/GEMM against a naive CPU reference, on both inner-product
// paths (SWAR and OpSDot) and both load paths (storage buffers, uniform texel buffers), awkward
// shapes, forced segments and the residual epilogue.
//
// Tolerances: with s = 1 and scale = 1 the output is float(integer sum) and must match exactly
// (|sum| < 2^24). With real scales the reference computes (float(sum) * scale) * s in the shader's
// order; we allow 2 ulps (relative 2.4e-7) for multiply ordering / contraction only: an integer
// sum off by one would differ by 1/|sum| relative, far more for every sum below 4 million.
#include <doctest/doctest.h>

#include <cmath>

#include "common/gpu.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/ops/ternary_matmul.h"
#include "runtime/ops/ternary_matrix.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

struct Case {
  uint32_t n, k, t;
  TernaryDot dot;
  bool unit_scale = true;
  uint64_t max_segment_bytes = 0;
  Epilogue epilogue = Epilogue::Store;
  std::optional<MatmulShape> shape;
  MatmulLoad load = MatmulLoad::Storage;
};

// Runs one case and checks every output. Returns the number of segments used.
size_t run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto w = test::random_ternary(rng, size_t(c.n) * c.k);
  const float scale = c.unit_scale ? 1.0f : 0.37f;
  const auto x = test::random_quantized(rng, c.t, c.k, c.unit_scale);
  const auto acc = test::ternary_dot_ref(w, c.n, c.k, x);

  Device& dev = test::device();
  TernaryMatrixGpu gw(dev, pack_ternary(w, c.n, c.k, scale), "test matrix", c.max_segment_bytes);
  auto gx = test::upload_activations(x);
  std::vector<float> y0(size_t(c.t) * c.n);
  for (size_t i = 0; i < y0.size(); ++i) y0[i] = c.epilogue == Epilogue::Accumulate ? float(i % 17) - 8.0f : NAN;
  Buffer gy = test::upload(y0, "test output");
  TernaryMatmul op(dev, {.dot = c.dot, .shape = c.shape, .load = c.load});
  REQUIRE(op.uses_texel_loads() == (c.load == MatmulLoad::Texel));
  const uint64_t texel_limit = uint64_t(dev.info().max_texel_buffer_elements) * 16;
  for (const MatrixSegment& seg : gw.segments()) {
    REQUIRE(seg.weights.size() % 16 == 0);
    if (dev.info().texel_buffer_uint4) REQUIRE(seg.weights.size() <= texel_limit);
  }
  REQUIRE(gw.row_info().size() % 16 == 0);
  Recording rec(dev);
  op.record(rec, gw, gx.view, c.t, {gy.range()}, c.epilogue);
  rec.submit_and_wait();
  const auto y = test::download<float>(gy, y0.size());
  for (uint32_t t = 0; t < c.t; ++t)
    for (uint32_t n = 0; n < c.n; ++n) {
      const size_t i = size_t(t) * c.n + n;
      float expect = float(acc[i]) * scale * x.s[t];
      if (c.epilogue == Epilogue::Accumulate) expect += y0[i];
      INFO("N=" << c.n << " K=" << c.k << " T=" << c.t << " t=" << t << " n=" << n << " sum=" << acc[i]
                << " texel=" << (c.load == MatmulLoad::Texel));
      if (c.unit_scale) {
        REQUIRE(y[i] == expect);
      } else {
        REQUIRE(std::fabs(y[i] - expect) <= 2.4e-7f * std::fabs(expect) + (c.epilogue == Epilogue::Accumulate ? 1e-6f : 0.0f));
      }
    }
  return gw.segments().size();
}

}  // namespace

TEST_CASE("ternary packing follows architecture.md and round-trips") {
  // One row of 20: element 16j + 4i + b sits in word j at bits 8b + 2i as code w + 1.
  std::vector<int8_t> v(20, 0);
  v[0] = 1;    // word 0, bits 0..1 = 2
  v[5] = -1;   // 5 = 4*1 + 1: bits 8 + 2 = 10..11 = 0
  v[15] = 1;   // 15 = 4*3 + 3: bits 24 + 6 = 30..31 = 2
  v[16] = -1;  // word 1, bits 0..1 = 0
  auto m = pack_ternary(v, 1, 20, 0.5f);
  REQUIRE(m.words.size() == 4);  // Kp = 64: 4 words
  CHECK(m.padded_cols() == 64);
  CHECK((m.words[0] & 3u) == 2);
  CHECK(((m.words[0] >> 10) & 3u) == 0);
  CHECK(((m.words[0] >> 30) & 3u) == 2);
  CHECK((m.words[1] & 3u) == 0);
  CHECK(m.words[3] == 0x55555555u);                      // padding: code 1
  CHECK(m.row_code_sums[0] == 64 + 1 - 1 + 1 - 1);       // all codes 1, plus the deviations
  CHECK(((m.words[0] >> 2) & 0x03030303u) == 0x01010001u);  // elements 4..7 as bytes: codes 1, 0, 1, 1
  CHECK(m.row_scales[0] == 0.5f);

  std::mt19937 rng(1);
  for (uint32_t k : {1u, 13u, 64u, 65u, 257u}) {
    auto w = test::random_ternary(rng, size_t(7) * k);
    auto p = pack_ternary(w, 7, k, 1.0f);
    CHECK(unpack_ternary(p) == w);
    for (uint32_t n = 0; n < 7; ++n) {
      int32_t sum = int32_t(p.padded_cols() - k);
      for (uint32_t i = 0; i < k; ++i) sum += w[size_t(n) * k + i] + 1;
      CHECK(p.row_code_sums[n] == sum);
    }
  }
  std::vector<int8_t> bad = {0, 2, 1};
  CHECK_THROWS_WITH_AS(pack_ternary(bad, 1, 3, 1.0f, "blk.0.ffn_up"), doctest::Contains("blk.0.ffn_up"), Error);
  CHECK_THROWS_AS(pack_ternary(v, 1, 20, 0.0f), Error);
  CHECK_THROWS_AS(pack_ternary(v, 2, 20, 1.0f), Error);
}

TEST_CASE("ternary GEMV and GEMM are exact on awkward shapes, both inner-product paths") {
  test::ValidationGuard guard;
  std::vector<TernaryDot> paths = {TernaryDot::Swar};
  if (test::device().info().integer_dot_product) paths.push_back(TernaryDot::PackedInt8);
  else MESSAGE("device has no shaderIntegerDotProduct: the OpSDot path is not tested");
  for (MatmulLoad load : test::load_paths()) {
    uint32_t seed = 100;
    for (TernaryDot dot : paths)
      for (uint32_t k : {1u, 13u, 63u, 65u, 255u, 257u, 2560u + 17u})
        for (uint32_t n : {1u, 7u, 129u})
          for (uint32_t t : {1u, 2u, 5u, 9u}) {
            CAPTURE(int(dot));
            CAPTURE(int(load));
            run_case({n, k, t, dot, true, 0, Epilogue::Store, std::nullopt, load}, seed++);
          }
  }
}

TEST_CASE("ternary matmul with real scales, forced segments and the residual epilogue") {
  test::ValidationGuard guard;
  std::vector<TernaryDot> paths = {TernaryDot::Swar};
  if (test::device().info().integer_dot_product) paths.push_back(TernaryDot::PackedInt8);
  for (MatmulLoad load : test::load_paths())
    for (TernaryDot dot : paths) {
      CAPTURE(int(dot));
      CAPTURE(int(load));
      const auto any = std::nullopt;
      for (uint32_t t : {1u, 5u}) {
        run_case({129, 300, t, dot, /*unit_scale=*/false, 0, Epilogue::Store, any, load}, 7);
        run_case({129, 300, t, dot, false, 0, Epilogue::Accumulate, any, load}, 8);
        // 320 padded columns = 80 bytes a row: 13 segments of 10 rows (the last of 9); each segment
        // is its own texel view of 800 bytes (50 texels).
        CHECK(run_case({129, 300, t, dot, true, 800, Epilogue::Store, any, load}, 9) == 13);
        CHECK(run_case({129, 300, t, dot, false, 800, Epilogue::Accumulate, any, load}, 10) == 13);
        // One row per segment, odd rows: row info read at both halves of its texels.
        CHECK(run_case({7, 1000, t, dot, false, 256, Epilogue::Store, any, load}, 11) == 7);
      }
    }
}

TEST_CASE("ternary matmul shapes: GPU-like lane clusters with shuffle reduction") {
  test::ValidationGuard guard;
  const DeviceInfo& info = test::device().info();
  // Several lane groups per workgroup, each reduced by shuffle-xor, as MatmulShape::pick does on GPUs.
  // rows 6 over 4 lanes: each lane finishes up to two rows, the second group partly.
  for (auto [lanes, rows] : {std::pair{4u, 2u}, std::pair{4u, 6u}}) {
    const auto s = test::cluster_shape(lanes, rows);
    if (!s) continue;
    CAPTURE(lanes);
    CAPTURE(rows);
    for (MatmulLoad load : test::load_paths()) {
      CAPTURE(int(load));
      run_case({129, 257, 5, TernaryDot::Swar, true, 0, Epilogue::Store, s, load}, 20 + lanes);
      if (info.integer_dot_product)
        run_case({129, 257, 1, TernaryDot::PackedInt8, false, 0, Epilogue::Store, s, load}, 30);
    }
  }
}

TEST_CASE("ternary matmul writes columns of a wider output and concatenated matrices keep their scales") {
  test::ValidationGuard guard;
  Device& dev = test::device();
  std::mt19937 rng(5);
  const uint32_t k = 100, t = 3, nq = 20, nk = 6;
  const auto wq = test::random_ternary(rng, size_t(nq) * k), wk = test::random_ternary(rng, size_t(nk) * k);
  std::vector<PackedTernaryMatrix> parts = {pack_ternary(wq, nq, k, 0.5f), pack_ternary(wk, nk, k, 2.0f)};
  TernaryMatrixGpu gw(dev, concat_rows(parts), "fused q+k");
  REQUIRE(gw.rows() == nq + nk);
  const auto x = test::random_quantized(rng, t, k, true);
  auto gx = test::upload_activations(x);
  const uint32_t stride = 40, offset = 7;
  std::vector<float> y0(size_t(t) * stride, -1.0f);
  Buffer gy = test::upload(y0);
  TernaryMatmul op(dev);
  Recording rec(dev);
  op.record(rec, gw, gx.view, t, {gy.range(), stride, offset});
  rec.submit_and_wait();
  const auto y = test::download<float>(gy, y0.size());
  const auto accq = test::ternary_dot_ref(wq, nq, k, x), acck = test::ternary_dot_ref(wk, nk, k, x);
  for (uint32_t tt = 0; tt < t; ++tt)
    for (uint32_t c = 0; c < stride; ++c) {
      const float got = y[size_t(tt) * stride + c];
      if (c < offset || c >= offset + nq + nk) {
        CHECK(got == -1.0f);
      } else if (c < offset + nq) {
        CHECK(got == float(accq[size_t(tt) * nq + c - offset]) * 0.5f);
      } else {
        CHECK(got == float(acck[size_t(tt) * nk + c - offset - nq]) * 2.0f);
      }
    }
  // Mismatched inputs and outputs are clear errors.
  Recording bad(dev);
  QuantizedActivations wrong = gx.view;
  wrong.cols = k + 1;
  CHECK_THROWS_WITH_AS(op.record(bad, gw, wrong, t, {gy.range()}), doctest::Contains("columns"), Error);
  CHECK_THROWS_WITH_AS(op.record(bad, gw, gx.view, t, {gy.range(), 30, 7}), doctest::Contains("do not fit"), Error);
  CHECK_THROWS_WITH_AS(op.record(bad, gw, gx.view, 4, {gy.range(), stride, offset}), doctest::Contains("fewer"), Error);
}

TEST_CASE("ternary matmul picks texel loads on CPU devices that have them, storage loads elsewhere") {
  Device& dev = test::device();
  const DeviceInfo& info = dev.info();
  TernaryMatmul automatic(dev);
  CHECK(automatic.uses_texel_loads() == (info.is_cpu() && info.texel_buffer_uint4));
  CHECK(automatic.uses_texel_loads() == prefers_texel_loads(info));
  CHECK_FALSE(TernaryMatmul(dev, {.load = MatmulLoad::Storage}).uses_texel_loads());
  if (info.texel_buffer_uint4) CHECK(TernaryMatmul(dev, {.load = MatmulLoad::Texel}).uses_texel_loads());
  else CHECK_THROWS_AS(TernaryMatmul(dev, {.load = MatmulLoad::Texel}), Error);
  // A GPU-like description keeps storage loads.
  DeviceInfo gpu = info;
  gpu.type = VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU;
  gpu.texel_buffer_uint4 = true;
  CHECK_FALSE(prefers_texel_loads(gpu));
}

// The CPU-device GEMV shape (32 rows per lane group since issue 3's tuning; the FP16 GEMV keeps 16)
// around its tile edges and on a 2B4T-sized input, exact on both load paths.
TEST_CASE("ternary GEMV: the CPU-device 32-row shape is exact around its tile edges") {
  test::ValidationGuard guard;
  const DeviceInfo& info = test::device().info();
  const MatmulShape gemv = MatmulShape::pick(info, 1, true);
  if (uses_one_subgroup_workgroups(info)) {
    CHECK(gemv.rows == 32);
    CHECK(MatmulShape::pick(info, 1, false).rows == 16);
  }
  uint32_t seed = 500;
  for (MatmulLoad load : test::load_paths())
    for (uint32_t n : {31u, 32u, 33u, 95u, 97u})
      for (uint32_t k : {64u, 2560u, 6912u + 3u}) {
        CAPTURE(int(load));
        run_case({n, k, 1, TernaryDot::Swar, false, 0, Epilogue::Store, std::nullopt, load}, seed++);
        run_case({n, k, 1, TernaryDot::Swar, false, 0, Epilogue::Accumulate, std::nullopt, load}, seed++);
      }
}

// The GPU plan's fused linear layer (norm + quantization in the prologue, GEMV, epilogue) against
// CPU references written from docs/architecture.md, with the CPU device's shape, a GPU-like fixed
// shape (several subgroups per workgroup, clusters of 8 lanes reduced by shuffles) and the GPU's rule
// for splitting each matrix (up to 32 lanes a row: wider than this device's subgroups, their pieces
// add through shared memory) forced on this device.
//
// Tolerances, from the math:
//  - ternary: the integer sums are exact for the reference's q. The GPU normalizes in another order
//    (sum of squares, inversesqrt), so s may differ by a few ulps and a q whose v / s lies within
//    1e-4 of a .5 tie may round the other way: each such element moves sum w q by at most 1. So
//    |y - ref| <= scale * s * (ties of the token) + 1e-5 * scale * s * sum |w q| (+ 1e-6 with a residual).
//  - fp16 / int8 weights: fp32 accumulation in another order: 3e-5 * sum |w v| + 1e-6
//    (check_dense_matmul), with v the normalized input (its fp32 rounding is far inside that).
//  - gated: the gate and up values carry the ternary bound d; act(g) * u moves by at most
//    L * d * (|u| + d) + (|act(g)| + L * d) * d, L the slope bound of act on [g - d, g + d].
//  - RoPE: rope_error_bound (ops_attention/reference.h: the Vulkan precision of sin/cos and pow).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "common/device_profiles.h"
#include "common/gpu.h"
#include "common/random.h"
#include "ops_attention/reference.h"
#include "ops_matmul/matmul_test_util.h"
#include "ops_matmul/reference.h"
#include "runtime/core/half.h"
#include "runtime/ops/fused_linear.h"

using namespace ternvk;
using namespace ternvk::ops;

namespace {

constexpr float kEps = 1e-5f;
using test::h200_like;

// The CPU device's shape, a GPU-like fixed one, and the GPU rule at both of its ends: as many
// workgroups as possible (32 lanes, the fewest rows) and as few as fit the loads (the most rows).
std::vector<std::optional<FusedLinearShape>> shapes() {
  std::vector<std::optional<FusedLinearShape>> out = {std::nullopt};
  const DeviceInfo& info = test::device().info();
  if (info.min_subgroup_size >= 8) {
    FusedLinearShape s;
    s.workgroup = std::min(64u, info.max_workgroup_invocations);
    s.lanes = 8;
    s.rows = 3;  // not a divisor of the test's row counts
    s.paired_rows = 4;
    s.max_tokens = 2;  // 5 tokens take three workgroups along y
    s.subgroup_add = false;
    s.loads_in_flight = 8;  // blocks of 2 chunks (3 rows), so rows end inside a block
    out.push_back(s);
  }
  FusedLinearShape widest = h200_like();
  widest.max_tokens = 2;
  widest.target_workgroups = 1u << 20;
  out.push_back(widest);
  FusedLinearShape fewest = widest;
  fewest.target_workgroups = 1;
  out.push_back(fewest);
  return out;
}

std::vector<TernaryDot> dots() {
  std::vector<TernaryDot> d = {TernaryDot::Swar};
  if (test::device().info().integer_dot_product) d.push_back(TernaryDot::PackedInt8);
  return d;
}

// Per token, the elements whose v / s lies within 1e-4 of a .5 tie.
std::vector<int> ties(const test::QuantRef& r) {
  std::vector<int> out(r.tokens, 0);
  for (uint32_t t = 0; t < r.tokens; ++t)
    for (uint32_t k = 0; k < r.cols; ++k) {
      const float v = r.scaled[size_t(t) * r.cols + k];
      out[t] += std::fabs(std::fabs(v - std::trunc(v)) - 0.5f) < 1e-4f;
    }
  return out;
}

struct TernaryCase {
  uint32_t n, k, t;
  FusedEpilogue epilogue = FusedEpilogue::Store;
  uint64_t max_segment_bytes = 0;
};

// Reference values and their bounds for a ternary layer: ref[t, n] and tol[t, n].
struct Expected {
  std::vector<double> ref, tol;
};

Expected ternary_expected(const std::vector<int8_t>& w, const std::vector<float>& scales, uint32_t n, uint32_t k,
                          const std::vector<float>& x, const std::vector<float>& norm, uint32_t t) {
  const auto q = test::quantize_ref(x, t, k, norm.data(), kEps);
  const auto acc = test::ternary_dot_ref(w, n, k, q);
  const auto tie = ties(q);
  Expected e;
  for (uint32_t tt = 0; tt < t; ++tt)
    for (uint32_t r = 0; r < n; ++r) {
      double mag = 0;
      for (uint32_t i = 0; i < k; ++i) mag += std::abs(w[size_t(r) * k + i] * q.q[size_t(tt) * k + i]);
      const double unit = double(scales[r]) * q.s[tt];
      e.ref.push_back(double(acc[size_t(tt) * n + r]) * unit);
      e.tol.push_back(unit * (tie[tt] + 1e-5 * mag) + 1e-7);
    }
  return e;
}

std::vector<float> random_norm(std::mt19937& rng, uint32_t k) { return test::random_floats(rng, k, 0.5f, 1.5f); }

void run_ternary(const TernaryCase& c, TernaryDot dot, const std::optional<FusedLinearShape>& shape, uint32_t seed) {
  Device& dev = test::device();
  std::mt19937 rng(seed);
  const auto w = test::random_ternary(rng, size_t(c.n) * c.k);
  std::vector<float> scales(c.n);
  for (uint32_t r = 0; r < c.n; ++r) scales[r] = 0.25f + 0.01f * float(r % 13);
  std::vector<PackedTernaryMatrix> parts;
  for (uint32_t r = 0; r < c.n; ++r)
    parts.push_back(pack_ternary(std::span(w).subspan(size_t(r) * c.k, c.k), 1, c.k, scales[r]));
  TernaryMatrixGpu gw(dev, concat_rows(parts), "fused test matrix", c.max_segment_bytes);
  const auto x = test::random_floats(rng, size_t(c.t) * c.k, -3.0f, 3.0f);
  const auto norm = random_norm(rng, c.k);
  Buffer gx = test::upload(x, "x"), gn = test::upload(norm, "norm");
  std::vector<float> y0(size_t(c.t) * c.n);
  for (size_t i = 0; i < y0.size(); ++i) y0[i] = c.epilogue == FusedEpilogue::Accumulate ? float(i % 7) - 3.0f : NAN;
  Buffer gy = test::upload(y0, "y");

  FusedLinear op(dev, {.dot = dot, .shape = shape});
  test::ValidationGuard guard;
  Recording rec(dev);
  op.record(rec, gw, {.x = gx.range(), .norm = gn.range(), .eps = kEps, .tokens = c.t}, {gy.range()}, c.epilogue);
  CHECK(rec.dispatch_count() == gw.segments().size());
  rec.submit_and_wait();
  const auto y = test::download<float>(gy, y0.size());
  const Expected e = ternary_expected(w, scales, c.n, c.k, x, norm, c.t);
  for (size_t i = 0; i < y.size(); ++i) {
    const double want = e.ref[i] + (c.epilogue == FusedEpilogue::Accumulate ? y0[i] : 0.0);
    INFO("N=" << c.n << " K=" << c.k << " T=" << c.t << " at " << i << " dot=" << int(dot) << " gpu shape=" << bool(shape));
    REQUIRE(std::fabs(y[i] - want) <= e.tol[i] + 1e-6 * std::fabs(want));
  }
}

}  // namespace

TEST_CASE("fused linear, ternary: norm + int8 quantization + GEMV, store and residual add") {
  for (const auto& shape : shapes())
    for (TernaryDot dot : dots()) {
      run_ternary({.n = 77, .k = 200, .t = 1}, dot, shape, 1);
      run_ternary({.n = 130, .k = 320, .t = 5, .epilogue = FusedEpilogue::Accumulate}, dot, shape, 2);
    }
  // Several segments: one dispatch each, rows offset by the segment's first row.
  run_ternary({.n = 100, .k = 256, .t = 2, .max_segment_bytes = 64 * 30}, TernaryDot::Swar, std::nullopt, 3);
  // The 2B4T o projection's shape, one token.
  run_ternary({.n = 2560, .k = 2560, .t = 1, .epilogue = FusedEpilogue::Accumulate}, dots().back(), h200_like(), 4);
  // ... and 2B4T's down projection (108 chunks a row), as the H200 rule splits it: 16 lanes, 1 row.
  REQUIRE(h200_like().split(2560, 108, 1, true).lanes == 16);
  run_ternary({.n = 2560, .k = 6912, .t = 1, .epilogue = FusedEpilogue::Accumulate}, TernaryDot::Swar, h200_like(), 5);
}

// The prologue keeps each subgroup's int8 sum in a shared slot of its own while (tokens + 1) x
// subgroups fit the workgroup; with as many tokens per workgroup as a subgroup has lanes they do not,
// and the sums take the workgroup reduction instead. Both ways give the reference's values.
TEST_CASE("fused linear, ternary: the prologue's int8 sums with as many tokens a workgroup as lanes a subgroup") {
  const DeviceInfo& info = test::device().info();
  const uint32_t sg = info.max_subgroup_size;
  if (4 * sg > info.max_workgroup_invocations || sg > 16) {
    // Wider subgroups reach the fallback only with 32+ tokens a workgroup, whose register arrays make
    // a slow compile; no plan uses more than 4. Devices with subgroups of 8 (lavapipe) run it.
    MESSAGE("not run: subgroups of " << sg << " lanes");
    return;
  }
  FusedLinearShape s;
  s.workgroup = 4 * sg;  // at least 4 subgroups
  s.lanes = 8;
  s.rows = 2;
  s.max_tokens = sg;  // (sg + 1) x subgroups > invocations: the fallback
  s.loads_in_flight = 8;
  for (TernaryDot dot : dots()) {
    run_ternary({.n = 37, .k = 136, .t = sg + 1}, dot, s, 11);  // a full workgroup of tokens, then one
    s.max_tokens = 2;  // slots apart, two tokens a workgroup
    run_ternary({.n = 37, .k = 136, .t = 3, .epilogue = FusedEpilogue::Accumulate}, dot, s, 12);
    s.max_tokens = sg;
  }
}

TEST_CASE("fused linear, ternary gate|up: act(gate) * up in the epilogue") {
  Device& dev = test::device();
  const uint32_t F = 70, K = 1600;  // 25 chunks: every 8-lane piece of a 32-lane group has some
  for (const auto& shape : shapes())
    for (FusedEpilogue ep : {FusedEpilogue::GatedSquaredRelu, FusedEpilogue::GatedSilu})
      for (uint32_t T : {1u, 3u}) {
        std::mt19937 rng(10 + T);
        const auto w = test::random_ternary(rng, size_t(2 * F) * K);
        TernaryMatrixGpu gw(dev, pack_ternary(w, 2 * F, K, 0.3f), "gate|up");
        const auto x = test::random_floats(rng, size_t(T) * K, -2.0f, 2.0f);
        const auto norm = random_norm(rng, K);
        Buffer gx = test::upload(x, "x"), gn = test::upload(norm, "norm");
        Buffer gy = test::upload(std::vector<float>(size_t(T) * F, NAN), "ffn");
        FusedLinear op(dev, {.shape = shape});
        test::ValidationGuard guard;
        Recording rec(dev);
        op.record(rec, gw, {.x = gx.range(), .norm = gn.range(), .eps = kEps, .tokens = T}, {gy.range()}, ep);
        rec.submit_and_wait();
        const auto y = test::download<float>(gy, size_t(T) * F);
        const Expected e = ternary_expected(w, std::vector<float>(2 * F, 0.3f), 2 * F, K, x, norm, T);
        const bool relu = ep == FusedEpilogue::GatedSquaredRelu;
        auto act = [&](double g) { return relu ? std::max(g, 0.0) * std::max(g, 0.0) : g / (1.0 + std::exp(-g)); };
        for (uint32_t t = 0; t < T; ++t)
          for (uint32_t i = 0; i < F; ++i) {
            const size_t gi = size_t(t) * 2 * F + i, ui = gi + F;
            const double g = e.ref[gi], u = e.ref[ui], d = std::max(e.tol[gi], e.tol[ui]);
            const double slope = relu ? 2.0 * (std::fabs(g) + d) : 1.1;
            const double want = act(g) * u;
            const double tol = slope * d * (std::fabs(u) + d) + (std::fabs(act(g)) + slope * d) * d + 1e-5 * std::fabs(want) + 1e-6;
            INFO("T=" << T << " t=" << t << " i=" << i << " relu=" << relu << " gpu shape=" << bool(shape));
            REQUIRE(std::fabs(y[size_t(t) * F + i] - want) <= tol);
          }
      }
}

TEST_CASE("fused linear, fp16 and int8 rows: float norm in the prologue") {
  Device& dev = test::device();
  const uint32_t N = 45, K = 260, T = 3;  // 33 fp16 chunks, 17 int8 ones
  std::mt19937 rng(20);
  const auto wf = test::random_floats(rng, size_t(N) * K, -1.0f, 1.0f);
  std::vector<uint16_t> halves(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) halves[i] = float_to_half(wf[i]);
  const auto x = test::random_floats(rng, size_t(T) * K, -2.0f, 2.0f);
  const auto norm = random_norm(rng, K);
  // The normalized input in double.
  std::vector<float> v(x.size());
  for (uint32_t t = 0; t < T; ++t) {
    double ss = 0;
    for (uint32_t k = 0; k < K; ++k) ss += double(x[t * K + k]) * x[t * K + k];
    const double inv = 1.0 / std::sqrt(ss / K + kEps);
    for (uint32_t k = 0; k < K; ++k) v[t * K + k] = float(x[t * K + k] * inv * norm[k]);
  }
  Buffer gx = test::upload(x, "x"), gn = test::upload(norm, "norm");
  const Fp16MatrixGpu f16(dev, halves, N, K, "fp16 rows");
  const Int8Rows rows = quantize_rows_int8(halves, N, K);
  const Int8MatrixGpu i8(dev, rows, "int8 rows");
  // Float rows also in a fixed shape of 32 lanes (the GPU rule's float rows are 32 wide on an H200).
  auto float_shapes = shapes();
  FusedLinearShape wide = h200_like();
  wide.fit_to_device = false;
  wide.lanes = 32;
  float_shapes.push_back(wide);
  for (const auto& shape : float_shapes)
    for (bool int8 : {false, true})
      for (FusedEpilogue ep : {FusedEpilogue::Store, FusedEpilogue::Accumulate}) {
        std::vector<float> y0(size_t(T) * N);
        for (size_t i = 0; i < y0.size(); ++i) y0[i] = ep == FusedEpilogue::Accumulate ? float(i % 5) : NAN;
        Buffer gy = test::upload(y0, "y");
        FusedLinear op(dev, {.shape = shape});
        test::ValidationGuard guard;
        Recording rec(dev);
        const NormedInput in{.x = gx.range(), .norm = gn.range(), .eps = kEps, .tokens = T};
        if (int8) op.record(rec, i8, in, {gy.range()}, ep);
        else op.record(rec, f16, in, {gy.range()}, ep);
        rec.submit_and_wait();
        const auto y = test::download<float>(gy, y0.size());
        auto weight = [&](uint32_t n, uint32_t k) -> double {
          if (int8) return double(rows.q[size_t(n) * K + k]) * rows.scales[n];
          return half_to_float(halves[size_t(n) * K + k]);
        };
        test::check_dense_matmul(y, y0, v, N, K, T,
                                 ep == FusedEpilogue::Accumulate ? Epilogue::Accumulate : Epilogue::Store, weight, false);
      }
}

TEST_CASE("fused linear, qkv: RoPE and the KV-cache store in the epilogue") {
  Device& dev = test::device();
  const HeadLayout heads{4, 2, 16};
  const uint32_t rows = (heads.n_heads + 2 * heads.n_kv_heads) * heads.head_dim, K = 1600, capacity = 12;
  const uint32_t q_rows = heads.n_heads * heads.head_dim, kv_dim = heads.n_kv_heads * heads.head_dim;
  for (const auto& shape : shapes())
    for (RopeForm form : {RopeForm::NeoX, RopeForm::AdjacentPairs})
      for (bool with_slots : {false, true}) {
        const uint32_t T = with_slots ? 3 : 2, sequences = with_slots ? 3 : 1;
        std::mt19937 rng(30 + T);
        const auto w = test::random_ternary(rng, size_t(rows) * K);
        TernaryMatrixGpu gw(dev, pack_ternary(w, rows, K, 0.2f), "qkv");
        const auto x = test::random_floats(rng, size_t(T) * K, -2.0f, 2.0f);
        const auto norm = random_norm(rng, K);
        const std::vector<uint32_t> pos = with_slots ? std::vector<uint32_t>{7, 0, 11} : std::vector<uint32_t>{5, 6};
        const std::vector<uint32_t> slot_ids = {2, 0, 1};
        Buffer gx = test::upload(x, "x"), gn = test::upload(norm, "norm"), gp = test::upload(pos, "positions");
        Buffer gs = test::upload(slot_ids, "slots");
        Buffer gy = test::upload(std::vector<float>(size_t(T) * rows, NAN), "qkv out");
        const uint64_t kv_bytes = kv_cache_bytes(capacity, heads.n_kv_heads, heads.head_dim) * sequences;
        const std::vector<uint16_t> sentinel(kv_bytes / 2, 0x7e00);
        Buffer kc = test::upload(sentinel, "k cache"), vc = test::upload(sentinel, "v cache");
        const RopeKvTarget target{heads, {10000.0f, form}, gp.range(),
                                  {kc.range(), vc.range(), capacity, sequences}, with_slots ? gs.range() : BufferRange{}};
        FusedLinear op(dev, {.shape = shape});
        test::ValidationGuard guard;
        Recording rec(dev);
        op.record(rec, gw, {.x = gx.range(), .norm = gn.range(), .eps = kEps, .tokens = T}, {gy.range()},
                  FusedEpilogue::RopeKvStore, &target);
        CHECK(rec.dispatch_count() == 1);
        rec.submit_and_wait();

        const Expected e = ternary_expected(w, std::vector<float>(rows, 0.2f), rows, K, x, norm, T);
        std::vector<float> want(e.ref.begin(), e.ref.end());
        const QkvView view = QkvView::fused({}, T, heads);
        test::ref::rope(want, view, heads, pos, 10000.0f, form);
        const auto y = test::download<float>(gy, want.size());
        const auto got_k = test::download<uint16_t>(kc, sentinel.size());
        const auto got_v = test::download<uint16_t>(vc, sentinel.size());
        for (uint32_t t = 0; t < T; ++t)
          for (uint32_t r = 0; r < rows; ++r) {
            const size_t i = size_t(t) * rows + r;
            // The pair partner of r, whose error enters r's rotation.
            const uint32_t in_head = r % heads.head_dim, half = heads.head_dim / 2;
            const uint32_t partner = form == RopeForm::NeoX ? (in_head < half ? r + half : r - half) : (r ^ 1u);
            const size_t j = size_t(t) * rows + partner;
            const bool rotated = r < q_rows + kv_dim;
            const double value_err = e.tol[i] + (rotated ? e.tol[j] : 0.0);
            const double tol = value_err + (rotated ? test::ref::rope_error_bound(e.ref[i], e.ref[j], pos[t]) : 1e-6);
            INFO("t=" << t << " row=" << r << " neox=" << (form == RopeForm::NeoX) << " slots=" << with_slots);
            REQUIRE(std::fabs(y[i] - want[i]) <= tol);
            if (r < q_rows) continue;
            // k and v rows in the cache: the fp16 rounding of a value within `tol` of want.
            const bool is_k = r < q_rows + kv_dim;
            const uint32_t e_kv = r - (is_k ? q_rows : q_rows + kv_dim);
            const size_t at = (size_t(with_slots ? slot_ids[t] : 0) * capacity + pos[t]) * kv_dim + e_kv;
            const float cached = half_to_float((is_k ? got_k : got_v)[at]);
            REQUIRE(std::fabs(cached - want[i]) <= tol + test::ref::half_rounding(std::fabs(want[i]) + tol));
          }
        // Nothing else in the caches was written.
        size_t written = 0;
        for (size_t i = 0; i < sentinel.size(); ++i) written += (got_k[i] != 0x7e00) + (got_v[i] != 0x7e00);
        CHECK(written == size_t(T) * 2 * kv_dim);
      }
}

TEST_CASE("fused linear refuses what it cannot do, naming the matrix") {
  Device& dev = test::device();
  std::mt19937 rng(40);
  const auto w = test::random_ternary(rng, size_t(64) * 64);
  TernaryMatrixGpu split(dev, pack_ternary(w, 64, 64, 1.0f), "split gate|up", 16 * 20);
  REQUIRE(split.segments().size() > 1);
  Buffer x = test::upload(std::vector<float>(64, 1.0f)), y = test::upload(std::vector<float>(64, 0.0f));
  FusedLinear op(dev);
  Recording rec(dev);
  const NormedInput in{.x = x.range(), .norm = x.range(), .tokens = 1};
  CHECK_THROWS_WITH_AS(op.record(rec, split, in, {y.range()}, FusedEpilogue::GatedSilu),
                       doctest::Contains("split gate|up"), Error);
  TernaryMatrixGpu odd(dev, pack_ternary(std::vector<int8_t>(6 * 3, 1), 6, 3, 1.0f), "odd");
  CHECK_THROWS_WITH_AS(op.record(rec, odd, in, {y.range()}, FusedEpilogue::Store), doctest::Contains("multiple of 4"),
                       Error);
  CHECK_THROWS_WITH_AS(op.record(rec, split, in, {y.range()}, FusedEpilogue::RopeKvStore),
                       doctest::Contains("split gate|up"), Error);
}

TEST_CASE("fused norm alone gives the fused layer's bits, through the separate matmuls") {
  // A step too large to fuse normalizes with the fused prologue and multiplies with the GEMV: a
  // token's outputs must equal the fused layer's bit for bit (ternary: integer sums; fp16 and int8
  // rows: the GEMV with the same lanes and reduction accumulates in the same order).
  Device& dev = test::device();
  const uint32_t N = 52, K = 136, T = 3;
  std::mt19937 rng(50);
  const auto w = test::random_ternary(rng, size_t(N) * K);
  TernaryMatrixGpu gw(dev, pack_ternary(w, N, K, 0.3f), "ternary");
  const auto wf = test::random_floats(rng, size_t(N) * K, -1.0f, 1.0f);
  std::vector<uint16_t> halves(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) halves[i] = float_to_half(wf[i]);
  const Fp16MatrixGpu f16(dev, halves, N, K, "fp16");
  const Int8MatrixGpu i8(dev, quantize_rows_int8(halves, N, K), "int8");
  const auto x = test::random_floats(rng, size_t(T) * K, -2.0f, 2.0f);
  Buffer gx = test::upload(x, "x"), gn = test::upload(random_norm(rng, K), "norm");
  const NormedInput in{.x = gx.range(), .norm = gn.range(), .eps = kEps, .tokens = T};
  // ... also under the GPU rule with float rows as wide as this device's subgroups (up to 32, as
  // float_row_lanes() gives a GPU) and 4 wide, so that their bits are compared at two widths here.
  auto compared = shapes();
  for (const uint32_t float_lanes : {std::min(32u, dev.info().min_subgroup_size), 4u}) {
    FusedLinearShape s = h200_like();
    s.max_tokens = 2;
    s.float_lanes = float_lanes;
    compared.push_back(s);
  }
  for (const auto& shape : compared) {
    CAPTURE(bool(shape));
    FusedLinear op(dev, {.shape = shape});
    const FusedLinearShape& fs = op.shape();
    CAPTURE(fs.float_lanes);
    // The matmuls with the fused layer's float lanes and reduction.
    MatmulShape ms;
    ms.workgroup = fs.workgroup;
    ms.lanes = fs.float_lanes;
    ms.rows = 2;
    ms.tokens = 1;
    ms.subgroup_add = fs.subgroup_add;
    ms.required_subgroup_size = fs.required_subgroup_size;
    auto fused_out = [&](auto&& record) {
      Buffer y = test::upload(std::vector<float>(size_t(T) * N, NAN), "fused y");
      Recording rec(dev);
      record(rec, y);
      rec.submit_and_wait();
      return test::download<float>(y, size_t(T) * N);
    };
    test::ValidationGuard guard;
    // Ternary.
    auto q = QuantizedActivationsBuffers::create(dev, T, K, "q");
    const auto fused_t = fused_out([&](Recording& rec, Buffer& y) { op.record(rec, gw, in, {y.range()}, FusedEpilogue::Store); });
    const auto split_t = fused_out([&](Recording& rec, Buffer& y) {
      op.record_norm(rec, in, q.view());
      TernaryMatmul(dev, {.dot = op.uses_int8_dot() ? TernaryDot::PackedInt8 : TernaryDot::Swar})
          .record(rec, gw, q.view(), T, {y.range()});
    });
    CHECK(std::memcmp(fused_t.data(), split_t.data(), fused_t.size() * 4) == 0);
    // FP16 and int8 rows, through normalized fp32 rows: the separate GEMVs reduce their lanes by
    // shuffles only, so they need subgroups as wide as the shape's lanes.
    if (fs.float_lanes > dev.info().min_subgroup_size) {
      MESSAGE(fs.float_lanes << " lanes a float row on subgroups of " << dev.info().min_subgroup_size
                             << ": float rows not compared");
      continue;
    }
    Buffer normed = test::upload(std::vector<float>(size_t(T) * K, NAN), "normed");
    const auto fused_h = fused_out([&](Recording& rec, Buffer& y) { op.record(rec, f16, in, {y.range()}, FusedEpilogue::Store); });
    const auto split_h = fused_out([&](Recording& rec, Buffer& y) {
      op.record_norm(rec, in, K, normed.range());
      Fp16Matmul(dev, {.shape = ms, .load = MatmulLoad::Storage}).record(rec, f16, normed.range(), T, {y.range()});
    });
    CHECK(std::memcmp(fused_h.data(), split_h.data(), fused_h.size() * 4) == 0);
    const auto fused_i = fused_out([&](Recording& rec, Buffer& y) { op.record(rec, i8, in, {y.range()}, FusedEpilogue::Store); });
    const auto split_i = fused_out([&](Recording& rec, Buffer& y) {
      op.record_norm(rec, in, K, normed.range());
      Int8Matmul(dev, {.shape = ms, .load = MatmulLoad::Storage}).record(rec, i8, normed.range(), T, {y.range()});
    });
    CHECK(std::memcmp(fused_i.data(), split_i.data(), fused_i.size() * 4) == 0);
  }
}

TEST_CASE("the GPU rule splits each 2B4T matrix to fill an H200 with every weight requested up front") {
  const FusedLinearShape s = h200_like();
  auto check = [&](uint32_t rows, uint32_t chunks, uint32_t min_rows, bool exact, FusedSplit want) {
    const FusedSplit got = s.split(rows, chunks, min_rows, exact);
    INFO(rows << " rows, " << chunks << " chunks, min rows " << min_rows << ", exact " << exact);
    CHECK(got.lanes == want.lanes);
    CHECK(got.rows == want.rows);
  };
  // Ternary (64 weights a chunk): every lane's loads fit one block of 8, at least 264 workgroups.
  check(2560, 40, 1, true, {16, 1});    // o: 3 loads a lane, 320 workgroups (8 lanes: 160)
  check(2560, 108, 1, true, {16, 1});   // down: 7 loads, 320 workgroups
  check(13824, 40, 2, true, {16, 2});   // gate|up, pairs: 6 loads, 864 workgroups
  check(3840, 40, 4, true, {32, 4});    // qkv, NeoX: 8 loads, 240 workgroups (the most 4-row groups allow)
  // Float rows keep the separate matmuls' lanes (their bits): 32 on an H200 (float_row_lanes), so
  // that the FP16 baseline's matrices fill the device as the ternary ones do.
  // The f16 head: 1 row a group would be 8,000 workgroups (10 loads a lane), past 8 times the target,
  // where more workgroups only repeat the prologue: 4 rows, 2,000 workgroups, 40 loads.
  check(32000, 320, 1, false, {32, 4});
  // The int8 head (160 words a row): one row a group would fit its 5 loads in one block, but at 8,000
  // workgroups; 4 rows, 2,000 workgroups, 20 loads.
  check(32000, 160, 1, false, {32, 4});
  check(2560, 320, 1, false, {32, 1});   // FP16 o: 640 workgroups, 10 loads (8 lanes: 160, 40)
  check(2560, 864, 1, false, {32, 1});   // FP16 down: 640 workgroups, 27 loads (8 lanes: 160, 108)
  check(3840, 320, 4, false, {32, 4});   // FP16 qkv, NeoX: 240 workgroups (8 lanes: 60)
  check(13824, 320, 2, false, {32, 2});  // FP16 gate|up, pairs: 1,728 workgroups, 20 loads
  // Any matrix: lanes within bounds, rows a multiple of the pairing, loads in one block where a split
  // reaching the target allows it.
  std::mt19937 rng(50);
  for (int i = 0; i < 2000; ++i) {
    const uint32_t rows = 2 + rng() % 20000, chunks = 1 + rng() % 400, min_rows = 1u << (rng() % 3);
    const bool exact = rng() % 2;
    const FusedSplit got = s.split(rows, chunks, min_rows, exact);
    INFO(rows << " rows, " << chunks << " chunks, min rows " << min_rows << ", exact " << exact);
    REQUIRE(got.rows % min_rows == 0);
    REQUIRE(got.lanes >= (exact ? 8u : 32u));
    REQUIRE(got.lanes <= 32u);
    auto workgroups = [&](uint32_t l, uint32_t r) { return ((rows + r - 1) / r + 128 / l - 1) / (128 / l); };
    bool possible = false, within = false;
    for (uint32_t l = exact ? 8u : 32u; l <= 32u; l *= 2)
      for (uint32_t r = min_rows; r <= std::max(min_rows, 4u); r *= 2) {
        const bool in_bounds = workgroups(l, r) >= 264 && workgroups(l, r) <= 8 * 264;
        possible |= r * ((chunks + l - 1) / l) <= 8 && in_bounds;
        within |= in_bounds;
      }
    if (possible) REQUIRE(got.rows * ((chunks + got.lanes - 1) / got.lanes) <= 8);
    // where a split reaches the target within 8 times it, no more workgroups than that
    if (within) REQUIRE(workgroups(got.lanes, got.rows) <= 8 * 264);
  }
  // A fixed shape is what it says.
  FusedLinearShape fixed = s;
  fixed.fit_to_device = false;
  CHECK(fixed.split(13824, 40, 2, true).rows == fixed.paired_rows);
  CHECK(fixed.split(2560, 40, 1, true).lanes == fixed.lanes);
  CHECK(fixed.split(2560, 320, 1, false).lanes == fixed.float_lanes);
}

TEST_CASE("fused linear picks the GPU rule from the device's properties") {
  DeviceInfo gpu = test::h200_like_info();
  FusedLinearShape s = FusedLinearShape::pick(gpu);
  CHECK(s.fit_to_device);
  CHECK(s.workgroup == 128);
  CHECK(s.max_lanes == 32);
  CHECK(s.float_lanes == 32);
  CHECK(s.target_workgroups == 264);
  // A wave64 device without subgroup size control keeps lane groups inside its smallest subgroup.
  gpu.subgroup_size_control = false;
  gpu.min_subgroup_size = 16;
  gpu.max_subgroup_size = 64;
  gpu.compute_units = 0;  // unknown: a discrete GPU is assumed to have 100
  s = FusedLinearShape::pick(gpu);
  CHECK(s.max_lanes == 16);
  CHECK(s.float_lanes == 16);
  CHECK(s.target_workgroups == 200);
  // CPU devices keep their fixed shape.
  gpu.type = VK_PHYSICAL_DEVICE_TYPE_CPU;
  gpu.min_subgroup_size = gpu.max_subgroup_size = 8;
  CHECK_FALSE(FusedLinearShape::pick(gpu).fit_to_device);
  CHECK(FusedLinearShape::pick(gpu).float_lanes == 8);
}

TEST_CASE("the split trial's candidate rules surround the argued one") {
  const FusedLinearShape s = FusedLinearShape::pick(test::h200_like_info());
  using R = FusedSplitRule;
  // The argued rule first: 2 workgroups a compute unit, 8 loads in flight; then half and twice the
  // workgroups, and the three again with 16 loads in flight.
  CHECK(s.rule_candidates() == std::vector<R>{{264, 8}, {132, 8}, {528, 8}, {264, 16}, {132, 16}, {528, 16}});
  // 2B4T's matrices (a layer's four, then the f16 head at vocab 32000): rows, 16-byte words a row
  // (ternary / fp16), rows a lane group at least. Every candidate keeps a lane's loads within its
  // rule; for the ternary model and for the FP16 baseline (32 lanes a row: its gate|up and head
  // follow the target through kWorkgroupsPerTarget) all six split them differently: the trial weighs
  // as many (docs/performance.md, "Split rules, decided on the device").
  struct M {
    uint32_t rows, ternary_words, fp16_words, min_rows;
  };
  const M matrices[] = {{3840, 40, 320, 4}, {2560, 40, 320, 1}, {13824, 40, 320, 2}, {2560, 108, 864, 1}};
  for (const bool fp16 : {false, true}) {
    std::set<std::vector<std::tuple<uint32_t, uint32_t, uint32_t>>> distinct;
    for (const R& r : s.rule_candidates()) {
      const FusedLinearShape c = s.with_rule(r);
      CHECK(c.rule() == r);
      std::vector<std::tuple<uint32_t, uint32_t, uint32_t>> splits;
      for (const M& m : matrices) {
        const uint32_t words = fp16 ? m.fp16_words : m.ternary_words;
        const FusedSplit got = c.split(m.rows, words, m.min_rows, !fp16);
        CHECK(c.block_loads(got, words) * got.rows <= std::max(r.loads_in_flight, got.rows));
        splits.emplace_back(got.lanes, got.rows, c.block_loads(got, words));
      }
      const FusedSplit head = c.split(32000, 320, 1, false);
      splits.emplace_back(head.lanes, head.rows, c.block_loads(head, 320));
      distinct.insert(splits);
    }
    CHECK(distinct.size() == 6u);
  }
  // Twice the workgroups of a target past every matrix does not wrap around; a fixed shape has one rule.
  FusedLinearShape most = s;
  most.target_workgroups = 1u << 31;
  for (const R& r : most.rule_candidates()) CHECK(r.target_workgroups >= 1u << 30);
  FusedLinearShape fixed = s;
  fixed.fit_to_device = false;
  CHECK(fixed.rule_candidates().size() == 1);
}

TEST_CASE("fused linear shapes that would drop work are refused") {
  FusedLinearShape s;
  s.paired_rows = 12;  // halved for RoPE to 3 rows: no whole K/V words
  CHECK_THROWS_WITH_AS(s.validate(test::device().info()), doctest::Contains("paired rows 12"), Error);
  // subgroupAdd reduces the whole workgroup: with several lane groups it would add other rows in.
  FusedLinearShape whole;
  whole.workgroup = 64;
  whole.lanes = 8;
  whole.subgroup_add = true;
  CHECK_THROWS_WITH_AS(whole.validate(test::device().info()), doctest::Contains("lanes = workgroup"), Error);
  // A split fitted to the device with no workgroup target (the bound on workgroups is a multiple of it).
  FusedLinearShape untargeted = h200_like();
  untargeted.target_workgroups = 0;
  CHECK_THROWS_WITH_AS(untargeted.validate(test::device().info()), doctest::Contains("workgroup target"), Error);
}

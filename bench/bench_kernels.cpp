// Kernel benchmarks: ternary GEMV/GEMM (both inner-product paths) against the FP16 GEMV of the
// same shape, side by side in one run, on the BitNet b1.58 2B4T shapes and 4096 x 14336; the fp16
// output head; rmsnorm_quant. Times come from GPU timestamps (median over repetitions recorded in
// one command buffer, after a warm-up submit); every output is checked against the CPU once before
// timing.
//
//   bench_kernels [--quick] [--tune] [--tune-gemm] [--gemv N K] [--head] [--prefill] [--prefill-tokens T]
//                 [--tune-tiles N K T] [--device N] [--reps N]
//   (--gemv: one ternary GEMV shape at the default tile; --head: the 32000-row head, fp16 vs int8;
//    --prefill: GEMV vs tiled GEMM, ternary and FP16, on the 2B4T projections at 64 and 512 tokens
//               (on GPUs whose float rows are wider than 8 lanes also the FP16 GEMM split 8 ways)
//    or at T; --tune-tiles: a sweep of GEMM tile shapes at one size)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bench/bench_util.h"
#include "runtime/core/error.h"
#include "runtime/core/half.h"
#include "runtime/device/device.h"
#include "runtime/device/instance.h"
#include "runtime/device/recording.h"
#include "runtime/ops/fp16_matmul.h"
#include "runtime/ops/int8_matmul.h"
#include "runtime/ops/matrix_unit_gemm.h"
#include "runtime/ops/rmsnorm_quant.h"
#include "runtime/ops/ternary_matmul.h"
#include "runtime/ops/ternary_matrix.h"

using namespace ternvk;
using namespace ternvk::ops;
using ternvk::bench::cpu_seconds;
using ternvk::bench::Rng;
using ternvk::bench::time_calls;
using ternvk::bench::Timing;

namespace {

struct Quantized {
  std::vector<int8_t> q;
  std::vector<uint32_t> values, meta;
};

Quantized quantize(const std::vector<float>& x, uint32_t tokens, uint32_t k) {
  Quantized r;
  const uint32_t kp = round_up(k, 64);
  r.q.resize(size_t(tokens) * k);
  r.values.assign(size_t(tokens) * kp / 4, 0);
  for (uint32_t t = 0; t < tokens; ++t) {
    float amax = 0;
    for (uint32_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[size_t(t) * k + i]));
    const float s = std::max(amax, 1e-5f) / 127.0f;
    int32_t sum = 0;
    for (uint32_t i = 0; i < k; ++i) {
      const int q = int(std::clamp(std::nearbyint(x[size_t(t) * k + i] / s), -128.0f, 127.0f));
      r.q[size_t(t) * k + i] = int8_t(q);
      r.values[size_t(t) * kp / 4 + i / 4] |= uint32_t(uint8_t(q)) << (8 * (i % 4));
      sum += q;
    }
    r.meta.push_back(std::bit_cast<uint32_t>(s));
    r.meta.push_back(uint32_t(sum));
  }
  return r;
}

template <class T>
Buffer upload(Device& dev, const std::vector<T>& v, const char* what) {
  Buffer b = dev.create_buffer(v.size() * sizeof(T), MemoryKind::DeviceLocal, what);
  dev.upload(b, v.data(), v.size() * sizeof(T));
  return b;
}

// Rows checked against the CPU: all of them for small matrices, else 256 spread over N.
std::vector<uint32_t> checked_rows(uint32_t n) {
  std::vector<uint32_t> rows;
  const uint32_t step = std::max(1u, n / 256);
  for (uint32_t r = 0; r < n; r += step) rows.push_back(r);
  rows.push_back(n - 1);
  return rows;
}

// Throws unless the checked rows of a ternary output equal the integer CPU sums (times the scales).
void check_ternary(const std::string& what, const std::vector<float>& got, const std::vector<int8_t>& w,
                   const Quantized& qx, uint32_t n, uint32_t k, uint32_t t, float scale) {
  const auto rows = checked_rows(n);
  for (uint32_t tt = 0; tt < t; ++tt)
    for (uint32_t r : rows) {
      int64_t acc = 0;
      for (uint32_t i = 0; i < k; ++i) acc += int64_t(w[size_t(r) * k + i]) * qx.q[size_t(tt) * k + i];
      const float want = float(acc) * scale * std::bit_cast<float>(qx.meta[2 * tt]);
      if (std::fabs(got[size_t(tt) * n + r] - want) > 1e-6f * std::fabs(want))
        throw Error(what + ": ternary output mismatch at token " + std::to_string(tt) + " row " + std::to_string(r));
    }
}

// Throws unless the checked rows of an fp16 output are within fp32 rounding of the double sums.
// `matrix_units`: the FP16 matrix-unit GEMM, whose activations are rounded to fp16 (its own bound).
void check_fp16(const std::string& what, const std::vector<float>& got, const std::vector<uint16_t>& wh,
                const std::vector<float>& x, uint32_t n, uint32_t k, uint32_t t, bool matrix_units = false) {
  const auto rows = checked_rows(n);
  for (uint32_t tt = 0; tt < t; ++tt)
    for (uint32_t r : rows) {
      double ref = 0, mag = 0, abs_w = 0;
      for (uint32_t i = 0; i < k; ++i) {
        const double w = half_to_float(wh[size_t(r) * k + i]), p = w * x[size_t(tt) * k + i];
        ref += p;
        mag += std::fabs(p);
        abs_w += std::fabs(w);
      }
      const double tolerance = matrix_units ? fp16_gemm_error_bound(k, mag, abs_w) + 1e-6 : 3e-5 * mag + 1e-6;
      if (std::fabs(got[size_t(tt) * n + r] - ref) > tolerance)
        throw Error(what + ": fp16 output mismatch at token " + std::to_string(tt) + " row " + std::to_string(r));
    }
}

std::vector<float> random_activations(Rng& rng, size_t count) {
  std::vector<float> x(count);
  for (auto& v : x) v = rng.uniform(-2.0f, 2.0f);
  return x;
}

std::vector<int8_t> random_ternary(Rng& rng, size_t count) {
  std::vector<int8_t> w(count);
  for (auto& v : w) v = int8_t(int(rng.next() % 3) - 1);
  return w;
}

std::vector<uint16_t> random_halves(Rng& rng, size_t count) {
  std::vector<uint16_t> wh(count);
  for (auto& v : wh) v = float_to_half(rng.uniform(-0.05f, 0.05f));
  return wh;
}

// Random ternary weights and the quantized activations of x on the device, with their CPU copies.
struct TernaryInputs {
  uint32_t n, k, t;
  float scale = 0.75f;
  std::vector<int8_t> w;
  TernaryMatrixGpu gw;
  Quantized qx;
  Buffer xv, xm;
  QuantizedActivations xa;
  uint64_t bytes;  // weights + activations + output: what one call reads and writes at least

  TernaryInputs(Device& dev, Rng& rng, const std::vector<float>& x, uint32_t n_, uint32_t k_, uint32_t t_,
                const std::string& label)
      : n(n_), k(k_), t(t_), w(random_ternary(rng, size_t(n) * k)), gw(dev, pack_ternary(w, n, k, scale), label),
        qx(quantize(x, t, k)), xv(upload(dev, qx.values, "bench activations")),
        xm(upload(dev, qx.meta, "bench scales")), xa{xv.range(), xm.range(), k},
        bytes(gw.weight_bytes() + xv.size() + xm.size() + uint64_t(t) * n * 4) {}
  void check(const std::string& what, const std::vector<float>& got) const {
    check_ternary(what, got, w, qx, n, k, t, scale);
  }
};

// Random fp16 weights and x on the device.
struct Fp16Inputs {
  uint32_t n, k, t;
  std::vector<uint16_t> wh;
  Fp16MatrixGpu gw;
  Buffer xb;
  uint64_t bytes;

  Fp16Inputs(Device& dev, Rng& rng, const std::vector<float>& x, uint32_t n_, uint32_t k_, uint32_t t_,
             const std::string& label)
      : n(n_), k(k_), t(t_), wh(random_halves(rng, size_t(n) * k)), gw(dev, wh, n, k, label + " fp16"),
        xb(upload(dev, x, "bench fp32 activations")), bytes(gw.weight_bytes() + xb.size() + uint64_t(t) * n * 4) {}
  void check(const std::string& what, const std::vector<float>& got, const std::vector<float>& x,
             bool matrix_units = false) const {
    check_fp16(what, got, wh, x, n, k, t, matrix_units);
  }
};

struct Options {
  bool quick = false;
  bool tune = false;
  bool tune_gemm = false;  // small GEMM tiles only (default load path)
  bool head_only = false;  // the 32000-row output head, fp16 and int8
  uint32_t gemv_n = 0, gemv_k = 0;  // one ternary GEMV shape at the default tile (tuning aid)
  bool prefill = false;              // GEMV vs tiled GEMM on the 2B4T shapes
  uint32_t prefill_tokens = 0;       // 0: 64 and 512
  uint32_t tiles_n = 0, tiles_k = 0, tiles_t = 0;  // --tune-tiles: GEMM shape sweep
  int reps = 0;
  std::optional<int> device;
};

struct Row {
  std::string label;
  uint32_t n, k, t;
  double tern_us = 0, tern_dot_us = 0, fp16_us = 0;                    // storage-buffer loads
  double tern_texel_us = 0, tern_dot_texel_us = 0, fp16_texel_us = 0;  // texel-buffer loads
  uint64_t tern_bytes = 0, fp16_bytes = 0;
};

struct PrefillRow {
  std::string label;
  uint32_t n, k, t;
  double tern_gemv = 0, tern_gemm_swar = 0, tern_gemm_dot = 0, tern_gemm_units = 0;  // us
  double fp16_gemv = 0, fp16_gemm = 0, fp16_gemm_units = 0;
};

void print_rate(const char* what, const Timing& t, uint64_t macs, uint64_t bytes) {
  std::printf("  %-18s %9.1f us  %7.2f GMAC/s  %6.2f GB/s   (cpu %.1f us)\n", what, t.median_us,
              double(macs) / t.median_us / 1e3, double(bytes) / t.median_us / 1e3, t.cpu_us);
}

class Bench {
 public:
  Bench(Device& dev, Options o) : dev_(dev), o_(o), norm_(dev) {}

  // Ternary (SWAR, OpSDot when the device has it) and FP16 for one shape, side by side, each with
  // storage-buffer and (where the device can) texel-buffer loads.
  Row matmul(const std::string& label, uint32_t n, uint32_t k, uint32_t t, bool with_fp16 = true) {
    Row row{label, n, k, t};
    Rng rng{0x9e3779b97f4a7c15ull ^ (uint64_t(n) << 32) ^ k};
    const int reps = o_.reps ? o_.reps : (o_.quick ? 5 : 15);
    std::printf("%s: N=%u K=%u T=%u\n", label.c_str(), n, k, t);
    const std::vector<float> x = random_activations(rng, size_t(t) * k);
    const uint64_t macs = uint64_t(n) * k * t;
    Buffer y = dev_.create_buffer(uint64_t(t) * n * 4, MemoryKind::DeviceLocal, "bench output");
    std::vector<float> got(size_t(t) * n);
    {
      const TernaryInputs in(dev_, rng, x, n, k, t, label);
      row.tern_bytes = in.bytes;
      std::vector<std::pair<TernaryDot, MatmulLoad>> paths;
      for (MatmulLoad load : loads()) {
        paths.push_back({TernaryDot::Swar, load});
        if (dev_.info().integer_dot_product) paths.push_back({TernaryDot::PackedInt8, load});
      }
      for (auto [dot, load] : paths) {
        TernaryMatmul op(dev_, {.dot = dot, .load = load});
        auto call = [&](Recording& rec) { op.record(rec, in.gw, in.xa, t, {y.range()}); };
        Recording check(dev_);
        call(check);
        check.submit_and_wait();
        dev_.download(y, got.data(), got.size() * 4);
        in.check(label, got);
        const Timing tm = time_calls(dev_, reps, call);
        const bool texel = load == MatmulLoad::Texel;
        (dot == TernaryDot::Swar ? (texel ? row.tern_texel_us : row.tern_us)
                                 : (texel ? row.tern_dot_texel_us : row.tern_dot_us)) = tm.median_us;
        const std::string what = std::string(dot == TernaryDot::Swar ? "ternary SWAR" : "ternary OpSDot") +
                                 (texel ? " texel" : "");
        print_rate(what.c_str(), tm, macs, row.tern_bytes);
      }
    }
    if (with_fp16) {
      const Fp16Inputs in(dev_, rng, x, n, k, t, label);
      row.fp16_bytes = in.bytes;
      for (MatmulLoad load : loads()) {
      Fp16Matmul op(dev_, {.load = load});
      auto call = [&](Recording& rec) { op.record(rec, in.gw, in.xb.range(), t, {y.range()}); };
      Recording check(dev_);
      call(check);
      check.submit_and_wait();
      dev_.download(y, got.data(), got.size() * 4);
      in.check(label, got, x);
      const int fp16_reps = uint64_t(n) * k > (200ull << 20) ? std::min(reps, 5) : reps;
      const Timing tm = time_calls(dev_, fp16_reps, call);
      const bool texel = load == MatmulLoad::Texel;
      (texel ? row.fp16_texel_us : row.fp16_us) = tm.median_us;
      print_rate(texel ? "fp16 texel" : "fp16", tm, macs, row.fp16_bytes);
      }
      if (row.tern_us > 0)
        std::printf("  fp16 / ternary time, storage loads: %.2fx (SWAR)%s\n", row.fp16_us / row.tern_us,
                    row.tern_dot_us > 0 ? (", " + fmt(row.fp16_us / row.tern_dot_us) + "x (OpSDot)").c_str() : "");
      if (row.tern_texel_us > 0 && row.fp16_texel_us > 0)
        std::printf("  fp16 / ternary time, texel loads: %.2fx (SWAR)%s\n", row.fp16_texel_us / row.tern_texel_us,
                    row.tern_dot_texel_us > 0 ? (", " + fmt(row.fp16_texel_us / row.tern_dot_texel_us) + "x (OpSDot)").c_str() : "");
    }
    rows_.push_back(row);
    return row;
  }

  // Prefill: the GEMV (this device's default path) and the tiled GEMM side by side for the ternary
  // matmul (GEMM with SWAR and, where the device has it, OpSDot) and the FP16 one. Every kernel's
  // output is checked against the CPU before it is timed.
  void prefill(const std::string& label, uint32_t n, uint32_t k, uint32_t t) {
    PrefillRow row{label, n, k, t};
    Rng rng{0x51ed27ull ^ (uint64_t(n) << 32) ^ k};
    const int reps = o_.reps ? o_.reps : (t >= 256 ? 3 : 5);
    std::printf("%s: N=%u K=%u T=%u\n", label.c_str(), n, k, t);
    const std::vector<float> x = random_activations(rng, size_t(t) * k);
    const uint64_t macs = uint64_t(n) * k * t;
    Buffer y = dev_.create_buffer(uint64_t(t) * n * 4, MemoryKind::DeviceLocal, "bench output");
    std::vector<float> got(size_t(t) * n);
    auto measure = [&](const std::string& what, const std::function<void(Recording&)>& call,
                       const std::function<void()>& check, uint64_t bytes) {
      Recording rec(dev_);
      call(rec);
      rec.submit_and_wait();
      dev_.download(y, got.data(), got.size() * 4);
      check();
      const Timing tm = time_calls(dev_, reps, call);
      print_rate(what.c_str(), tm, macs, bytes);
      return tm.median_us;
    };
    // A tile the GEMM would refuse (emulated units over lavapipe's loop budget): that row is named and
    // left out.
    auto units_run = [&](const std::string& what, const MatrixUnitTile& tile) {
      const std::string why = tile.why_not_run(k, label);
      if (!why.empty()) std::printf("  %-20s not run: %s\n", what.c_str(), why.c_str());
      return why.empty();
    };
    {
      const TernaryInputs in(dev_, rng, x, n, k, t, label);
      auto run = [&](const std::string& what, TernaryMatmulOptions opt) {
        TernaryMatmul op(dev_, opt);
        return measure(what, [&](Recording& rec) { op.record(rec, in.gw, in.xa, t, {y.range()}); },
                       [&] { in.check(label + " " + what, got); }, in.bytes);
      };
      row.tern_gemv = run("ternary GEMV", {.kernel = MatmulKernel::Gemv});
      row.tern_gemm_swar = run("ternary GEMM SWAR",
                               {.dot = TernaryDot::Swar, .kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::Vector});
      if (dev_.info().integer_dot_product)
        row.tern_gemm_dot = run("ternary GEMM dot", {.dot = TernaryDot::PackedInt8, .kernel = MatmulKernel::Gemm,
                                                     .gemm_units = GemmUnits::Vector});
      if (dev_.info().has_int8_matrix_unit() &&
          units_run("ternary GEMM matrix units", MatrixUnitGemm(dev_).tile(t, n))) {
        row.tern_gemm_units = run("ternary GEMM matrix units",
                                  {.kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::MatrixUnits});
        // The tile widths the fill rule did not pick for this matrix, side by side (tuning data for it).
        const uint32_t picked = MatrixUnitGemm(dev_).tile(t, n).matrices_n;
        for (const uint32_t matrices_n : MatrixUnitTile::row_choices(dev_.info())) {
          if (matrices_n == picked) continue;
          const MatrixUnitGemm op(dev_, matrices_n);
          const std::string what = "units, " + std::to_string(op.tile(t, n).tile_rows()) + "-row tiles";
          if (!units_run(what, op.tile(t, n))) continue;
          measure(what, [&](Recording& rec) { op.record(rec, in.gw, in.xa, t, {y.range()}, n, Epilogue::Store); },
                  [&] { in.check(label + " " + what, got); }, in.bytes);
        }
      }
    }
    {
      const Fp16Inputs in(dev_, rng, x, n, k, t, label);
      auto run = [&](const std::string& what, MatmulKernel kernel, GemmUnits units = GemmUnits::Vector) {
        Fp16Matmul op(dev_, {.kernel = kernel, .gemm_units = units});
        return measure(what, [&](Recording& rec) { op.record(rec, in.gw, in.xb.range(), t, {y.range()}); },
                       [&] { in.check(label + " " + what, got, x, units == GemmUnits::MatrixUnits); }, in.bytes);
      };
      row.fp16_gemv = run("fp16 GEMV", MatmulKernel::Gemv);
      row.fp16_gemm = run("fp16 GEMM", MatmulKernel::Gemm);
      // The K split of 8 lanes the GEMM had before float rows took float_row_lanes() (2026-12-07):
      // what the wider split costs or gives the FP16 baseline's shader-core prefill.
      if (!uses_one_subgroup_workgroups(dev_.info()) && float_row_lanes(dev_.info()) > 8) {
        try {  // (a side row: what it cannot run is named, the rest still runs)
          MatmulShape narrow = MatmulShape::pick(dev_.info(), 1, false);
          narrow.lanes = 8;
          Fp16Matmul op(dev_, {.shape = narrow, .kernel = MatmulKernel::Gemm, .gemm_units = GemmUnits::Vector});
          measure("fp16 GEMM, 8 lanes (before 2026-12-07)",
                  [&](Recording& rec) { op.record(rec, in.gw, in.xb.range(), t, {y.range()}); },
                  [&] { in.check(label + " fp16 GEMM, 8 lanes", got, x, false); }, in.bytes);
        } catch (const Error& e) {
          std::printf("  fp16 GEMM, 8 lanes: not run: %s\n", e.what());
        }
      }
      if (dev_.info().has_fp16_matrix_unit() &&
          units_run("fp16 GEMM matrix units", MatrixUnitGemm(dev_).tile(t, n, MatrixUnitOperands::Fp16)))
        row.fp16_gemm_units = run("fp16 GEMM matrix units", MatmulKernel::Gemm, GemmUnits::MatrixUnits);
    }
    prefill_rows_.push_back(row);
  }

  void prefill_summary() const {
    std::printf("\nprefill (us per call; GEMV = the device's default GEMV path, GEMM = the tiled GEMM, units = the "
                "matrix-unit GEMM where the device has int8 / fp16 ones)\n");
    std::printf("%-22s %5s %5s %3s | %10s %10s %10s %10s | %10s %10s %10s | %9s %9s\n", "shape", "N", "K", "T",
                "tern GEMV", "GEMM swar", "GEMM dot", "GEMM units", "fp16 GEMV", "fp16 GEMM", "fp16 units", "tern x",
                "fp16/tern");
    for (const PrefillRow& r : prefill_rows_) {
      double tern_gemm = r.tern_gemm_swar;
      for (double us : {r.tern_gemm_dot, r.tern_gemm_units})
        if (us > 0) tern_gemm = std::min(tern_gemm, us);
      double fp16_best = std::min(r.fp16_gemv, r.fp16_gemm);
      if (r.fp16_gemm_units > 0) fp16_best = std::min(fp16_best, r.fp16_gemm_units);
      const double tern_best = std::min(r.tern_gemv, tern_gemm);
      std::printf("%-22s %5u %5u %3u | %10.1f %10.1f %10.1f %10.1f | %10.1f %10.1f %10.1f | %9s %9s\n", r.label.c_str(),
                  r.n, r.k, r.t, r.tern_gemv, r.tern_gemm_swar, r.tern_gemm_dot, r.tern_gemm_units, r.fp16_gemv,
                  r.fp16_gemm, r.fp16_gemm_units, fmt(r.tern_gemv / tern_gemm).c_str(),
                  fmt(fp16_best / tern_best).c_str());
    }
    std::printf("(tern x: ternary GEMV time over the fastest ternary GEMM; fp16/tern: the faster of each; 0.0: not "
                "run on this device)\n");
  }

  void rmsnorm_quant(uint32_t k, uint32_t t) {
    Rng rng{k * 31ull + t};
    std::vector<float> x(size_t(t) * k), w(k);
    for (auto& v : x) v = rng.uniform(-2.0f, 2.0f);
    for (auto& v : w) v = rng.uniform(0.5f, 1.5f);
    Buffer gx = upload(dev_, x, "bench x"), gw = upload(dev_, w, "bench norm");
    auto out = QuantizedActivationsBuffers::create(dev_, t, k, "bench quantized");
    const Timing tm = time_calls(dev_, o_.reps ? o_.reps : 15, [&](Recording& rec) {
      norm_.record(rec, gx.range(), gw.range(), 1e-5f, t, out.view());
    });
    std::printf("rmsnorm_quant K=%u T=%u: %.1f us\n", k, t, tm.median_us);
  }

  void empty_dispatch() {
    Buffer b = dev_.create_buffer(256, MemoryKind::DeviceLocal, "bench empty");
    const Pipeline& fill = dev_.pipeline("fill", {.constants = {{0, 8}}});
    struct {
      uint32_t count, value;
    } push{8, 0};
    const Timing tm = time_calls(dev_, 30, [&](Recording& rec) { rec.dispatch(fill, {b.range()}, push, 1); });
    std::printf("empty dispatch (8 invocations): %.1f us median, %.1f us min\n", tm.median_us, tm.min_us);
  }

  // The device's storage-buffer streaming read rate (uvec4 loads, workgroup = subgroup): the
  // roofline of every GEMV here.
  void read_rate() {
    const uint64_t bytes = (o_.quick ? 16ull : 64ull) << 20;
    const uint32_t groups = 256, wg = dev_.info().subgroup_size;
    Buffer data = dev_.create_buffer(bytes, MemoryKind::DeviceLocal, "bench read probe");
    Buffer out = dev_.create_buffer(uint64_t(groups) * wg * 4, MemoryKind::DeviceLocal, "bench read probe out");
    const Pipeline& pl = dev_.pipeline("ternary_read_probe", {.constants = {{0, wg}}});
    struct {
      uint32_t per_group;
    } push{uint32_t(bytes / 16 / groups)};
    const Timing tm = time_calls(dev_, 5, [&](Recording& rec) { rec.dispatch(pl, {data.range(), out.range()}, push, groups); });
    std::printf("storage-buffer streaming read (uvec4, workgroup %u): %.2f GB/s (cpu %.2f GB/s per cpu-second)\n\n", wg,
                double(bytes) / tm.median_us / 1e3, double(bytes) / tm.cpu_us / 1e3);
  }

  void summary() const {
    std::printf("\nstorage-buffer loads | texel-buffer loads (us; fp16/tern = fp16 over the faster ternary path)\n");
    std::printf("%-26s %5s %5s %2s | %9s %9s %9s %6s | %9s %9s %9s %6s\n", "shape", "N", "K", "T", "tern", "tern dot",
                "fp16", "ratio", "tern", "tern dot", "fp16", "ratio");
    auto ratio = [](double f, double a, double b) {
      const double best = a > 0 && b > 0 ? std::min(a, b) : std::max(a, b);
      return f > 0 && best > 0 ? fmt(f / best) : std::string("-");
    };
    for (const Row& r : rows_)
      std::printf("%-26s %5u %5u %2u | %9.1f %9.1f %9.1f %6s | %9.1f %9.1f %9.1f %6s\n", r.label.c_str(), r.n, r.k,
                  r.t, r.tern_us, r.tern_dot_us, r.fp16_us, ratio(r.fp16_us, r.tern_us, r.tern_dot_us).c_str(),
                  r.tern_texel_us, r.tern_dot_texel_us, r.fp16_texel_us,
                  ratio(r.fp16_texel_us, r.tern_texel_us, r.tern_dot_texel_us).c_str());
  }

  std::vector<MatmulLoad> loads() const {
    if (dev_.info().texel_buffer_uint4) return {MatmulLoad::Storage, MatmulLoad::Texel};
    return {MatmulLoad::Storage};
  }

  static std::string fmt(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", v);
    return b;
  }

 private:
  Device& dev_;
  Options o_;
  RmsNormQuant norm_;
  std::vector<Row> rows_;
  std::vector<PrefillRow> prefill_rows_;
};

// The head alone (fp16 only, no ternary counterpart): 128256 x 2560 = 657 MB, several segments.
void head(Device& dev, int reps, uint32_t n = 128256) {
  const uint32_t k = 2560;
  Rng rng{42};
  std::vector<uint16_t> wh(size_t(n) * k);
  for (auto& v : wh) v = float_to_half(rng.uniform(-0.05f, 0.05f));
  std::vector<float> x(k);
  for (auto& v : x) v = rng.uniform(-2.0f, 2.0f);
  Buffer xb = upload(dev, x, "head x");
  Buffer y = dev.create_buffer(uint64_t(n) * 4, MemoryKind::DeviceLocal, "logits");
  // Checks some rows of y against `weight(row, i)` x.
  auto check = [&](const std::function<void(Recording&)>& call, const std::function<double(uint32_t, uint32_t)>& weight,
                   const char* what) {
    Recording rec(dev);
    call(rec);
    rec.submit_and_wait();
    std::vector<float> got(n);
    dev.download(y, got.data(), got.size() * 4);
    for (uint32_t r : checked_rows(n)) {
      double ref = 0, mag = 0;
      for (uint32_t i = 0; i < k; ++i) {
        const double p = weight(r, i) * x[i];
        ref += p;
        mag += std::fabs(p);
      }
      if (std::fabs(got[r] - ref) > 3e-5 * mag + 1e-6)
        throw Error(std::string(what) + ": output mismatch at row " + std::to_string(r));
    }
  };
  double fp16_us = 0;
  {
    Fp16MatrixGpu gw(dev, wh, n, k, "output head");
    Fp16Matmul op(dev);
    auto call = [&](Recording& rec) { op.record(rec, gw, xb.range(), 1, {y.range()}); };
    check(call, [&](uint32_t r, uint32_t i) { return double(half_to_float(wh[size_t(r) * k + i])); }, "fp16 head");
    const Timing tm = time_calls(dev, reps, call);
    std::printf("output head fp16 N=%u K=%u (%zu segments):\n", n, k, gw.segments().size());
    print_rate("fp16", tm, uint64_t(n) * k, gw.weight_bytes() + k * 4 + n * 4);
    fp16_us = tm.median_us;
  }
  const Int8Rows q = quantize_rows_int8(wh, n, k);
  Int8MatrixGpu gw(dev, q, "int8 output head");
  Int8Matmul op(dev);
  auto call = [&](Recording& rec) { op.record(rec, gw, xb.range(), 1, {y.range()}); };
  check(call, [&](uint32_t r, uint32_t i) { return double(q.q[size_t(r) * k + i]) * q.scales[r]; }, "int8 head");
  const Timing tm = time_calls(dev, reps, call);
  std::printf("output head int8 N=%u K=%u (%zu segments):\n", n, k, gw.segments().size());
  print_rate("int8", tm, uint64_t(n) * k, gw.weight_bytes() + k * 4 + n * 4);
  std::printf("  fp16 / int8 head time: %.2fx\n", fp16_us / tm.median_us);
}

// Sweeps rows per lane group and tokens per workgroup on the device's default lane layout
// (tuning aid: prints GPU time and process CPU time per call).
void tune(Device& dev, uint32_t n, uint32_t k, uint32_t t, bool fp16,
          std::vector<std::pair<uint32_t, uint32_t>> shapes = {}) {
  Rng rng{7};
  std::vector<float> x(size_t(t) * k);
  for (auto& v : x) v = rng.uniform(-2.0f, 2.0f);
  Buffer y = dev.create_buffer(uint64_t(t) * n * 4, MemoryKind::DeviceLocal, "tune output");
  const MatmulShape base = MatmulShape::pick(dev.info(), t, !fp16);
  std::printf("tune %s N=%u K=%u T=%u\n", fp16 ? "fp16" : "ternary", n, k, t);
  if (shapes.empty())
    for (uint32_t r : {8u, 16u, 32u, 64u})
      for (uint32_t tt : {1u, 4u, 8u, 16u})
        if (tt <= t && r * tt <= 256 && (t == 1 || tt > 1)) shapes.push_back({r, tt});
  if (fp16) {
    std::vector<uint16_t> wh(size_t(n) * k);
    for (auto& v : wh) v = float_to_half(rng.uniform(-0.05f, 0.05f));
    Fp16MatrixGpu gw(dev, wh, n, k, "tune fp16");
    Buffer xb = upload(dev, x, "tune x");
    for (auto [r, tt] : shapes) {
      MatmulShape s = base;
      s.rows = r;
      s.tokens = tt;
      Fp16Matmul op(dev, {.shape = s});
      const Timing tm = time_calls(dev, 5, [&](Recording& rec) { op.record(rec, gw, xb.range(), t, {y.range()}); });
      std::printf("  rows %2u tokens %u: %9.1f us  cpu %9.1f us\n", r, tt, tm.median_us, tm.cpu_us);
    }
    return;
  }
  std::vector<int8_t> w(size_t(n) * k);
  for (auto& v : w) v = int8_t(int(rng.next() % 3) - 1);
  TernaryMatrixGpu gw(dev, pack_ternary(w, n, k, 1.0f), "tune");
  const Quantized qx = quantize(x, t, k);
  Buffer xv = upload(dev, qx.values, "tune activations"), xm = upload(dev, qx.meta, "tune scales");
  const QuantizedActivations xa{xv.range(), xm.range(), k};
  for (TernaryDot dot : {TernaryDot::Swar})
    for (auto [r, tt] : shapes) {
      MatmulShape s = base;
      s.rows = r;
      s.tokens = tt;
      TernaryMatmul op(dev, {.dot = dot, .shape = s});
      const Timing tm = time_calls(dev, 25, [&](Recording& rec) { op.record(rec, gw, xa, t, {y.range()}); });
      std::printf("  %s rows %2u tokens %u: %9.1f us (min %9.1f)  cpu %9.1f us\n",
                  dot == TernaryDot::Swar ? "swar" : "dot ", r, tt, tm.median_us, tm.min_us, tm.cpu_us);
    }
}

// Sweeps GEMM shapes (rows x tokens per invocation, invocation grid, K block) for the ternary GEMM on
// both inner-product paths and for the FP16 GEMM at one size (tuning aid: GPU time and CPU time).
void tune_tiles(Device& dev, uint32_t n, uint32_t k, uint32_t t) {
  Rng rng{11};
  std::vector<float> x(size_t(t) * k);
  for (auto& v : x) v = rng.uniform(-2.0f, 2.0f);
  Buffer y = dev.create_buffer(uint64_t(t) * n * 4, MemoryKind::DeviceLocal, "tune output");
  const TernaryInputs tern(dev, rng, x, n, k, t, "tune");
  const Fp16Inputs half(dev, rng, x, n, k, t, "tune");
  const DeviceInfo& info = dev.info();
  auto report = [](const char* what, const GemmShape& s, const Timing& tm) {
    std::printf("  %-12s %2ux%-2u groups x %ux%u (x%u lanes, %u slices), K block %u: %10.1f us  cpu %10.1f us\n",
                what, s.row_groups, s.token_groups, s.rows, s.tokens, s.lanes, s.k_split, s.k_block, tm.median_us,
                tm.cpu_us);
  };
  std::printf("tune GEMM tiles N=%u K=%u T=%u\n", n, k, t);
  const uint32_t max_wg = std::min(256u, info.max_workgroup_invocations);
  for (uint32_t rg : {4u, 8u, 16u})
    for (uint32_t tg : {2u, 4u, 8u, 16u})
      for (uint32_t rows : {2u, 4u, 8u})
        for (uint32_t tokens : {2u, 4u})
          for (uint32_t split : {1u, 4u, 8u}) {
            const GemmShape s{.row_groups = rg, .token_groups = tg, .rows = rows, .tokens = tokens,
                              .k_block = split > 1 ? 1u : 2u, .k_split = split};
            if (s.workgroup() > max_wg || s.tile_tokens() > std::max(64u, t)) continue;
            for (bool dot : {false, true}) {
              if ((dot && !info.integer_dot_product) || s.ternary_shared_bytes(dot) > info.max_shared_memory) continue;
              TernaryMatmul op(dev, {.dot = dot ? TernaryDot::PackedInt8 : TernaryDot::Swar,
                                     .kernel = MatmulKernel::Gemm, .gemm_shape = s});
              report(dot ? "ternary dot" : "ternary swar", s,
                     time_calls(dev, 3, [&](Recording& rec) { op.record(rec, tern.gw, tern.xa, t, {y.range()}); }));
            }
            const uint32_t lanes = MatmulShape::pick(info, 1, false).lanes;
            GemmShape f = s;
            f.lanes = lanes;
            // as many invocations as with 8 lanes a group (float rows may be wider: float_row_lanes)
            f.row_groups = std::max(1u, s.row_groups * 8 / lanes);
            f.k_block = 1;
            f.k_split = 1;
            if (split > 1 || f.workgroup() > max_wg || f.fp16_shared_bytes() > info.max_shared_memory) continue;
            Fp16Matmul op(dev, {.kernel = MatmulKernel::Gemm, .gemm_shape = f});
            report("fp16", f,
                   time_calls(dev, 3, [&](Recording& rec) { op.record(rec, half.gw, half.xb.range(), t, {y.range()}); }));
          }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Kernel benchmarks: ternary GEMV/GEMM against FP16 on the 2B4T shapes (see the file's header)"};
  app.add_flag("--quick", o.quick, "Fewer shapes and repetitions");
  app.add_flag("--tune", o.tune, "Sweep the GEMV shapes");
  app.add_flag("--tune-gemm", o.tune_gemm, "Small GEMM tiles only (default load path)");
  app.add_flag("--head", o.head_only, "The 32000-row output head, fp16 and int8");
  std::vector<uint32_t> gemv, tiles;
  app.add_option("--gemv", gemv, "One ternary GEMV shape at the default tile: N K")
      ->expected(2)
      ->check(CLI::Range(1u, 1u << 20));
  app.add_flag("--prefill", o.prefill, "GEMV against the tiled and matrix-unit GEMMs on the 2B4T projections");
  app.add_option("--prefill-tokens", o.prefill_tokens, "... at these tokens (implies --prefill; default 64 and 512)")
      ->check(CLI::Range(1u, 4096u));
  app.add_option("--tune-tiles", tiles, "A sweep of GEMM tile shapes at one size: N K T")
      ->expected(3)
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--reps", o.reps, "Repetitions a timing")->check(CLI::Range(1, 100000));
  int device = -1;
  app.add_option("--device", device, "Vulkan device index from `ternvk devices`")->check(CLI::Range(0, 255));
  CLI11_PARSE(app, argc, argv);
  if (o.prefill_tokens) o.prefill = true;
  if (!gemv.empty()) std::tie(o.gemv_n, o.gemv_k) = std::tie(gemv[0], gemv[1]);
  if (!tiles.empty()) std::tie(o.tiles_n, o.tiles_k, o.tiles_t) = std::tie(tiles[0], tiles[1], tiles[2]);
  if (device >= 0) o.device = device;
  try {
    Instance instance;
    Device dev(instance, instance.select(o.device));
    if (!dev.info().timestamps) throw Error("device '" + dev.info().name + "' has no timestamps: nothing to measure");
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::localtime(&now));
    std::printf("device: %s (%s), %s\n", dev.info().name.c_str(), dev.info().driver_info.c_str(), date);
    std::printf("subgroup %u, fast int8 dot: %s, integer dot product: %s%s\n", dev.info().subgroup_size,
                dev.info().has_fast_int8_dot() ? "yes" : "no", dev.info().integer_dot_product ? "yes" : "no",
                dev.info().matrix_units_emulated ? ", matrix units: emulated (TERNVK_EMULATE_MATRIX_UNITS)" : "");
    {
      const MatmulShape g = MatmulShape::pick(dev.info(), 1, true), m = MatmulShape::pick(dev.info(), 8, true);
      std::printf("ternary shape: GEMV wg %u lanes %u rows %u; GEMV for 8 tokens wg %u lanes %u rows %u tokens %u\n",
                  g.workgroup, g.lanes, g.rows, m.workgroup, m.lanes, m.rows, m.tokens);
      const bool dot = dev.info().has_fast_int8_dot();
      const GemmShape tg = GemmShape::pick_ternary(dev.info(), dot, 13824, 512);
      std::printf("tiled GEMM (13824 rows, 512 tokens; %s; Auto uses it: %s): %u invocations, %u x %u tiles, K block %u\n\n",
                  dot ? "OpSDot" : "SWAR", prefers_tiled_gemm(dev.info()) ? "yes" : "no", tg.workgroup(),
                  tg.tile_rows(), tg.tile_tokens(), 64 * tg.k_block);
    }
    if (o.tune_gemm) {
      tune(dev, 6912, 2560, 8, false, {{16, 1}, {16, 2}, {8, 4}, {16, 4}, {32, 2}});
      return 0;
    }
    if (o.gemv_n) {
      const MatmulShape g = MatmulShape::pick(dev.info(), 1, true);
      tune(dev, o.gemv_n, o.gemv_k, 1, false, {{g.rows, 1}});
      return 0;
    }
    if (o.tiles_n) {
      tune_tiles(dev, o.tiles_n, o.tiles_k, o.tiles_t);
      return 0;
    }
    if (o.prefill) {
      Bench b(dev, o);
      for (uint32_t t : o.prefill_tokens ? std::vector<uint32_t>{o.prefill_tokens} : std::vector<uint32_t>{64, 512}) {
        b.prefill("qkv fused", 3840, 2560, t);
        b.prefill("attn o", 2560, 2560, t);
        b.prefill("gate+up fused", 13824, 2560, t);
        b.prefill("ffn down", 2560, 6912, t);
      }
      b.prefill_summary();
      return 0;
    }
    if (o.head_only) {
      head(dev, o.reps ? o.reps : 5, 32000);
      return 0;
    }
    if (o.tune) {
      tune(dev, 2560, 2560, 1, false);
      tune(dev, 6912, 2560, 16, false);
      tune(dev, 2560, 2560, 1, true);
      tune(dev, 2560, 2560, 16, true);
      return 0;
    }
    Bench b(dev, o);
    b.empty_dispatch();
    b.read_rate();
    if (o.quick) {
      b.matmul("attn q/o 2560x2560", 2560, 2560, 1);
      b.matmul("ffn up 6912x2560", 6912, 2560, 1);
      b.matmul("4096x14336", 4096, 14336, 1);
      b.matmul("ffn up, 8 tokens", 6912, 2560, 8);
      b.rmsnorm_quant(2560, 1);
    } else {
      b.matmul("attn q/o 2560x2560", 2560, 2560, 1);
      b.matmul("attn k/v 640x2560", 640, 2560, 1);
      b.matmul("qkv fused 3840x2560", 3840, 2560, 1);
      b.matmul("ffn gate/up 6912x2560", 6912, 2560, 1);
      b.matmul("gate+up fused 13824x2560", 13824, 2560, 1);
      b.matmul("ffn down 2560x6912", 2560, 6912, 1);
      b.matmul("4096x14336 (N=4096)", 4096, 14336, 1);
      b.matmul("14336x4096 (N=14336)", 14336, 4096, 1);
      for (uint32_t t : {2u, 4u, 8u, 32u}) b.matmul("ffn up, " + std::to_string(t) + " tokens", 6912, 2560, t);
      b.matmul("4096x14336, 8 tokens", 4096, 14336, 8);
      b.rmsnorm_quant(2560, 1);
      b.rmsnorm_quant(6912, 1);
      b.rmsnorm_quant(2560, 32);
      head(dev, o.reps ? o.reps : 5);
    }
    b.summary();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}

// The matrix-unit GEMMs' self-checks (matrix_unit_gemm.h): each runs a candidate GEMM on small
// matrices that are not tile multiples, whole and in segments, storing then accumulating into
// columns of a wider output, and compares with what the tests cover (the tiled ternary GEMM's bits;
// a CPU sum within the FP16 bound).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/half.h"
#include "runtime/ops/fp16_matmul.h"
#include "runtime/ops/matrix_unit_gemm.h"
#include "runtime/ops/ternary_gemm.h"
#include "runtime/ops/ternary_matmul.h"

namespace ternvk::ops {

namespace {

// Runs the self-check's matrix_unit_gemm_agrees() pattern: each row width the tile can take on this
// device (the fill rule picks by matrix), each on the same GEMMs; a kernel that never finished is
// an error, not a "no".
template <typename CheckOneWidth>
bool check_every_width(Device& device, MatrixUnitOperands operands, const CheckOneWidth& check_width) {
  const uint64_t timeouts = device.waits_timed_out();
  try {
    for (const uint32_t matrices_n : MatrixUnitTile::row_choices(device.info(), operands))
      if (!check_width(MatrixUnitGemm(device, matrices_n))) return false;
    return true;
  } catch (const DeviceLostError&) {
    throw;
  } catch (const std::exception&) {
    // A kernel that never finished may still be running on the buffers just freed: not a "no".
    if (device.waits_timed_out() != timeouts) throw;
    return false;
  }
}

// The output both checks write into: each token's row of rows + 5 floats holds the matrix's outputs
// in columns 3 .. 3 + rows (as a fused output's columns); the other columns hold values the GEMM must
// leave alone.
struct CheckOutput {
  uint32_t stride, offset = 3;
  std::vector<float> y0;  // before the GEMM
  CheckOutput(uint32_t tokens, uint32_t rows) : stride(rows + 5), y0(size_t(tokens) * stride) {
    for (size_t i = 0; i < y0.size(); ++i) y0[i] = float(int(i % 17) - 8);
  }
  // `record(rec, y, epilogue)` recorded with Store, then with Accumulate, into a copy of y0 on the
  // device: what the output holds after both.
  template <typename Record>
  std::vector<float> store_then_accumulate(Device& device, const Record& record) const {
    const uint64_t bytes = y0.size() * 4;
    Buffer y = device.create_buffer(bytes, MemoryKind::DeviceLocal, "matrix-unit self-check output");
    device.upload(y, y0.data(), bytes);
    Recording rec(device);
    record(rec, MatmulOutput{y.range(), stride, offset}, Epilogue::Store);
    record(rec, MatmulOutput{y.range(), stride, offset}, Epilogue::Accumulate);
    rec.submit_and_wait();
    std::vector<float> out(y0.size());
    device.download(y, out.data(), bytes);
    return out;
  }
};

bool ternary_gemm_agrees_once(Device& device, const RecordTernaryGemm& candidate, const TernaryMatrixGpu& gw,
                              uint32_t tokens, std::mt19937& rng) {
  const uint32_t rows = gw.rows(), cols = gw.cols();

  const uint32_t words = QuantizedActivations{{}, {}, cols}.words_per_token();
  std::vector<uint32_t> values(size_t(tokens) * words, 0);
  std::vector<int32_t> meta(size_t(tokens) * 2);
  for (uint32_t t = 0; t < tokens; ++t) {
    int32_t sum = 0;
    for (uint32_t k = 0; k < cols; ++k) {
      const int q = int(rng() % 255) - 127;
      values[size_t(t) * words + k / 4] |= uint32_t(uint8_t(int8_t(q))) << (8 * (k % 4));
      sum += q;
    }
    meta[size_t(t) * 2] = std::bit_cast<int32_t>(0.01f * float(t + 1));
    meta[size_t(t) * 2 + 1] = sum;
  }
  Buffer xv = device.create_buffer(values.size() * 4, MemoryKind::DeviceLocal, "matrix-unit self-check activations");
  Buffer xm = device.create_buffer(meta.size() * 4, MemoryKind::DeviceLocal, "matrix-unit self-check scales");
  device.upload(xv, values.data(), values.size() * 4);
  device.upload(xm, meta.data(), meta.size() * 4);
  const QuantizedActivations x{xv.range(), xm.range(), cols};

  const CheckOutput output(tokens, rows);
  const TernaryGemm tiled(device, device.info().integer_dot_product, std::nullopt, GemmUnits::Vector);
  const auto expect = output.store_then_accumulate(device, [&](Recording& rec, const MatmulOutput& y, Epilogue e) {
    tiled.record(rec, gw, x, tokens, y, output.stride, e);
  });
  const auto got = output.store_then_accumulate(device, [&](Recording& rec, const MatmulOutput& y, Epilogue e) {
    candidate(rec, gw, x, tokens, y, output.stride, e);
  });
  return std::memcmp(expect.data(), got.data(), expect.size() * 4) == 0;
}

}  // namespace

bool ternary_gemm_agrees_with_tiled(Device& device, const RecordTernaryGemm& candidate) {
  constexpr uint32_t rows = 200, cols = 320;  // no tile multiple; K of 5 chunks
  std::mt19937 rng(20261205);
  std::vector<int8_t> w(size_t(rows) * cols);
  for (auto& v : w) v = int8_t(int(rng() % 3) - 1);
  const PackedTernaryMatrix packed = pack_ternary(w, rows, cols, 0.37f);
  // Whole, and in segments of 64 rows (80 bytes each: four dispatches, row bases 0 .. 192).
  const TernaryMatrixGpu whole(device, packed, "matrix-unit self-check weights");
  const TernaryMatrixGpu segmented(device, packed, "matrix-unit self-check weights (segments)", 64 * 80);
  // 70 tokens (two token tiles, the second partial) and 20 (a smaller tile of its own).
  for (uint32_t tokens : {70u, 20u})
    for (const TernaryMatrixGpu* gw : {&whole, &segmented})
      if (!ternary_gemm_agrees_once(device, candidate, *gw, tokens, rng)) return false;
  return true;
}

bool matrix_unit_gemm_agrees(Device& device) {
  if (!device.info().has_int8_matrix_unit()) return false;
  return device.self_check("ternary_gemm_matrix_unit", [&] {
    return check_every_width(device, MatrixUnitOperands::Int8, [&](const MatrixUnitGemm& units) {
      return ternary_gemm_agrees_with_tiled(device, [&](Recording& rec, const TernaryMatrixGpu& w,
                                                        const QuantizedActivations& x, uint32_t tokens,
                                                        const MatmulOutput& y, uint32_t y_stride, Epilogue e) {
        units.record(rec, w, x, tokens, y, y_stride, e);
      });
    });
  });
}

namespace {

bool fp16_gemm_within_bound_once(Device& device, const RecordFp16Gemm& candidate, const Fp16MatrixGpu& gw,
                                 const std::vector<uint16_t>& halves, uint32_t tokens, std::mt19937& rng) {
  const uint32_t rows = gw.rows(), cols = gw.cols();
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  std::vector<float> x(size_t(tokens) * cols);
  for (auto& v : x) v = uniform(rng);
  Buffer gx = device.create_buffer(x.size() * 4, MemoryKind::DeviceLocal, "fp16 matrix-unit self-check activations");
  device.upload(gx, x.data(), x.size() * 4);

  const CheckOutput output(tokens, rows);
  const uint32_t stride = output.stride, offset = output.offset;
  const std::vector<float>& y0 = output.y0;
  const auto got = output.store_then_accumulate(device, [&](Recording& rec, const MatmulOutput& y, Epilogue e) {
    candidate(rec, gw, gx.range(), tokens, y, stride, e);
  });

  for (uint32_t t = 0; t < tokens; ++t)
    for (uint32_t c = 0; c < stride; ++c) {
      const size_t i = size_t(t) * stride + c;
      if (c < offset || c >= offset + rows) {
        if (std::memcmp(&got[i], &y0[i], 4) != 0) return false;
        continue;
      }
      const uint32_t r = c - offset;
      double sum = 0, abs_sum = 0, abs_w = 0;
      for (uint32_t k = 0; k < cols; ++k) {
        const double w = half_to_float(halves[size_t(r) * cols + k]), xv = x[size_t(t) * cols + k];
        sum += w * xv;
        abs_sum += std::fabs(w * xv);
        abs_w += std::fabs(w);
      }
      // Stored v, then v + v' (each within the bound), rounded once more.
      const double want = 2 * sum;
      const double tolerance = 2 * fp16_gemm_error_bound(cols, abs_sum, abs_w) + std::ldexp(std::fabs(want), -23);
      if (!(std::fabs(double(got[i]) - want) <= tolerance)) return false;
    }
  return true;
}

}  // namespace

double fp16_gemm_error_bound(uint32_t k, double abs_sum, double abs_w) {
  const double rounding = std::ldexp(1.0, -10) * abs_sum + std::ldexp(1.0, -14) * abs_w;
  const double terms = abs_sum + rounding;  // sum of |w_k x^_k|
  return rounding + 3.0 * double(k + 1) * std::ldexp(1.0, -23) * terms;
}

bool fp16_gemm_within_bound(Device& device, const RecordFp16Gemm& candidate) {
  // Rows padded from 324 to 328 halves; K of five 64-element chunks and a partial sixth; no tile multiple.
  constexpr uint32_t rows = 200, cols = 324;
  std::mt19937 rng(20261206);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<uint16_t> halves(size_t(rows) * cols);
  for (auto& h : halves) h = float_to_half(uniform(rng));
  // Whole, and in segments of 64 rows (four dispatches, row bases 0 .. 192).
  const Fp16MatrixGpu whole(device, halves, rows, cols, "fp16 matrix-unit self-check weights");
  const Fp16MatrixGpu segmented(device, halves, rows, cols, "fp16 matrix-unit self-check weights (segments)",
                                uint64_t(64) * 328 * 2);
  // 70 tokens (two token tiles, the second partial) and 20 (a smaller tile of its own).
  for (uint32_t tokens : {70u, 20u})
    for (const Fp16MatrixGpu* gw : {&whole, &segmented})
      if (!fp16_gemm_within_bound_once(device, candidate, *gw, halves, tokens, rng)) return false;
  return true;
}

bool fp16_matrix_unit_gemm_agrees(Device& device) {
  if (!device.info().has_fp16_matrix_unit()) return false;
  return device.self_check("fp16_gemm_matrix_unit", [&] {
    return check_every_width(device, MatrixUnitOperands::Fp16, [&](const MatrixUnitGemm& units) {
      return fp16_gemm_within_bound(device, [&](Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens,
                                                const MatmulOutput& y, uint32_t y_stride, Epilogue e) {
        units.record(rec, w, x, tokens, y, y_stride, e);
      });
    });
  });
}

}  // namespace ternvk::ops

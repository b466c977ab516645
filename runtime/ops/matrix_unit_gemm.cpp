#include "runtime/ops/matrix_unit_gemm.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/ops/ternary_gemm.h"
#include "runtime/ops/ternary_matmul.h"

namespace ternvk::ops {
namespace {

void require_unit(const DeviceInfo& info) {
  if (!info.has_int8_matrix_unit())
    throw Error("matrix-unit GEMM: device '" + info.name +
                "' offers no int8 x int8 -> int32 cooperative matrices (VK_NV_cooperative_matrix with shaderInt8 "
                "and the Vulkan memory model); use the tiled GEMM");
}

}  // namespace

uint64_t MatrixUnitTile::shared_bytes() const {
  // ternary_gemm_matrix_unit.comp: (BN + BM) rows of KCHUNKS * 4 + 1 uvec4, or BM rows of BN / 4 + 1.
  const uint64_t tiles = uint64_t(tile_rows() + tile_tokens()) * (k_chunks * 4 + 1) * 16;
  const uint64_t accumulators = uint64_t(tile_tokens()) * (tile_rows() / 4 + 1) * 16;
  return std::max(tiles, accumulators);
}

namespace {
// The fewest accumulators across rows the fill rule shrinks a subgroup to: 32 rows' worth (tiles of 64
// rows with 2 subgroups across them, 16x8 matrices), or one matrix where a matrix is wider.
uint32_t min_matrices_n(const MatrixUnitShape& unit) { return std::max(1u, 32 / unit.n); }
}  // namespace

MatrixUnitTile MatrixUnitTile::pick(const DeviceInfo& info, uint32_t tokens, uint32_t rows,
                                    std::optional<uint32_t> max_matrices_n) {
  require_unit(info);
  MatrixUnitTile t;
  t.unit = info.int8_matrix_unit;
  // The subgroup the pipeline gets: 32 (clamped to the device's range), required where the device can
  // require one, which also makes the pipeline ask for full subgroups (the gl_SubgroupID mapping and
  // the matrix operations need them); else the device's one fixed size.
  if (info.subgroup_size_control) {
    t.subgroup = std::clamp(32u, info.min_subgroup_size, info.max_subgroup_size);
    t.required_subgroup_size = t.subgroup;
  } else {
    t.subgroup = info.subgroup_size;
  }
  t.matrices_m = std::max(1u, 32 / t.unit.m);
  t.matrices_n = std::max(1u, 64 / t.unit.n);
  while (t.matrices_m > 1 && uint64_t(t.tile_tokens()) >= 2ull * std::max(tokens, 1u)) t.matrices_m /= 2;
  while (t.shared_bytes() > info.max_shared_memory && t.k_chunks > 1) --t.k_chunks;
  while (t.shared_bytes() > info.max_shared_memory && t.matrices_n > 1) t.matrices_n /= 2;
  while (t.workgroup() > info.max_workgroup_invocations && t.subgroups_m > 1) t.subgroups_m /= 2;
  while (t.workgroup() > info.max_workgroup_invocations && t.subgroups_n > 1) t.subgroups_n /= 2;
  if (max_matrices_n) {
    t.matrices_n = std::max(1u, std::min(t.matrices_n, *max_matrices_n));
  } else {
    auto workgroups = [&] {
      const uint64_t tokens_1 = std::max(tokens, 1u);
      return (uint64_t(rows) + t.tile_rows() - 1) / t.tile_rows() * ((tokens_1 + t.tile_tokens() - 1) / t.tile_tokens());
    };
    const uint64_t target = 2ull * info.assumed_compute_units();
    while (rows && t.matrices_n > min_matrices_n(t.unit) && workgroups() < target) t.matrices_n /= 2;
  }
  t.validate(info);
  return t;
}

std::vector<uint32_t> MatrixUnitTile::row_choices(const DeviceInfo& info) {
  // Shared memory caps the width per token tile (fewer tokens leave more room for rows); the fill
  // rule then halves it down to min_matrices_n. Token counts in powers of two meet every token tile.
  std::vector<uint32_t> choices;
  for (uint32_t tokens = 1; tokens <= (1u << 16); tokens *= 2) {
    const MatrixUnitTile t = pick(info, tokens);
    for (uint32_t n = t.matrices_n;; n /= 2) {
      if (std::find(choices.begin(), choices.end(), n) == choices.end()) choices.push_back(n);
      if (n <= min_matrices_n(t.unit)) break;
    }
  }
  std::sort(choices.rbegin(), choices.rend());
  return choices;
}

void MatrixUnitTile::validate(const DeviceInfo& info) const {
  require_unit(info);
  if (unit.m != info.int8_matrix_unit.m || unit.n != info.int8_matrix_unit.n || unit.k != info.int8_matrix_unit.k)
    throw Error("matrix-unit GEMM: a tile of " + std::to_string(unit.m) + "x" + std::to_string(unit.n) + "x" +
                std::to_string(unit.k) + " matrices; device '" + info.name + "' multiplies " +
                std::to_string(info.int8_matrix_unit.m) + "x" + std::to_string(info.int8_matrix_unit.n) + "x" +
                std::to_string(info.int8_matrix_unit.k));
  if (subgroups_m == 0 || subgroups_n == 0 || matrices_m == 0 || matrices_n == 0 || k_chunks == 0 || subgroup == 0 ||
      workgroup() > info.max_workgroup_invocations)
    throw Error("matrix-unit GEMM: invalid tile: " + std::to_string(subgroups_m) + " x " + std::to_string(subgroups_n) +
                " subgroups of " + std::to_string(subgroup) + " (at most " +
                std::to_string(info.max_workgroup_invocations) + " invocations on device '" + info.name + "'), " +
                std::to_string(matrices_m) + " x " + std::to_string(matrices_n) + " matrices each, K block " +
                std::to_string(k_chunks) + " chunks");
  const bool size_fixed = required_subgroup_size ? info.subgroup_size_control
                                                 : info.min_subgroup_size == info.max_subgroup_size;
  const uint32_t size = required_subgroup_size ? required_subgroup_size : info.subgroup_size;
  if (!size_fixed || size != subgroup)
    throw Error("matrix-unit GEMM: the tile assumes subgroups of " + std::to_string(subgroup) + " invocations; device '" +
                info.name + "' uses " + std::to_string(info.min_subgroup_size) + "-" +
                std::to_string(info.max_subgroup_size) + (info.subgroup_size_control ? "" : " and cannot require one"));
  if (shared_bytes() > info.max_shared_memory)
    throw Error("matrix-unit GEMM: a tile of " + std::to_string(tile_tokens()) + " tokens x " +
                std::to_string(tile_rows()) + " rows needs " + std::to_string(shared_bytes()) +
                " bytes of shared memory; device '" + info.name + "' offers " + std::to_string(info.max_shared_memory));
}

PipelineOptions MatrixUnitTile::pipeline_options(Epilogue epilogue) const {
  PipelineOptions po;
  po.constants = {{0, workgroup()},    {1, unit.m},     {2, unit.n},
                  {3, unit.k},         {4, subgroups_m}, {5, subgroups_n},
                  {6, static_cast<uint32_t>(epilogue)}, {7, matrices_m}, {8, matrices_n},
                  {9, k_chunks},       {10, subgroup}};
  po.required_subgroup_size = required_subgroup_size;
  return po;
}

void MatrixUnitGemm::record(Recording& rec, const TernaryMatrixGpu& w, const QuantizedActivations& x, uint32_t tokens,
                            const MatmulOutput& y, uint32_t y_stride, Epilogue epilogue) const {
  const MatrixUnitTile t = tile(tokens, w.rows());
  const Pipeline& pipeline = device_.pipeline("ternary_gemm_matrix_unit", t.pipeline_options(epilogue));
  record_ternary_gemm_dispatches(rec, pipeline, w, x, tokens, y, y_stride, epilogue, t.tile_rows(), t.tile_tokens());
}

MatrixUnitTile MatrixUnitGemm::tile(uint32_t tokens, uint32_t rows) const {
  return MatrixUnitTile::pick(device_.info(), tokens, rows, matrices_n_);
}

namespace {

bool gemm_agrees_once(Device& device, const RecordTernaryGemm& candidate, const TernaryMatrixGpu& gw, uint32_t tokens,
                      std::mt19937& rng) {
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

  // Columns 3 .. 3 + rows of rows of rows + 5 floats, as a fused output's (the rest must stay y0's).
  const uint32_t stride = rows + 5, offset = 3;
  const uint64_t y_bytes = uint64_t(tokens) * stride * 4;
  std::vector<float> y0(size_t(tokens) * stride);
  for (size_t i = 0; i < y0.size(); ++i) y0[i] = float(int(i % 17) - 8);
  auto run = [&](auto&& record) {
    Buffer y = device.create_buffer(y_bytes, MemoryKind::DeviceLocal, "matrix-unit self-check output");
    device.upload(y, y0.data(), y_bytes);
    Recording rec(device);
    record(rec, MatmulOutput{y.range(), stride, offset}, Epilogue::Store);
    record(rec, MatmulOutput{y.range(), stride, offset}, Epilogue::Accumulate);
    rec.submit_and_wait();
    std::vector<float> out(y0.size());
    device.download(y, out.data(), y_bytes);
    return out;
  };
  const TernaryGemm tiled(device, device.info().integer_dot_product, std::nullopt, GemmUnits::Vector);
  const auto expect = run([&](Recording& rec, const MatmulOutput& y, Epilogue e) {
    tiled.record(rec, gw, x, tokens, y, stride, e);
  });
  const auto got = run([&](Recording& rec, const MatmulOutput& y, Epilogue e) {
    candidate(rec, gw, x, tokens, y, stride, e);
  });
  return std::memcmp(expect.data(), got.data(), y_bytes) == 0;
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
      if (!gemm_agrees_once(device, candidate, *gw, tokens, rng)) return false;
  return true;
}

bool matrix_unit_gemm_agrees(Device& device) {
  if (!device.info().has_int8_matrix_unit()) return false;
  return device.self_check("ternary_gemm_matrix_unit", [&] {
    const uint64_t timeouts = device.waits_timed_out();
    try {
      // Each row width the tile can take (the fill rule picks by matrix), each on the same GEMMs.
      for (const uint32_t matrices_n : MatrixUnitTile::row_choices(device.info())) {
        const MatrixUnitGemm units(device, matrices_n);
        const bool agrees = ternary_gemm_agrees_with_tiled(device, [&](Recording& rec, const TernaryMatrixGpu& w,
                                                                       const QuantizedActivations& x, uint32_t tokens,
                                                                       const MatmulOutput& y, uint32_t y_stride,
                                                                       Epilogue e) {
          units.record(rec, w, x, tokens, y, y_stride, e);
        });
        if (!agrees) return false;
      }
      return true;
    } catch (const DeviceLostError&) {
      throw;
    } catch (const std::exception&) {
      // A kernel that never finished may still be running on the buffers just freed: not a "no".
      if (device.waits_timed_out() != timeouts) throw;
      return false;
    }
  });
}

}  // namespace ternvk::ops

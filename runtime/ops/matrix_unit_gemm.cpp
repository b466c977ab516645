#include "runtime/ops/matrix_unit_gemm.h"

#include <algorithm>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/ops/fp16_gemm.h"
#include "runtime/ops/fp16_matmul.h"
#include "runtime/ops/op_checks.h"
#include "runtime/ops/ternary_gemm.h"

namespace ternvk::ops {
namespace {

const MatrixUnitShape& device_unit(const DeviceInfo& info, MatrixUnitOperands operands) {
  return operands == MatrixUnitOperands::Fp16 ? info.fp16_matrix_unit : info.int8_matrix_unit;
}

void require_unit(const DeviceInfo& info, MatrixUnitOperands operands) {
  if (device_unit(info, operands).any()) return;
  if (operands == MatrixUnitOperands::Fp16)
    throw Error("matrix-unit GEMM: device '" + info.name +
                "' offers no fp16 x fp16 -> fp32 cooperative matrices (VK_NV_cooperative_matrix with shaderFloat16 "
                "and the Vulkan memory model); use the tiled GEMM");
  throw Error("matrix-unit GEMM: device '" + info.name +
              "' offers no int8 x int8 -> int32 cooperative matrices (VK_NV_cooperative_matrix with shaderInt8 "
              "and the Vulkan memory model); use the tiled GEMM");
}

}  // namespace

uint64_t MatrixUnitTile::shared_bytes() const {
  // gemm_matrix_unit.comp: (BN + BM) rows of KCHUNKS * 64 elements + 1 uvec4, or BM rows of BN / 4 + 1.
  const uint64_t tiles = uint64_t(tile_rows() + tile_tokens()) * (k_chunks * 4 * element_bytes() + 1) * 16;
  const uint64_t accumulators = uint64_t(tile_tokens()) * (tile_rows() / 4 + 1) * 16;
  return std::max(tiles, accumulators);
}

namespace {
// The fewest accumulators across rows the fill rule shrinks a subgroup to: 32 rows' worth (tiles of 64
// rows with 2 subgroups across them, 16x8 matrices), or one matrix where a matrix is wider.
uint32_t min_matrices_n(const MatrixUnitShape& unit) { return std::max(1u, 32 / unit.n); }
}  // namespace

MatrixUnitTile MatrixUnitTile::pick(const DeviceInfo& info, uint32_t tokens, uint32_t rows,
                                    std::optional<uint32_t> max_matrices_n, MatrixUnitOperands operands) {
  require_unit(info, operands);
  MatrixUnitTile t;
  t.operands = operands;
  t.unit = device_unit(info, operands);
  t.emulated = info.matrix_units_emulated;
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

std::vector<uint32_t> MatrixUnitTile::row_choices(const DeviceInfo& info, MatrixUnitOperands operands) {
  // Shared memory caps the width per token tile (fewer tokens leave more room for rows); the fill
  // rule then halves it down to min_matrices_n. Token counts in powers of two meet every token tile.
  std::vector<uint32_t> choices;
  for (uint32_t tokens = 1; tokens <= (1u << 16); tokens *= 2) {
    const MatrixUnitTile t = pick(info, tokens, 0, std::nullopt, operands);
    for (uint32_t n = t.matrices_n;; n /= 2) {
      if (std::find(choices.begin(), choices.end(), n) == choices.end()) choices.push_back(n);
      if (n <= min_matrices_n(t.unit)) break;
    }
  }
  std::sort(choices.rbegin(), choices.rend());
  return choices;
}

void MatrixUnitTile::validate(const DeviceInfo& info) const {
  require_unit(info, operands);
  const MatrixUnitShape& own = device_unit(info, operands);
  if (unit.m != own.m || unit.n != own.n || unit.k != own.k)
    throw Error("matrix-unit GEMM: a tile of " + std::to_string(unit.m) + "x" + std::to_string(unit.n) + "x" +
                std::to_string(unit.k) + " matrices; device '" + info.name + "' multiplies " + std::to_string(own.m) +
                "x" + std::to_string(own.n) + "x" + std::to_string(own.k));
  // The shader's addressing: k a whole uvec4 of elements dividing a 64-element chunk, n whole uvec4 of
  // accumulators (what pick_int8_matrix_unit / pick_fp16_matrix_unit take from the driver).
  const uint32_t per_uvec4 = 16 / element_bytes();
  if (unit.k == 0 || unit.k % per_uvec4 != 0 || 64 % unit.k != 0 || unit.n == 0 || unit.n % 4 != 0 || unit.m == 0)
    throw Error("matrix-unit GEMM: " + std::to_string(unit.m) + "x" + std::to_string(unit.n) + "x" +
                std::to_string(unit.k) + " matrices do not fit the kernel (k a multiple of " +
                std::to_string(per_uvec4) + " dividing 64, n a multiple of 4)");
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

uint64_t MatrixUnitTile::emulated_loop_iterations(uint32_t cols) const {
  // gemm_matrix_unit.comp (EMULATED): per K block, the loads and the staging (counted as loops, in
  // case they are not unrolled) and the multiplies of KK (k steps) of each accumulator matrix, each a
  // loop over a lane's elements; the accumulators' zeroing and store; the epilogue. On lavapipe results
  // first went wrong between estimates of 58,093 (right) and 60,863 (wrong) against its 65,535: the
  // estimate counts up to ~13% low, so the budget (half the limit) leaves a margin of ~1.8x.
  // Staged uvec4 of a row in all and a K block (KB_VEC): fp16 rows are padded to 8 halves, int8 ones
  // to 64-element chunks.
  const uint64_t per_uvec4 = 16 / element_bytes(), pad = operands == MatrixUnitOperands::Fp16 ? 8 : 64;
  const uint64_t staged_per_row = uint64_t(k_chunks) * 64 / per_uvec4;
  const uint64_t staged_row = (uint64_t(cols) + pad - 1) / pad * pad / per_uvec4;
  const uint64_t blocks = (staged_row + staged_per_row - 1) / staged_per_row;
  const uint64_t k_steps = uint64_t(k_chunks) * 64 / unit.k;
  const uint64_t matrices = uint64_t(matrices_m) * matrices_n;
  const uint64_t per_lane = (uint64_t(unit.m) * unit.n + subgroup - 1) / subgroup;
  const uint64_t tile = uint64_t(tile_tokens()) * tile_rows(), wg = workgroup();
  const uint64_t global_loads = operands == MatrixUnitOperands::Fp16 ? tile_rows() * staged_per_row
                                                                     : uint64_t(tile_rows()) * k_chunks;
  const uint64_t loads = (global_loads + wg - 1) / wg + (tile_tokens() * staged_per_row + wg - 1) / wg;
  return blocks * (1 + 2 * loads + k_steps * (1 + matrices * (1 + per_lane))) + 2 * matrices * (1 + per_lane) +
         (tile + wg - 1) / wg;
}

std::string MatrixUnitTile::why_not_run(uint32_t cols, const std::string& name) const {
  if (!emulated) return "";
  const uint64_t iterations = emulated_loop_iterations(cols);
  if (iterations <= kShaderLoopBudget) return "";
  return "matrix-unit GEMM of " + name + " on emulated units: K = " + std::to_string(cols) + " takes " +
         std::to_string(iterations) + " loop iterations an invocation, over the budget of " +
         std::to_string(kShaderLoopBudget) +
         " (emulated units are for tests: unset TERNVK_EMULATE_MATRIX_UNITS, or ask for the tiled GEMM with "
         "--gemm-units vector)";
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
  if (const std::string why = t.why_not_run(w.cols(), w.name()); !why.empty()) throw Error(why);
  const Pipeline& pipeline = device_.pipeline(t.shader(), t.pipeline_options(epilogue));
  record_ternary_gemm_dispatches(rec, pipeline, w, x, tokens, y, y_stride, epilogue, t.tile_rows(), t.tile_tokens());
}

void MatrixUnitGemm::record(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens,
                            const MatmulOutput& y, uint32_t y_stride, Epilogue epilogue) const {
  if (w.cols() % 4 != 0 || x.offset % 16 != 0)
    throw Error("fp16 matrix-unit GEMM of " + w.name() + ": needs K % 4 == 0 and the input at a multiple of 16 bytes (K " +
                std::to_string(w.cols()) + ", offset " + std::to_string(x.offset) + ")");
  const MatrixUnitTile t = tile(tokens, w.rows(), MatrixUnitOperands::Fp16);
  if (const std::string why = t.why_not_run(w.cols(), w.name()); !why.empty()) throw Error(why);
  const Pipeline& pipeline = device_.pipeline(t.shader(), t.pipeline_options(epilogue));
  record_fp16_gemm_dispatches(rec, pipeline, w, x, tokens, y, y_stride, epilogue, t.tile_rows(), t.tile_tokens());
}

MatrixUnitTile MatrixUnitGemm::tile(uint32_t tokens, uint32_t rows, MatrixUnitOperands operands) const {
  return MatrixUnitTile::pick(device_.info(), tokens, rows, matrices_n_, operands);
}

}  // namespace ternvk::ops

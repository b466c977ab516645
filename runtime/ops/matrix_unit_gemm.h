// GEMMs for prefill on the GPU's matrix units (shaders/gemm_matrix_unit.comp, VK_NV_cooperative_matrix):
//  - ternary: int8 x int8 -> int32 matrices. Same inputs and results as the tiled GEMM, bit for
//    bit: the sums are exact integers and the float epilogue is shared.
//  - FP16 baseline: fp16 x fp16 -> fp32 matrices, the activations rounded to fp16 while staged. Same
//    inputs and outputs as the tiled FP16 GEMM, not its bits: within fp16 rounding of the activations
//    plus fp32 rounding of the sums (fp16_gemm_within_bound states the bound). Prompt chunks only
//    (Fp16MatmulOptions::gemm_units), so batched decode keeps each sequence's bits.
//
// No CPU device has matrix units; tests here run the same kernels with the matrix operations emulated
// on the shader cores (TERNVK_EMULATE_MATRIX_UNITS): all of them but the units' own loads and
// multiplies. Before a GEMM uses them, matrix_unit_gemm_agrees() / fp16_matrix_unit_gemm_agrees() run
// them once per device on small GEMMs that are not tile multiples and compare every output with the
// tiled GEMM's bits (ternary) or with a CPU sum within the bound (FP16), the comparisons the tests
// show passing and failing here; a device where they fail keeps the tiled GEMM.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/ternary_gemm.h"
#include "runtime/ops/ternary_matrix.h"

namespace ternvk::ops {

class Fp16MatrixGpu;

// How the matrix-unit GEMM tiles the output (its specialization constants): SG_M x SG_N subgroups,
// each holding FM x FN accumulator matrices of the device's MatrixUnitShape (m tokens x n rows).
struct MatrixUnitTile {
  MatrixUnitOperands operands = MatrixUnitOperands::Int8;
  MatrixUnitShape unit;        // the device's multiply of those operands (m x n x k)
  uint32_t subgroups_m = 2;    // subgroups across the tile's tokens
  uint32_t subgroups_n = 2;    // ... and across its rows
  uint32_t matrices_m = 2;     // accumulators a subgroup holds across tokens
  uint32_t matrices_n = 8;     // ... and across rows
  uint32_t k_chunks = 2;       // 64-element chunks per staged K block
  uint32_t subgroup = 32;      // invocations per subgroup
  uint32_t required_subgroup_size = 0;  // set where the device's subgroup size varies
  bool emulated = false;       // the device's units are emulated: the *_emulated shader (device_info.h)

  uint32_t workgroup() const { return subgroup * subgroups_m * subgroups_n; }
  uint32_t tile_tokens() const { return subgroups_m * matrices_m * unit.m; }
  uint32_t tile_rows() const { return subgroups_n * matrices_n * unit.n; }
  uint32_t element_bytes() const { return operands == MatrixUnitOperands::Fp16 ? 2 : 1; }
  const char* shader() const {
    if (operands == MatrixUnitOperands::Fp16)
      return emulated ? "fp16_gemm_matrix_unit_emulated" : "fp16_gemm_matrix_unit";
    return emulated ? "ternary_gemm_matrix_unit_emulated" : "ternary_gemm_matrix_unit";
  }
  // Bytes of shared memory the kernel declares: the staged tiles or the accumulators, the larger.
  uint64_t shared_bytes() const;

  // For `tokens` tokens on this device: 2 x 2 subgroups of 32 x 64 (tokens x rows; 64 x 128 tiles
  // with 16 x 8 matrices), K blocks of 128; the tokens a subgroup holds halve while the tile would
  // hold twice `tokens`; the K block, then the rows a subgroup holds, shrink to fit shared memory.
  // Given the matrix's `rows`, the rows a subgroup holds also halve (to tiles of 64 rows at least)
  // while the GEMM would have fewer than two workgroups a compute unit: one workgroup alone on a
  // compute unit stages, then multiplies, and nothing overlaps the two (2B4T's 2560-row matrices at
  // 512 tokens: 160 workgroups of 128 rows on the H200's 132 SMs, 320 of 64).
  // `max_matrices_n` replaces that rule by a cap (the self-check and bench run each width; a width
  // that does not fit shared memory at this many tokens is cut to the one pick() would use there).
  // fp16 operands take twice the shared memory a K block. Throws when the device has no matrix unit
  // for `operands`.
  static MatrixUnitTile pick(const DeviceInfo& info, uint32_t tokens, uint32_t rows = 0,
                             std::optional<uint32_t> max_matrices_n = std::nullopt,
                             MatrixUnitOperands operands = MatrixUnitOperands::Int8);
  // Every `matrices_n` that pick() can return on this device, at any tokens and rows, largest first:
  // the self-check runs each, capped as above, at both of its token counts.
  static std::vector<uint32_t> row_choices(const DeviceInfo& info,
                                           MatrixUnitOperands operands = MatrixUnitOperands::Int8);
  // Throws naming the limit when this tile does not fit the device (or it has no matrix unit).
  void validate(const DeviceInfo& info) const;
  // Emulated units (`emulated`): the loop iterations of one invocation for a K of `cols` elements,
  // which the GEMMs keep within kShaderLoopBudget (op_checks.h) or refuse by name.
  uint64_t emulated_loop_iterations(uint32_t cols) const;
  // Why this tile cannot multiply the matrix `name` of K = `cols` (emulated units over the budget), or "".
  std::string why_not_run(uint32_t cols, const std::string& name) const;
  PipelineOptions pipeline_options(Epilogue epilogue) const;
};

class MatrixUnitGemm {
 public:
  // `matrices_n`: the most accumulators a subgroup holds across rows, instead of the fill rule (the
  // self-check and bench run each of MatrixUnitTile::row_choices).
  explicit MatrixUnitGemm(Device& device, std::optional<uint32_t> matrices_n = std::nullopt)
      : device_(device), matrices_n_(matrices_n) {}
  // y (row stride `y_stride` floats) = or += W x for `tokens` tokens; arguments already checked.
  void record(Recording& rec, const TernaryMatrixGpu& w, const QuantizedActivations& x, uint32_t tokens,
              const MatmulOutput& y, uint32_t y_stride, Epilogue epilogue) const;
  // The FP16 GEMM: x fp32 [tokens, K] with K % 4 == 0, starting at a multiple of 16 bytes.
  void record(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens, const MatmulOutput& y,
              uint32_t y_stride, Epilogue epilogue) const;
  MatrixUnitTile tile(uint32_t tokens, uint32_t rows, MatrixUnitOperands operands = MatrixUnitOperands::Int8) const;

 private:
  Device& device_;
  std::optional<uint32_t> matrices_n_;
};

// Records a ternary GEMM as TernaryGemm::record does (y row stride `y_stride` floats).
using RecordTernaryGemm = std::function<void(Recording& rec, const TernaryMatrixGpu& w, const QuantizedActivations& x,
                                             uint32_t tokens, const MatmulOutput& y, uint32_t y_stride,
                                             Epilogue epilogue)>;
// The self-check's comparison: runs `candidate` and the tiled GEMM (packed int8 dot where the device
// has it) on the same 200 x 320 matrix (whole, and in segments of 64 rows) for 70 and 20 tokens,
// y = W x then y += W x into columns of a wider output, and compares every output bit. Throws what
// the runs throw.
bool ternary_gemm_agrees_with_tiled(Device& device, const RecordTernaryGemm& candidate);

// ternary_gemm_agrees_with_tiled() for the matrix-unit GEMM, remembered per device
// (Device::self_check). False on a device without the matrix unit, and when the check fails to run
// (the reason is not kept: the tiled GEMM is the safe answer either way); a lost device still throws.
bool matrix_unit_gemm_agrees(Device& device);

// Records an FP16 GEMM as Fp16Gemm::record does (y row stride `y_stride` floats).
using RecordFp16Gemm = std::function<void(Recording& rec, const Fp16MatrixGpu& w, BufferRange x, uint32_t tokens,
                                          const MatmulOutput& y, uint32_t y_stride, Epilogue epilogue)>;
// Bound of the FP16 matrix-unit GEMM's error on one output y = sum_k w_k x_k of K terms (|x_k| <=
// 65504), given A = sum_k |w_k x_k| and W = sum_k |w_k|:
//  - each x_k rounded to fp16 in any rounding mode, subnormals possibly flushed (Vulkan allows it
//    without float controls): |x^_k - x_k| <= 2^-10 |x_k| + 2^-14, so R = 2^-10 A + 2^-14 W in all;
//  - the products of fp16 values are exact in fp32, and their magnitudes sum to A' <= A + R;
//  - K + 1 fp32 additions in any order, each off by at most one ulp (2^-23 relative, truncation
//    included) of a partial sum <= A': gamma_(K+1) A' <= 2 (K + 1) 2^-23 A' (for K < 4M); units that
//    add several products at once, aligned to the largest and truncated, lose at most one more ulp
//    a product: + (K + 1) 2^-23 A'.
// So |y^ - y| <= R + 3 (K + 1) 2^-23 (A + R).
double fp16_gemm_error_bound(uint32_t k, double abs_sum, double abs_w);
// The FP16 self-check's comparison: runs `candidate` on a 200 x 324 fp16 matrix (rows padded to 328,
// whole and in segments of 64 rows) for 70 and 20 tokens, y = W x then y += W x into columns of a
// wider output, against a CPU sum in double: each written output within twice the bound above plus
// the final add's rounding of 2 W x, every other column unchanged bit for bit. Throws what the runs
// throw.
bool fp16_gemm_within_bound(Device& device, const RecordFp16Gemm& candidate);
// fp16_gemm_within_bound() for the FP16 matrix-unit GEMM, remembered per device, as
// matrix_unit_gemm_agrees().
bool fp16_matrix_unit_gemm_agrees(Device& device);

}  // namespace ternvk::ops

// Tiled GEMMs for prefill (shaders/ternary_gemm.comp, shaders/fp16_gemm.comp): shared-memory tiles of
// K blocks, a block of outputs per invocation in registers, tile sizes as specialization constants
// picked from the device's subgroup sizes, workgroup and shared-memory limits. TernaryMatmul and
// Fp16Matmul record them instead of their GEMVs for many tokens (MatmulKernel); the results are
// those of the GEMVs: bit-identical for ternary (integer sums, the same float epilogue), and for
// FP16 the same fma sequence and lane reduction as the GPU GEMV shape (see fp16_gemm.comp).
#pragma once
#include <cstdint>
#include <optional>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/ternary_matrix.h"

namespace ternvk::ops {

// Which kernel a matmul records.
enum class MatmulKernel {
  Auto,  // the tiled GEMM from kGemmMinTokens tokens where prefers_tiled_gemm(), else the GEMV
  Gemv,  // the GEMV (ternary_matmul.comp, fp16_matmul.comp) for every token count
  Gemm,  // the tiled GEMM for every token count (tests force it on any device)
};

// Which units a prefill GEMM multiplies on.
enum class GemmUnits {
  Auto,         // MatrixUnits where the device has them and their self-check passes, else Vector
  Vector,       // ternary_gemm.comp (packed int8 dot products or SWAR), fp16_gemm.comp: shader cores
  MatrixUnits,  // gemm_matrix_unit.comp (matrix_unit_gemm.h); throws on a device without them
};
// What the matrix units multiply: the ternary GEMM's int8 codes and activations (exact integer
// sums) or the FP16 baseline's fp16 weights and activations (fp32 sums; matrix_unit_gemm.h).
enum class MatrixUnitOperands { Int8, Fp16 };
// Resolves `units` on this device (Auto runs the device's self-check of those operands once; not
// under injected faults, whose counts the check's submits and buffers would shift): true for the
// matrix units.
bool use_matrix_units(GemmUnits units, Device& device, MatrixUnitOperands operands = MatrixUnitOperands::Int8);

// Auto's switch point: below it the GEMV's token groups (up to 4 tokens per weight read) are
// enough, and batched decode steps of a few sequences keep the GEMV. Not yet tuned on a GPU.
inline constexpr uint32_t kGemmMinTokens = 32;

// Whether Auto uses the GEMM for many tokens: on GPUs. CPU devices (lavapipe) keep the GEMV, which
// was faster there at every prefill size measured (docs/performance.md).
bool prefers_tiled_gemm(const DeviceInfo& info);
// Resolves `kernel` for `tokens` tokens: true for the GEMM. A GEMM on `matrix_units` takes Auto's
// steps from kGemmMinTokens on any device (on a CPU device they can only be emulated ones: tests).
bool use_gemm(MatmulKernel kernel, const DeviceInfo& info, uint32_t tokens, bool matrix_units = false);

// How the GEMMs tile the output (their specialization constants 1..5, 7 and 8).
struct GemmShape {
  uint32_t row_groups = 16;   // invocations (fp16: lane groups) across a tile's rows
  uint32_t token_groups = 16; // ... and across its tokens
  uint32_t rows = 8;          // rows per invocation (fp16: per lane group), in registers
  uint32_t tokens = 4;        // tokens per invocation (fp16: per lane group)
  uint32_t k_block = 2;       // K block: ternary: 64-element chunks per slice; fp16: rounds of `lanes` chunks
  uint32_t lanes = 1;         // fp16 only: lanes of a group that split K, as in the GEMV (power of 2)
  uint32_t k_split = 1;       // ternary only: slices of the workgroup that split each K block

  uint32_t workgroup() const { return row_groups * token_groups * lanes * k_split; }
  uint32_t tile_rows() const { return row_groups * rows; }
  uint32_t tile_tokens() const { return token_groups * tokens; }
  // Bytes of shared memory the kernel declares with this shape.
  uint64_t ternary_shared_bytes(bool int8_dot) const;
  uint64_t fp16_shared_bytes() const;

  // The shape for a matrix of `rows` rows times `tokens` tokens on this device:
  //  - GPUs (subgroups wider than 8): 256 invocations. Ternary: 16 x 16 invocations of 8 rows x 4
  //    tokens (128 x 64 tiles), K blocks of 128; where that gives too few workgroups to fill a large
  //    GPU (prefill chunks of 64 tokens), 32 x 32 tiles held by 8 slices of 4 x 8 invocations that
  //    split each K block of 512. FP16: lane groups of the GEMV's lanes, 8 rows x 8 tokens each
  //    (64 x 32 tiles with 8 lanes; 32 x 16 with the 32 of float_row_lanes() on NVIDIA, in K blocks
  //    of one round where shared memory is 48 KiB), 4 x 4 when there are too few workgroups. Register blocks of
  //    32-64 sums read each staged weight and activation word for 4-8 products; large tiles keep a
  //    workgroup's share of L2 traffic low.
  //  - CPU devices (subgroup 8: lavapipe): the fastest shapes of a sweep there (ternary: 4 x 8
  //    invocations of 8 x 4; FP16: 8 x 4 groups of 4 x 4), for tests; Auto keeps the GEMV there.
  // Tokens per invocation shrink while a tile would hold twice `tokens`; the K block shrinks, then
  // (FP16) the tokens per group and the token groups, then the K split, then the rows per invocation,
  // until the tiles fit the device's shared memory.
  static GemmShape pick_ternary(const DeviceInfo& info, bool int8_dot, uint32_t rows, uint32_t tokens);
  static GemmShape pick_fp16(const DeviceInfo& info, uint32_t lanes, uint32_t rows, uint32_t tokens);
  // Check a shape against the device (tests and benchmarks pass their own); throw naming the limit.
  void validate_ternary(const DeviceInfo& info, bool int8_dot) const;
  void validate_fp16(const DeviceInfo& info) const;
  PipelineOptions pipeline_options(Epilogue epilogue) const;
};

// The dispatches of a ternary GEMM kernel (ternary_gemm.comp, gemm_matrix_unit.comp: the same
// bindings and push constants), one per segment of w, over tiles of `tile_rows` x `tile_tokens`.
void record_ternary_gemm_dispatches(Recording& rec, const Pipeline& pipeline, const TernaryMatrixGpu& w,
                                    const QuantizedActivations& x, uint32_t tokens, const MatmulOutput& y,
                                    uint32_t y_stride, Epilogue epilogue, uint32_t tile_rows, uint32_t tile_tokens);

// The ternary GEMM: TernaryMatmul::record checks the arguments and delegates here.
class TernaryGemm {
 public:
  TernaryGemm(Device& device, bool int8_dot, std::optional<GemmShape> shape, GemmUnits units = GemmUnits::Auto);

  GemmShape shape_for(uint32_t rows, uint32_t tokens) const;
  bool uses_matrix_units() const { return matrix_units_; }
  // The tiled kernel's shader (MatrixUnitTile::shader() names the matrix-unit ones).
  const char* shader_name() const { return dot_ ? "ternary_gemm_dot" : "ternary_gemm_swar"; }
  // y (row stride `y_stride` floats) = or += W x for `tokens` tokens; arguments already checked.
  void record(Recording& rec, const TernaryMatrixGpu& w, const QuantizedActivations& x, uint32_t tokens,
              const MatmulOutput& y, uint32_t y_stride, Epilogue epilogue) const;

 private:
  Device& device_;
  bool dot_ = false;
  std::optional<GemmShape> shape_;
  bool matrix_units_ = false;
};

}  // namespace ternvk::ops

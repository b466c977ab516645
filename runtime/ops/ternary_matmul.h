// Ternary GEMV / GEMM (shaders/ternary_matmul.comp): y[t, n] (=|+=) (sum_k w[n,k] q[t,k]) * scale[n] * s[t]
// with int32 accumulation, one dispatch per weight segment. The inner product is OpSDot where the
// device accelerates packed int8 dot products, else a 16-bit SWAR product; weights, activations and
// row info are read as storage buffers or, on CPU devices, as uniform texel buffers (MatmulLoad);
// the workgroup shape comes from the device's subgroup sizes (see MatmulShape::pick).
#pragma once
#include <cstdint>
#include <optional>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/ternary_gemm.h"
#include "runtime/ops/ternary_matrix.h"

namespace ternvk::ops {

// Whether the GEMVs and the fused layers run one subgroup a workgroup (their CPU shapes): on CPU
// devices, and on devices whose subgroups are at most 8 lanes. MatmulShape::pick and
// FusedLinearShape::pick both ask this one question: a fused layer's float rows split their sums over
// the separate GEMV's lanes, so that a token's bits do not depend on whether its step was fused.
bool uses_one_subgroup_workgroups(const DeviceInfo& info);
// Where it does: the subgroup those shapes make their whole workgroup (the widest where the pipeline can
// require it, else the narrowest the driver may give).
uint32_t one_subgroup_width(const DeviceInfo& info);

// The lanes that split one float row's K (fp16 and int8 rows: their sums are rounded, so every kernel
// that must give a row's bits -- the separate GEMV, the tiled GEMM's K split, the fused layers -- adds
// them in this one order). CPU shapes: the subgroup (the whole workgroup). GPUs: a whole subgroup up to
// 32 lanes (min_subgroup_size, so that the shuffle-xor butterfly never leaves a subgroup): each lane
// then reads 1/32 of a row, as a GPU GEMV does, and a float matrix splits into as many workgroups as a
// ternary one (docs/performance.md, "Float rows as wide as the subgroup"). Ternary sums are integers
// and take any lane count.
uint32_t float_row_lanes(const DeviceInfo& info);

// How ternary_matmul.comp and fp16_matmul.comp split the work (their specialization constants).
struct MatmulShape {
  uint32_t workgroup = 8;  // invocations per workgroup (spec id 0)
  uint32_t lanes = 8;      // lanes that split one row's K (spec id 1), a power of 2
  uint32_t rows = 16;      // rows per lane group (spec id 2)
  uint32_t tokens = 1;     // tokens per workgroup (spec id 3)
  bool subgroup_add = true;  // reduce with subgroupAdd (the workgroup is one subgroup of `lanes`), else shuffle-xor
  uint32_t required_subgroup_size = 0;  // 0: the driver's choice

  uint32_t rows_per_workgroup() const { return workgroup / lanes * rows; }

  // The shape for `tokens` tokens on this device:
  //  - all lanes of a subgroup fit one SIMD vector (max subgroup size <= 8: CPU devices such as
  //    lavapipe): workgroup = lanes = subgroup, many rows per workgroup (an activation load serves
  //    them all), no shared memory, no barriers;
  //  - wider subgroups (GPUs): ternary rows 8 lanes each, float rows float_row_lanes() (clusters
  //    reduced by shuffle-xor), 2 rows a lane group, 128-invocation workgroups.
  // `ternary` selects the ternary tuning (else fp16). Throws if the device lacks subgroup
  // arithmetic or shuffles.
  static MatmulShape pick(const DeviceInfo& info, uint32_t tokens, bool ternary);
  // Checks a shape against the device (tests and benchmarks pass their own).
  void validate(const DeviceInfo& info, const char* op) const;
  // The specialization constants (and required subgroup size) of this shape with `epilogue`,
  // shared by ternary_matmul.comp and fp16_matmul.comp.
  PipelineOptions pipeline_options(Epilogue epilogue) const;
};

// The work of one matmul dispatch (Recording's DispatchWork): `rows` weight rows of `row_bytes` each
// (with any per-row extras), `tokens` activation rows of `x_bytes` each, fp32 outputs (read as well
// when accumulating), tokens * rows * cols multiply-accumulates.
DispatchWork matmul_work(double rows, double row_bytes, double cols, double tokens, double x_bytes, bool accumulate);

// Throws when `y` cannot hold `n` columns of `tokens` rows at `stride` floats (what = the op's name).
void check_matmul_output(const std::string& what, const MatmulOutput& y, uint32_t tokens, uint32_t stride, uint32_t n);
// The checks of a matmul with fp32 activations x [tokens, k] and an output of n columns: tokens > 0,
// the columns fit the output row, x and y hold enough bytes. Returns the output row stride.
uint32_t check_dense_matmul_io(const std::string& what, uint32_t n, uint32_t k, BufferRange x, uint32_t tokens,
                               const MatmulOutput& y);

enum class TernaryDot {
  Auto,        // PackedInt8 where has_fast_int8_dot(), else Swar
  Swar,        // portable 16-bit SWAR products
  PackedInt8,  // OpSDot (needs shaderIntegerDotProduct, accelerated or not)
};

// How the matmuls read their weights (and the ternary one its activations and row info): the same
// bytes bound as storage buffers or as uniform texel buffers (R32G32B32A32_UINT views, texelFetch).
enum class MatmulLoad {
  Auto,     // Texel where prefers_texel_loads(), else Storage
  Storage,  // storage-buffer loads: the GPU default
  Texel,    // uniform texel buffers (needs DeviceInfo::texel_buffer_uint4)
};

// Whether Auto picks texel loads: on CPU devices (lavapipe) a storage-buffer load is a per-lane
// loop through the stack while a texel fetch is one gather, ~20x faster per byte (measured in
// docs/performance.md). GPUs keep storage buffers (their fast path, and what the shapes are tuned for).
bool prefers_texel_loads(const DeviceInfo& info);
// Resolves `load` on this device; throws if Texel is asked of a device that cannot.
bool use_texel_loads(const DeviceInfo& info, MatmulLoad load, const char* op);

// Whether `dot` means the packed int8 dot product (OpSDot) on this device (else the SWAR path);
// throws, naming `op`, when PackedInt8 is asked of a device without shaderIntegerDotProduct.
bool resolve_int8_dot(const DeviceInfo& info, TernaryDot dot, const char* op);

struct TernaryMatmulOptions {
  TernaryDot dot = TernaryDot::Auto;
  std::optional<MatmulShape> shape;  // overrides MatmulShape::pick (tests, benchmarks)
  MatmulLoad load = MatmulLoad::Auto;       // the GEMV's (the GEMM reads storage buffers)
  MatmulKernel kernel = MatmulKernel::Auto;  // GEMV or tiled GEMM (ternary_gemm.h)
  std::optional<GemmShape> gemm_shape;       // overrides GemmShape::pick_ternary
  GemmUnits gemm_units = GemmUnits::Auto;    // the GEMM's multiply units (ternary_gemm.h)
};

class TernaryMatmul {
 public:
  explicit TernaryMatmul(Device& device, TernaryMatmulOptions options = {});

  // Records y = W x (or y += W x) for `tokens` tokens of x (x.cols == w.cols()), one dispatch per
  // segment of w. y receives N = w.rows() columns per token (see MatmulOutput). Many tokens may take
  // the tiled GEMM (options.kernel): same results, bit for bit.
  void record(Recording& rec, const TernaryMatrixGpu& w, const QuantizedActivations& x, uint32_t tokens,
              const MatmulOutput& y, Epilogue epilogue = Epilogue::Store) const;

  bool uses_int8_dot() const { return dot_; }
  bool uses_texel_loads() const { return texel_; }
  const char* shader_name() const { return shader_name(texel_); }
  MatmulShape shape_for(uint32_t tokens) const;
  bool uses_gemm(uint32_t tokens) const {
    return use_gemm(options_.kernel, device_.info(), tokens, gemm_->uses_matrix_units());
  }
  const TernaryGemm& gemm() const { return *gemm_; }

 private:
  const char* shader_name(bool texel) const;

  Device& device_;
  TernaryMatmulOptions options_;
  bool dot_ = false;
  bool texel_ = false;
  std::optional<TernaryGemm> gemm_;  // set once dot_ is known
};

}  // namespace ternvk::ops

#include "runtime/ops/ternary_matmul.h"

#include <algorithm>

#include "runtime/core/error.h"

namespace ternvk::ops {
namespace {

bool power_of_two(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

bool uses_one_subgroup_workgroups(const DeviceInfo& info) { return info.is_cpu() || info.max_subgroup_size <= 8; }

uint32_t one_subgroup_width(const DeviceInfo& info) {
  return info.subgroup_size_control ? info.max_subgroup_size : info.min_subgroup_size;
}

uint32_t float_row_lanes(const DeviceInfo& info) {
  if (uses_one_subgroup_workgroups(info)) return one_subgroup_width(info);
  return std::max(1u, std::min(32u, info.min_subgroup_size));
}

MatmulShape MatmulShape::pick(const DeviceInfo& info, uint32_t tokens, bool ternary) {
  MatmulShape s;
  tokens = std::max(tokens, 1u);
  if (uses_one_subgroup_workgroups(info)) {
    // One workgroup = one subgroup = one SIMD vector: no barriers, no shared memory.
    const bool fixed = info.subgroup_size_control || info.min_subgroup_size == info.max_subgroup_size;
    const uint32_t sg = one_subgroup_width(info);
    s.workgroup = s.lanes = sg;
    s.subgroup_add = fixed;
    s.required_subgroup_size = info.subgroup_size_control ? sg : 0;
    // Measured on lavapipe (docs/performance.md): the shape minimises loads and per-chunk work per
    // MAC: in a ternary GEMV 32 rows share each activation load and its SWAR unpacking (with texel
    // loads, 10-20% less CPU time than 16 rows on the 2B4T shapes; the FP16 GEMV gained nothing
    // from 32, so it keeps 16); in a GEMM 16 rows x 4 tokens share both (larger tiles were a little
    // faster but took minutes to compile).
    if (tokens == 1) {
      s.rows = ternary ? 32 : 16;
      s.tokens = 1;
    } else {
      s.rows = 16;
      s.tokens = std::min(tokens, 4u);
    }
  } else {
    s.lanes = ternary ? std::min(8u, info.min_subgroup_size) : float_row_lanes(info);
    s.workgroup = std::min(128u, info.max_workgroup_invocations);
    s.subgroup_add = false;
    s.required_subgroup_size = 0;
    s.rows = 2;
    s.tokens = std::min(tokens, 4u);
  }
  s.validate(info, ternary ? "ternary matmul" : "fp16 matmul");
  return s;
}

PipelineOptions MatmulShape::pipeline_options(Epilogue epilogue) const {
  PipelineOptions po;
  po.constants = {{0, workgroup}, {1, lanes}, {2, rows}, {3, tokens},
                  {4, static_cast<uint32_t>(epilogue)}, {5, subgroup_add ? 0u : 1u}};
  po.required_subgroup_size = required_subgroup_size;
  return po;
}

DispatchWork matmul_work(double rows, double row_bytes, double cols, double tokens, double x_bytes, bool accumulate) {
  return {.bytes = rows * row_bytes + tokens * x_bytes + tokens * rows * 4 * (accumulate ? 2 : 1),
          .macs = tokens * rows * cols};
}

void check_matmul_output(const std::string& what, const MatmulOutput& y, uint32_t tokens, uint32_t stride, uint32_t n) {
  const uint64_t y_floats = uint64_t(tokens - 1) * stride + y.offset + n;
  if (y.buffer.size && y.buffer.size < y_floats * 4)
    throw Error(what + ": the output needs " + std::to_string(y_floats * 4) + " bytes but its range holds " +
                std::to_string(y.buffer.size));
}

uint32_t check_dense_matmul_io(const std::string& what, uint32_t n, uint32_t k, BufferRange x, uint32_t tokens,
                               const MatmulOutput& y) {
  if (tokens == 0) throw Error(what + ": no tokens to multiply");
  const uint32_t stride = y.stride ? y.stride : n;
  if (uint64_t(y.offset) + n > stride)
    throw Error(what + ": output columns " + std::to_string(y.offset) + ".." + std::to_string(uint64_t(y.offset) + n) +
                " do not fit an output row of " + std::to_string(stride));
  if (x.size && x.size < uint64_t(tokens) * k * 4)
    throw Error(what + ": the input holds fewer than " + std::to_string(tokens) + " rows of " + std::to_string(k) +
                " floats");
  check_matmul_output(what, y, tokens, stride, n);
  return stride;
}

void MatmulShape::validate(const DeviceInfo& info, const char* op) const {
  const std::string what = std::string(op) + ": ";
  if (!info.subgroup_arithmetic || !info.subgroup_shuffle)
    throw Error(what + "device '" + info.name + "' lacks subgroup arithmetic or shuffle in compute shaders, which " +
                "this kernel needs");
  if (!power_of_two(lanes) || workgroup % lanes != 0 || workgroup > info.max_workgroup_invocations || rows == 0 ||
      tokens == 0)
    throw Error(what + "invalid shape: workgroup " + std::to_string(workgroup) + ", lanes " + std::to_string(lanes) +
                " (a power of 2 dividing the workgroup), rows " + std::to_string(rows) + ", tokens " +
                std::to_string(tokens));
  // The smallest subgroup the pipeline can get.
  const uint32_t min_sg = (required_subgroup_size && info.subgroup_size_control) ? required_subgroup_size
                                                                                 : info.min_subgroup_size;
  if (subgroup_add ? min_sg < workgroup : min_sg < lanes)
    throw Error(what + "a shape reducing with " + (subgroup_add ? "subgroupAdd over a workgroup of " : "clusters of ") +
                std::to_string(subgroup_add ? workgroup : lanes) + " lanes needs subgroups at least that large; " +
                "device '" + info.name + "' may use " + std::to_string(min_sg));
}

bool prefers_texel_loads(const DeviceInfo& info) { return info.is_cpu() && info.texel_buffer_uint4; }

bool use_texel_loads(const DeviceInfo& info, MatmulLoad load, const char* op) {
  switch (load) {
    case MatmulLoad::Auto: return prefers_texel_loads(info);
    case MatmulLoad::Storage: return false;
    case MatmulLoad::Texel:
      if (!info.texel_buffer_uint4)
        throw Error(std::string(op) + ": texel loads need R32G32B32A32_UINT uniform texel buffers, which device '" +
                    info.name + "' does not offer; use storage loads");
      return true;
  }
  return false;
}

bool resolve_int8_dot(const DeviceInfo& info, TernaryDot dot, const char* op) {
  switch (dot) {
    case TernaryDot::Auto: return info.has_fast_int8_dot();
    case TernaryDot::Swar: return false;
    case TernaryDot::PackedInt8:
      if (!info.integer_dot_product)
        throw Error(std::string(op) + ": the packed int8 dot path needs shaderIntegerDotProduct, which device '" +
                    info.name + "' does not offer; use the SWAR path");
      return true;
  }
  return false;
}

TernaryMatmul::TernaryMatmul(Device& device, TernaryMatmulOptions options) : device_(device), options_(options) {
  const DeviceInfo& info = device.info();
  texel_ = use_texel_loads(info, options.load, "ternary matmul");
  dot_ = resolve_int8_dot(info, options.dot, "ternary matmul");
  if (options.shape) options.shape->validate(info, "ternary matmul");
  gemm_.emplace(device, dot_, options.gemm_shape, options.gemm_units);
}

const char* TernaryMatmul::shader_name(bool texel) const {
  if (texel) return dot_ ? "ternary_matmul_dot_texel" : "ternary_matmul_swar_texel";
  return dot_ ? "ternary_matmul_dot" : "ternary_matmul_swar";
}

MatmulShape TernaryMatmul::shape_for(uint32_t tokens) const {
  if (options_.shape) return *options_.shape;
  return MatmulShape::pick(device_.info(), tokens, true);
}

void TernaryMatmul::record(Recording& rec, const TernaryMatrixGpu& w, const QuantizedActivations& x, uint32_t tokens,
                           const MatmulOutput& y, Epilogue epilogue) const {
  const std::string what = "ternary matmul of " + w.name();
  if (tokens == 0) throw Error(what + ": no tokens to multiply");
  if (x.cols != w.cols())
    throw Error(what + ": the activations have " + std::to_string(x.cols) + " columns but the matrix has " +
                std::to_string(w.cols()));
  const uint32_t n = w.rows();
  const uint32_t stride = y.stride ? y.stride : n;
  if (uint64_t(y.offset) + n > stride)
    throw Error(what + ": output columns " + std::to_string(y.offset) + ".." + std::to_string(uint64_t(y.offset) + n) +
                " do not fit an output row of " + std::to_string(stride));
  if (x.values.size && x.values.size < QuantizedActivations::values_bytes(tokens, x.cols))
    throw Error(what + ": the activation values hold fewer than " + std::to_string(tokens) + " tokens");
  if (x.meta.size && x.meta.size < QuantizedActivations::meta_bytes(tokens))
    throw Error(what + ": the activation scales hold fewer than " + std::to_string(tokens) + " tokens");
  check_matmul_output(what, y, tokens, stride, n);
  if (uses_gemm(tokens)) return gemm_->record(rec, w, x, tokens, y, stride, epilogue);

  const MatmulShape shape = shape_for(tokens);
  PipelineOptions po = shape.pipeline_options(epilogue);
  // Texel views need aligned offsets and at most maxTexelBufferElements texels; activations that
  // do not fit (a caller's odd sub-range) fall back to storage loads for this call.
  const DeviceInfo& info = device_.info();
  const uint64_t x_bytes = QuantizedActivations::values_bytes(tokens, x.cols);
  const bool texel = texel_ && x.values.offset % info.min_texel_buffer_offset_alignment == 0 &&
                     x_bytes / 16 <= info.max_texel_buffer_elements;
  const Pipeline& pipeline = device_.pipeline(shader_name(texel), po);
  const BufferRange x_values = texel ? BufferRange{x.values.buffer, x.values.offset, x_bytes} : x.values;

  struct {
    uint32_t chunks, rows, row_base, tokens, y_stride, y_offset;
  } push{w.padded_cols() / 64, 0, 0, tokens, stride, y.offset};
  const uint32_t rpw = shape.rows_per_workgroup();
  const uint32_t token_groups = (tokens + shape.tokens - 1) / shape.tokens;
  for (const MatrixSegment& seg : w.segments()) {
    push.rows = seg.rows;
    push.row_base = seg.first_row;
    // 2-bit rows with their {code sum, scale}; int8 activations with their {s, sum q}.
    const DispatchWork work = matmul_work(seg.rows, w.padded_cols() / 4.0 + 8, w.cols(), tokens, w.padded_cols() + 8.0,
                                          epilogue == Epilogue::Accumulate);
    rec.dispatch(pipeline, {seg.weights.range(), w.row_info().range(), x_values, x.meta, y.buffer}, push,
                 (seg.rows + rpw - 1) / rpw, token_groups, 1, {w.name(), work});
  }
}

}  // namespace ternvk::ops

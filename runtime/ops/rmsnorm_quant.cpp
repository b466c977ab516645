#include "runtime/ops/rmsnorm_quant.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/ops/ternary_matmul.h"

namespace ternvk::ops {

RmsNormQuant::RmsNormQuant(Device& device, uint32_t workgroup, MatmulLoad load)
    : device_(device), workgroup_(workgroup) {
  const DeviceInfo& info = device.info();
  if (!info.subgroup_arithmetic)
    throw Error("rmsnorm_quant: device '" + info.name + "' lacks subgroup arithmetic in compute shaders");
  if (workgroup_ == 0) workgroup_ = uses_one_subgroup_workgroups(info) ? info.subgroup_size : 256;
  workgroup_ = std::min(workgroup_, info.max_workgroup_invocations);
  texel_ = use_texel_loads(info, load, "rmsnorm_quant");
}

void RmsNormQuant::record(Recording& rec, BufferRange x, BufferRange norm_weight, float eps, uint32_t tokens,
                          const QuantizedActivations& out) const {
  if (norm_weight.size && norm_weight.size < uint64_t(out.cols) * 4)
    throw Error("rmsnorm_quant: the norm weight holds " + std::to_string(norm_weight.size / 4) + " floats, " +
                std::to_string(out.cols) + " needed");
  record_impl(rec, x, &norm_weight, eps, tokens, 0, out);
}

void RmsNormQuant::record_gated(Recording& rec, BufferRange gate_up, Gating gating, BufferRange norm_weight, float eps,
                                uint32_t tokens, const QuantizedActivations& out) const {
  if (norm_weight.size && norm_weight.size < uint64_t(out.cols) * 4)
    throw Error("rmsnorm_quant: the norm weight holds " + std::to_string(norm_weight.size / 4) + " floats, " +
                std::to_string(out.cols) + " needed");
  record_impl(rec, gate_up, &norm_weight, eps, tokens, gating == Gating::SquaredRelu ? 1u : 2u, out);
}

void RmsNormQuant::record_quantize(Recording& rec, BufferRange x, uint32_t tokens,
                                   const QuantizedActivations& out) const {
  record_impl(rec, x, nullptr, 0.0f, tokens, 0, out);
}

void RmsNormQuant::record_impl(Recording& rec, BufferRange x, const BufferRange* norm_weight, float eps,
                               uint32_t tokens, uint32_t gating, const QuantizedActivations& out) const {
  if (tokens == 0 || out.cols == 0) throw Error("rmsnorm_quant: nothing to quantize (tokens or columns is 0)");
  const uint64_t x_bytes = uint64_t(tokens) * out.cols * 4 * (gating ? 2 : 1);
  if (x.size && x.size < x_bytes)
    throw Error("rmsnorm_quant: the input holds fewer than " + std::to_string(tokens) + " rows of " +
                std::to_string(out.cols * (gating ? 2 : 1)) + " floats");
  if (out.values.size && out.values.size < QuantizedActivations::values_bytes(tokens, out.cols))
    throw Error("rmsnorm_quant: the output values hold fewer than " + std::to_string(tokens) + " tokens");
  if (out.meta.size && out.meta.size < QuantizedActivations::meta_bytes(tokens))
    throw Error("rmsnorm_quant: the output scales hold fewer than " + std::to_string(tokens) + " tokens");
  // Texel views need K % 4 == 0 (whole texels per row), aligned offsets and at most
  // maxTexelBufferElements texels; anything else takes the storage variant for this call.
  const DeviceInfo& info = device_.info();
  const uint64_t w_bytes = uint64_t(out.cols) * 4;
  const auto texel_ok = [&](const BufferRange& r, uint64_t bytes) {
    return r.offset % info.min_texel_buffer_offset_alignment == 0 && bytes / 16 <= info.max_texel_buffer_elements &&
           (r.size == 0 || r.size >= bytes);
  };
  const bool texel = texel_ && out.cols % 4 == 0 && texel_ok(x, x_bytes) &&
                     (!norm_weight || texel_ok(*norm_weight, w_bytes));
  PipelineOptions po;
  po.constants = {{0, workgroup_}, {1, norm_weight ? 1u : 0u}, {2, gating}};
  const Pipeline& pipeline = device_.pipeline(texel ? "rmsnorm_quant_texel" : "rmsnorm_quant", po);
  struct {
    uint32_t cols, words;
    float eps;
  } push{out.cols, out.words_per_token(), eps};
  const char* label = gating ? "rmsnorm_quant_gated" : norm_weight ? "rmsnorm_quant" : "quantize";
  // Without the norm, binding 1 is never read: bind x there.
  BufferRange xb = x, wb = norm_weight ? *norm_weight : x;
  if (texel) {
    xb.size = x_bytes;
    if (norm_weight) wb.size = w_bytes;
    else wb = xb;
  }
  const double T = tokens;
  const DispatchWork work{.bytes = double(x_bytes) + (norm_weight ? double(out.cols) * 4 : 0) +
                                   T * (out.padded_cols() + 8)};
  rec.dispatch(pipeline, {xb, wb, out.values, out.meta}, push, tokens, 1, 1, {label, work});
}

}  // namespace ternvk::ops

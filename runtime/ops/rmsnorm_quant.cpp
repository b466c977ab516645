#include "runtime/ops/rmsnorm_quant.h"

#include <algorithm>

#include "runtime/core/error.h"

namespace ternvk::ops {

RmsNormQuant::RmsNormQuant(Device& device, uint32_t workgroup) : device_(device), workgroup_(workgroup) {
  const DeviceInfo& info = device.info();
  if (!info.subgroup_arithmetic)
    throw Error("rmsnorm_quant: device '" + info.name + "' lacks subgroup arithmetic in compute shaders");
  if (workgroup_ == 0) workgroup_ = info.max_subgroup_size <= 8 ? info.subgroup_size : 256;
  workgroup_ = std::min(workgroup_, info.max_workgroup_invocations);
}

void RmsNormQuant::record(Recording& rec, BufferRange x, BufferRange norm_weight, float eps, uint32_t tokens,
                          const QuantizedActivations& out) const {
  if (norm_weight.size && norm_weight.size < uint64_t(out.cols) * 4)
    throw Error("rmsnorm_quant: the norm weight holds " + std::to_string(norm_weight.size / 4) + " floats, " +
                std::to_string(out.cols) + " needed");
  record_impl(rec, x, &norm_weight, eps, tokens, out);
}

void RmsNormQuant::record_quantize(Recording& rec, BufferRange x, uint32_t tokens,
                                   const QuantizedActivations& out) const {
  record_impl(rec, x, nullptr, 0.0f, tokens, out);
}

void RmsNormQuant::record_impl(Recording& rec, BufferRange x, const BufferRange* norm_weight, float eps,
                               uint32_t tokens, const QuantizedActivations& out) const {
  if (tokens == 0 || out.cols == 0) throw Error("rmsnorm_quant: nothing to quantize (tokens or columns is 0)");
  if (x.size && x.size < uint64_t(tokens) * out.cols * 4)
    throw Error("rmsnorm_quant: the input holds fewer than " + std::to_string(tokens) + " rows of " +
                std::to_string(out.cols) + " floats");
  if (out.values.size && out.values.size < QuantizedActivations::values_bytes(tokens, out.cols))
    throw Error("rmsnorm_quant: the output values hold fewer than " + std::to_string(tokens) + " tokens");
  if (out.meta.size && out.meta.size < QuantizedActivations::meta_bytes(tokens))
    throw Error("rmsnorm_quant: the output scales hold fewer than " + std::to_string(tokens) + " tokens");
  PipelineOptions po;
  po.constants = {{0, workgroup_}, {1, norm_weight ? 1u : 0u}};
  const Pipeline& pipeline = device_.pipeline("rmsnorm_quant", po);
  struct {
    uint32_t cols, words;
    float eps;
  } push{out.cols, out.words_per_token(), eps};
  // Without the norm, binding 1 is never read: bind x there.
  rec.dispatch(pipeline, {x, norm_weight ? *norm_weight : x, out.values, out.meta}, push, tokens, 1, 1,
               norm_weight ? "rmsnorm_quant" : "quantize");
}

}  // namespace ternvk::ops

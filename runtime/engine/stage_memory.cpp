#include "runtime/engine/stage_memory.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/ops/argmax.h"
#include "runtime/ops/fp16_matmul.h"
#include "runtime/ops/fused_linear.h"
#include "runtime/ops/int8_matmul.h"
#include "runtime/ops/kv_cache.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/ternary_matrix.h"
#include "runtime/ops/topk.h"

namespace ternvk {

ExecutionPlan resolve_plan(ExecutionPlan plan, const DeviceInfo& info) {
  if (plan != ExecutionPlan::Auto) return plan;
  return info.is_cpu() ? ExecutionPlan::Cpu : ExecutionPlan::Gpu;
}

uint64_t greedy_chain_stride(const DeviceInfo& info) {
  const uint64_t align = std::max<uint64_t>(info.min_storage_buffer_offset_alignment, 1);
  return (sizeof(ops::ArgmaxResult) + align - 1) / align * align;
}

bool step_inputs_on_device(const StageOptions& options, const DeviceInfo& info) {
  return options.step_inputs_on_device.value_or(!info.unified_memory());
}

const char* plan_name(ExecutionPlan plan) {
  switch (plan) {
    case ExecutionPlan::Auto: return "auto";
    case ExecutionPlan::Gpu: return "gpu";
    case ExecutionPlan::Cpu: return "cpu";
  }
  return "?";
}

bool may_chain_layers(const StageOptions& options, const DeviceInfo& info) {
  if (resolve_plan(options.plan, info) != ExecutionPlan::Gpu) return false;
  switch (options.chain_layers) {
    case LayerChain::Off: return false;
    case LayerChain::Auto: return !info.is_cpu() && options.timestamps != TimestampMode::Dispatch;
    case LayerChain::On:
    case LayerChain::Measure: return true;
  }
  return false;
}

const char* layer_chain_name(LayerChain chain) {
  switch (chain) {
    case LayerChain::Off: return "off";
    case LayerChain::On: return "on";
    case LayerChain::Measure: return "measure";
    case LayerChain::Auto: return "auto";
  }
  return "?";
}

const char* matrix_splits_name(MatrixSplits splits) {
  switch (splits) {
    case MatrixSplits::Rule: return "rule";
    case MatrixSplits::Measure: return "measure";
    case MatrixSplits::Auto: return "auto";
  }
  return "?";
}

ops::AttentionPlan plan_stage_attention(const ModelConfig& c, const StageOptions& options, const DeviceInfo& info,
                                        uint32_t tokens, ops::SequenceLayout layout) {
  const ops::HeadLayout heads{uint32_t(c.n_heads), uint32_t(c.n_kv_heads), uint32_t(c.head_dim)};
  // The GPU plan runs the GPU's decode attention (one dispatch, many splits, merged in place) on any
  // device it is forced on, where that kernel can run (else the device's default); the CPU plan
  // takes the device's default.
  const bool decode_like = layout == ops::SequenceLayout::Mixed || tokens <= ops::kFlashDecodeMaxTokens;
  if (resolve_plan(options.plan, info) == ExecutionPlan::Gpu && decode_like) {
    try {
      // The fused layers' workgroup and subgroup size: the qkv dispatch can then run this attention
      // (StageOptions::fold_attention), with the same bits.
      const ops::FusedLinearShape fused = options.fused_shape ? *options.fused_shape : ops::FusedLinearShape::pick(info);
      return ops::plan_attention(info, heads, tokens, uint32_t(options.context),
                                 {.workgroup = fused.workgroup, .min_split = options.attention_min_split,
                                  .flash_decode = true, .subgroup_size = fused.required_subgroup_size},
                                 layout);
    } catch (const Error&) {
      // this device or shape cannot run it: the default below
    }
  }
  return ops::plan_attention(info, heads, tokens, uint32_t(options.context), {.min_split = options.attention_min_split},
                             layout);
}

void StageMemory::add(std::string name, uint64_t bytes, StageBuffer::Use use, MemoryKind kind, bool ternary) {
  buffers_.push_back({std::move(name), std::max<uint64_t>(bytes, 16), kind, use, ternary});
}

const StageBuffer& StageMemory::buffer(std::string_view name) const {
  for (const auto& b : buffers_)
    if (b.name == name) return b;
  throw Error("internal: the stage's memory plan has no buffer '" + std::string(name) + "'");
}

GpuFootprint StageMemory::footprint() const {
  GpuFootprint f;
  for (const auto& b : buffers_) {
    if (b.use == StageBuffer::Weights) f.weights += b.bytes;
    if (b.use == StageBuffer::KvCache) f.kv_cache += b.bytes;
    if (b.use == StageBuffer::Scratch) f.scratch += b.bytes;
    if (b.ternary) f.ternary_weights += b.bytes;
  }
  return f;
}

StageMemory StageMemory::plan(const ModelConfig& c, const StageSpec& spec, const StageOptions& o,
                              const DeviceInfo& info) {
  StageMemory m;
  const uint64_t T = uint64_t(o.max_tokens), D = c.dim, F = c.ffn_dim, QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab;
  const bool gpu_plan = resolve_plan(o.plan, info) == ExecutionPlan::Gpu;
  // Weights, layer by layer, in the order the stage uploads them.
  auto linear = [&](const std::string& name, uint64_t rows, uint64_t cols) {
    if (o.fp16_baseline)
      m.add(name, ops::Fp16MatrixGpu::device_bytes(uint32_t(rows), uint32_t(cols)), StageBuffer::Weights);
    else
      m.add(name, ops::TernaryMatrixGpu::device_bytes(uint32_t(rows), uint32_t(cols)), StageBuffer::Weights,
            MemoryKind::DeviceLocal, true);
  };
  const uint64_t kv = ops::kv_cache_bytes(uint32_t(o.context) * uint32_t(o.sequences), uint32_t(c.n_kv_heads),
                                          uint32_t(c.head_dim));
  for (int l = spec.first_layer; l < spec.end_layer; ++l) {
    const std::string p = "layer " + std::to_string(l) + " ";
    linear(p + "qkv", QD + 2 * KVD, D);
    linear(p + "o", D, QD);
    linear(p + "gate|up", 2 * F, D);
    linear(p + "down", D, F);
    m.add(p + "attn_norm", D * 4, StageBuffer::Weights);
    m.add(p + "attn_sub_norm", QD * 4, StageBuffer::Weights);
    m.add(p + "ffn_norm", D * 4, StageBuffer::Weights);
    m.add(p + "ffn_sub_norm", F * 4, StageBuffer::Weights);
    m.add(p + "K cache", kv, StageBuffer::KvCache);
    m.add(p + "V cache", kv, StageBuffer::KvCache);
  }
  // The head in its precision (when tied, also the embedding table); an untied model's first stage
  // keeps an FP16 table.
  auto head_table = [&](const std::string& name) {
    if (o.head == HeadPrecision::Int8)
      m.add(name, ops::Int8MatrixGpu::device_bytes(uint32_t(V), uint32_t(D)), StageBuffer::Weights);
    else
      m.add(name, ops::Fp16MatrixGpu::device_bytes(uint32_t(V), uint32_t(D)), StageBuffer::Weights);
  };
  if (!c.tied_head) {
    if (spec.head) head_table("output head");
    if (spec.embedding) m.add("token embedding", ops::Fp16MatrixGpu::device_bytes(uint32_t(V), uint32_t(D)), StageBuffer::Weights);
  } else if (spec.embedding || spec.head) {
    head_table(spec.head ? "token embedding / output head" : "token embedding");
  }
  if (spec.head) m.add("output_norm", D * 4, StageBuffer::Weights);

  // Activations for the largest step. A greedy chain (one stage with the embedding and the head)
  // gives each of its steps its own position and argmax result, each at an aligned offset.
  const uint64_t chain = spec.embedding && spec.head && o.greedy_chain > 1
                             ? uint64_t(o.greedy_chain) * greedy_chain_stride(info) : 0;
  m.add("token ids", T * 4, StageBuffer::Scratch, MemoryKind::HostUpload);
  m.add("token positions", std::max(T * 4, chain), StageBuffer::Scratch, MemoryKind::HostUpload);
  m.add("token KV slots", T * 4, StageBuffer::Scratch, MemoryKind::HostUpload);
  if (step_inputs_on_device(o, info)) {  // the pass copies them here first
    m.add("token ids (device copy)", T * 4, StageBuffer::Scratch);
    m.add("token positions (device copy)", std::max(T * 4, chain), StageBuffer::Scratch);
    m.add("token KV slots (device copy)", T * 4, StageBuffer::Scratch);
    if (chain) m.add("greedy chain picks", chain, StageBuffer::Scratch);
  }
  if (!spec.embedding) m.add("hidden state from the previous stage", T * D * 4, StageBuffer::Scratch, MemoryKind::HostUpload);
  if (!spec.head) m.add("hidden state for the next stage", T * D * 4, StageBuffer::Scratch, MemoryKind::HostReadback);
  m.add("hidden state", T * D * 4, StageBuffer::Scratch);
  m.add("q|k|v", T * (QD + 2 * KVD) * 4, StageBuffer::Scratch);
  m.add("attention output", T * QD * 4, StageBuffer::Scratch);
  m.add("gate|up", T * 2 * F * 4, StageBuffer::Scratch);
  // The CPU plan's ternary path fuses the gating into the down projection's quantization instead.
  if (o.fp16_baseline || gpu_plan) m.add("gated FFN activations", T * F * 4, StageBuffer::Scratch);
  for (auto [name, cols] : {std::pair{"int8 hidden state", D}, {"int8 attention output", QD}, {"int8 FFN activations", F}}) {
    m.add(std::string(name) + " (int8 values)", ops::QuantizedActivations::values_bytes(uint32_t(T), uint32_t(cols)),
          StageBuffer::Scratch);
    m.add(std::string(name) + " (scales and sums)", ops::QuantizedActivations::meta_bytes(uint32_t(T)), StageBuffer::Scratch);
  }
  if (o.fp16_baseline) m.add("normed activations", T * std::max({D, QD, F}) * 4, StageBuffer::Scratch);
  if (spec.head) {
    m.add("final norm output", T * D * 4, StageBuffer::Scratch);
    m.add("logits", T * V * 4, StageBuffer::Scratch);
    m.add("selected tokens", std::max(T * ops::kMaxTopK * sizeof(ops::TopKEntry), chain), StageBuffer::Scratch,
          MemoryKind::HostReadback);
    uint64_t select = 0;
    for (uint32_t rows : {1u, uint32_t(T)}) {  // the last token's row, or every row (a batched decode step)
      select = std::max(select, ops::plan_argmax(info, rows, uint32_t(V)).scratch_bytes);
      for (uint32_t k : {1u, 8u, 40u, 64u, ops::kMaxTopK})
        select = std::max(select, ops::plan_topk(info, rows, uint32_t(V), k).scratch_bytes);
    }
    m.add("argmax / top-k partials", select, StageBuffer::Scratch);
    // The GPU plan's one-token head picks its argmax in the same dispatch: a partial per workgroup.
    if (gpu_plan) m.add("head argmax partials", ops::FusedLinear::argmax_scratch_bytes(uint32_t(V)), StageBuffer::Scratch);
  }
  // The GPU plan's qkv dispatch may run the attention: its arrival counters at the scratch's head.
  uint64_t attention = gpu_plan && o.fold_attention.value_or(true) ? ops::kAttentionCounterBytes : 16;
  for (uint32_t t = 1; t <= T; ++t)  // the split depends on the token count: size for the worst
    for (auto layout : {ops::SequenceLayout::OneSequence, ops::SequenceLayout::Mixed})
      attention = std::max(attention, plan_stage_attention(c, o, info, t, layout).scratch_bytes);
  m.add("attention partials", attention, StageBuffer::Scratch);
  // Chained layers (wherever a stage may chain, also where a trial may end unchained): the timed-out
  // flag and a done count for each of a pass's fused dispatches (four a layer at most), and the flag's
  // host copy.
  if (may_chain_layers(o, info)) {
    m.add("chained dispatch counters", 4 * (1 + 4 * uint64_t(spec.end_layer - spec.first_layer)), StageBuffer::Scratch);
    m.add("chain timed-out flag", 4, StageBuffer::Scratch, MemoryKind::HostReadback);
  }
  return m;
}

GpuFootprint estimate_footprint(const ModelConfig& c, const StageOptions& options, const DeviceInfo& info, int layers,
                                bool embedding, bool head) {
  const StageSpec spec{0, layers < 0 ? c.n_layers : layers, embedding, head};
  return StageMemory::plan(c, spec, options, info).footprint();
}

}  // namespace ternvk

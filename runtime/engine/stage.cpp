#include "runtime/engine/stage.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <system_error>

#include "runtime/core/error.h"
#include "runtime/core/half.h"
#include "runtime/ops/argmax.h"
#include "runtime/ops/arrival_counters.h"
#include "runtime/ops/embedding.h"
#include "runtime/ops/topk.h"
#include "runtime/ops/gated_activation.h"
#include "runtime/ops/rmsnorm.h"
#include "runtime/ops/rope.h"
#include "runtime/profiler/pass_record.h"

namespace ternvk {
namespace {

// std::async on its own thread, or (where no thread can be started: a process or container limit)
// deferred to the get() that wants the result: the load is slower then, never refused.
template <class F, class... Args>
auto launch(const F& f, Args... args) {
  try {
    return std::async(std::launch::async, f, args...);
  } catch (const std::system_error&) {
    return std::async(std::launch::deferred, f, std::move(args)...);
  }
}

}  // namespace

Stage::Stage(Device& device, const ModelSource& source, const StageSpec& spec, const StageOptions& options,
             const std::function<void(int, int)>& progress)
    : device_(device),
      c_(source.config()),
      spec_(spec),
      options_(options),
      ternary_(device, {.dot = options.dot, .gemm_units = options.gemm_units}),
      fp16_(device),
      // Only the FP16 baseline's linear layers take it, so only they run its self-check.
      fp16_prompt_(device, {.gemm_units = options.fp16_baseline ? options.gemm_units : ops::GemmUnits::Vector}),
      norm_quant_(device),
      int8_(device),
      plan_(resolve_plan(options.plan, device.info())) {
  if (plan_ == ExecutionPlan::Gpu) {
    fused_ = std::make_unique<ops::FusedLinear>(device, ops::FusedLinearOptions{.dot = options.dot, .shape = options.fused_shape});
    // Every layer input (D, the attention output, the FFN activations) fits a workgroup's shared memory.
    const auto kind = options.fp16_baseline ? ops::FusedLinear::Weights::Fp16 : ops::FusedLinear::Weights::Ternary;
    gpu_norms_ = fused_->fits(uint32_t(c_.dim), kind) && fused_->fits(uint32_t(c_.q_dim()), kind) &&
                 fused_->fits(uint32_t(c_.ffn_dim), kind);
  }
  if (spec.first_layer < 0 || spec.end_layer > c_.n_layers || spec.first_layer >= spec.end_layer)
    throw Error("stage layers [" + std::to_string(spec.first_layer) + ", " + std::to_string(spec.end_layer) +
                ") do not fit a model of " + std::to_string(c_.n_layers) + " layers");
  if (options.context < 1 || options.context > c_.context)
    throw Error("context " + std::to_string(options.context) + " is outside 1.." + std::to_string(c_.context) +
                " (the model's maximum)");
  if (options.sequences < 1 || options.sequences > 4096)
    throw Error("sequences " + std::to_string(options.sequences) + " is outside 1..4096");
  const uint32_t T = uint32_t(options.max_tokens), D = uint32_t(c_.dim), F = uint32_t(c_.ffn_dim);
  const uint32_t QD = uint32_t(c_.q_dim()), V = uint32_t(c_.vocab);
  // Every buffer below, by name and size (the footprint estimates sum the same list).
  const StageMemory memory = StageMemory::plan(c_, spec, options, device.info());
  auto allocate = [&](const std::string& name) {
    const StageBuffer& b = memory.buffer(name);
    return device.create_buffer(b.bytes, b.kind, name);
  };
  const int total = (spec.end_layer - spec.first_layer) + 1;
  int done = 0;
  auto step = [&] {
    if (progress) progress(++done, total);
  };

  // Weights: a layer at a time on the device, while worker threads read and pack the next one (its
  // four matrices side by side), so host memory holds two layers' unpacked values at most.
  struct PreparedLayer {
    PreparedLinear qkv, o, gate_up, down;
  };
  auto prepare_group = [this, &source](int l, std::vector<Linear> which, std::string what) {
    std::vector<TernaryMatrix> parts;  // moved into prepare_linear: unpacked values are never copied
    for (const Linear m : which) parts.push_back(source.linear(l, m));
    return prepare_linear(std::move(parts), std::move(what));
  };
  auto prepare_layer = [&prepare_group](int l) {
    const std::string p = "layer " + std::to_string(l) + " ";
    // Matrices that share an input are stacked into one matrix (per-row scales): one dispatch each.
    auto qkv = launch(prepare_group, l, std::vector{Linear::Q, Linear::K, Linear::V}, p + "qkv");
    auto o = launch(prepare_group, l, std::vector{Linear::O}, p + "o");
    auto gate_up = launch(prepare_group, l, std::vector{Linear::Gate, Linear::Up}, p + "gate|up");
    PreparedLayer out;
    out.down = prepare_group(l, {Linear::Down}, p + "down");
    out.qkv = qkv.get();
    out.o = o.get();
    out.gate_up = gate_up.get();
    return out;
  };
  std::future<PreparedLayer> next = launch(prepare_layer, spec.first_layer);
  for (int l = spec.first_layer; l < spec.end_layer; ++l) {
    const std::string p = "layer " + std::to_string(l) + " ";
    Layer L;
    PreparedLayer prepared = next.get();
    if (l + 1 < spec.end_layer) next = launch(prepare_layer, l + 1);
    L.qkv = upload_linear(std::move(prepared.qkv));
    L.o = upload_linear(std::move(prepared.o));
    L.gate_up = upload_linear(std::move(prepared.gate_up));
    L.down = upload_linear(std::move(prepared.down));
    L.attn_norm = upload_floats(source.norm(l, Norm::Attn), p + "attn_norm");
    L.attn_sub_norm = upload_floats(source.norm(l, Norm::AttnSub), p + "attn_sub_norm");
    L.ffn_norm = upload_floats(source.norm(l, Norm::Ffn), p + "ffn_norm");
    L.ffn_sub_norm = upload_floats(source.norm(l, Norm::FfnSub), p + "ffn_sub_norm");
    for (auto* m : {&L.qkv, &L.o, &L.gate_up, &L.down}) weight_bytes_ += m->bytes();
    // One region of `context` rows per sequence slot, back to back.
    L.k_cache = allocate(p + "K cache");
    L.v_cache = allocate(p + "V cache");
    kv_bytes_ += L.k_cache.size() + L.v_cache.size();
    layers_.push_back(std::move(L));
    step();
  }
  if (spec.embedding || spec.head) {
    const bool i8 = options.head == HeadPrecision::Int8;
    if (i8 && D % 4 != 0)
      throw Error("the int8 head needs a hidden size divisible by 4; this model's is " + std::to_string(D) +
                  " (use the f16 head)");
    // The head in the chosen precision; when tied, the same rows serve as the embedding table.
    auto upload_head = [&](const std::vector<uint16_t>& halves, const std::string& what) {
      if (i8)
        head_i8_ = std::make_unique<ops::Int8MatrixGpu>(device, ops::quantize_rows_int8(halves, V, D), what,
                                                        options.max_segment_bytes);
      else
        head_ = std::make_unique<ops::Fp16MatrixGpu>(device, halves, V, D, what, options.max_segment_bytes);
    };
    // Tied or not is the model's (not the stage's): a first stage of an untied model keeps its FP16
    // embedding table even when the last stage holds an int8 head.
    if (!c_.tied_head) {
      if (spec.head) {
        auto untied = source.output_f16();
        if (!untied) throw Error("the model has no output head tensor although it is not tied to the embedding");
        upload_head(*untied, "output head");
      }
      if (spec.embedding)
        table_ = std::make_unique<ops::Fp16MatrixGpu>(device, source.embedding_f16(), V, D, "token embedding",
                                                      options.max_segment_bytes);
    } else {
      upload_head(source.embedding_f16(), spec.head ? "token embedding / output head" : "token embedding");
    }
    weight_bytes_ += (head_ ? head_->device_bytes() : 0) + (head_i8_ ? head_i8_->device_bytes() : 0) +
                     (table_ ? table_->device_bytes() : 0);
  }
  if (spec.head) output_norm_ = upload_floats(source.output_norm(), "output_norm");
  step();

  // Activations, allocated once for the largest step.
  ids_ = allocate("token ids");
  positions_ = allocate("token positions");
  slots_ = allocate("token KV slots");
  if (step_inputs_on_device(options, device.info())) {
    ids_on_device_ = allocate("token ids (device copy)");
    positions_on_device_ = allocate("token positions (device copy)");
    slots_on_device_ = allocate("token KV slots (device copy)");
    if (spec.embedding && spec.head && options.greedy_chain > 1) greedy_picks_ = allocate("greedy chain picks");
  }
  if (!spec.embedding) hidden_in_ = allocate("hidden state from the previous stage");
  if (!spec.head) hidden_out_ = allocate("hidden state for the next stage");
  x_ = allocate("hidden state");
  qkv_ = allocate("q|k|v");
  attn_ = allocate("attention output");
  gate_up_ = allocate("gate|up");
  if (options.fp16_baseline || plan_ == ExecutionPlan::Gpu) ffn_ = allocate("gated FFN activations");
  q_dim_in_ = ops::QuantizedActivationsBuffers::create(device, T, D, "int8 hidden state");
  q_attn_ = ops::QuantizedActivationsBuffers::create(device, T, QD, "int8 attention output");
  q_ffn_ = ops::QuantizedActivationsBuffers::create(device, T, F, "int8 FFN activations");
  if (options.fp16_baseline) normed_wide_ = allocate("normed activations");
  if (spec.head) {
    normed_ = allocate("final norm output");
    logits_ = allocate("logits");
    selected_ = allocate("selected tokens");
    select_scratch_ = allocate("argmax / top-k partials");
    if (plan_ == ExecutionPlan::Gpu) {
      head_argmax_ = allocate("head argmax partials");
      ops::zero_counters_now(device, head_argmax_.range(0, 4));  // once: every dispatch leaves it at 0
    }
  }
  attn_scratch_ = allocate("attention partials");

  if (plan_ != ExecutionPlan::Gpu && options.fold_attention.value_or(false))
    throw Error("attention inside the qkv dispatch: the CPU plan has no fused qkv dispatch (use the GPU plan)");
  if (plan_ == ExecutionPlan::Gpu && options.fold_attention.value_or(true)) {
    const ops::AttentionPlan one = plan_stage_attention(c_, options_, device.info(), 1, ops::SequenceLayout::OneSequence);
    std::string why = layers_.empty() || !fusable(layers_.front()) ? "the layers do not fuse" : why_no_folded_attention(one);
    if (why.empty()) {
      fold_keys_ = ops::one_split_keys(one);
      ops::clear_attention_counters(device, attn_scratch_.range());  // once: every dispatch leaves them at 0
    } else if (options.fold_attention) {
      throw Error("attention inside the qkv dispatch on device '" + device.info().name + "': " + why);
    }
  }
  const LayerChain chain = options.chain_layers;
  if (may_chain_layers(options, device.info())) {
    layer_chain_counters_ = allocate("chained dispatch counters");
    layer_chain_flag_ = allocate("chain timed-out flag");
  }
  const std::string why = chain == LayerChain::Off ? "off (--chain-layers off)"
                          : chain == LayerChain::Auto && device.info().is_cpu()
                              ? "off: a CPU device runs dispatches one after another (--chain-layers measure to try it)"
                              : why_no_layer_chain();
  if (!why.empty() && (chain == LayerChain::On || chain == LayerChain::Measure))
    throw Error("chained layers on device '" + device.info().name + "': " + why);
  if (!why.empty()) {
    chain_note_ = why.starts_with("off") ? why : "off: " + why;
  } else if (chain == LayerChain::On) {
    chain_state_ = ChainState::On;
    chain_note_ = "on (--chain-layers on)";
  } else {
    chain_state_ = ChainState::Trial;
  }
  split_note_ = why_no_split_trial();
  split_trial_pending_ = split_note_.empty();
}

std::string Stage::layer_chain_note() const {
  if (chain_state_ != ChainState::Trial) return chain_note_;
  return "measuring: " + std::to_string(chain_trial_.timed_pairs()) + " of " +
         std::to_string(LayerChainTrial::kTimedPairs) + " one-token steps timed both ways";
}

std::vector<bool> Stage::layer_chain_forms() const {
  switch (chain_state_) {
    case ChainState::Off: return {false};
    case ChainState::On: return {true};
    case ChainState::Trial: return {false, true};
  }
  return {false};
}

void Stage::stop_layer_chain(std::string why) {
  chain_state_ = ChainState::Off;
  chain_note_ = "off: " + std::move(why);
  // No chained pass runs again: its recordings go (and last_pass_ if it was one).
  auto drop_chained = [&](auto& recordings, auto chained_of) {
    std::erase_if(recordings, [&](const auto& entry) {
      if (!chained_of(entry.first)) return false;
      if (entry.second.get() == last_pass_) last_pass_ = nullptr;
      return true;
    });
  };
  drop_chained(passes_, [](const auto& key) { return std::get<6>(key); });
  drop_chained(greedy_chains_, [](const auto& key) { return std::get<2>(key); });
  // The attention inside qkv leaves its arrival counters at 0 only when each layer's qkv finishes
  // before the next one's adds: a chain whose waits gave up, or that raced, may have left some off,
  // and every later step would then skip those heads' attention.
  if (fold_keys_) ops::clear_attention_counters(device_, attn_scratch_.range());
}

std::string Stage::why_no_layer_chain() const {
  if (!fused_) return "the CPU plan has no fused layers (use the GPU plan)";
  if (options_.timestamps == TimestampMode::Dispatch)
    return "a timestamp after every dispatch orders them anyway (time whole passes: profile --timing pass)";
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    const std::string name = "layer " + std::to_string(spec_.first_layer + int(i));
    for (const auto& [w, what] : {std::pair{&L.qkv, "qkv"}, {&L.o, "o"}, {&L.gate_up, "gate|up"}, {&L.down, "down"}}) {
      const size_t n = w->segments().size();
      if (n != 1) return name + "'s " + what + " matrix is in " + std::to_string(n) + " segments, not one";
    }
    if (!fusable(L)) return name + " does not run as fused dispatches (its inputs do not fit shared memory)";
  }
  return "";
}

void Stage::close_layer_chain(Recording& rec) {
  if (rec.chain_open()) rec.end_chain();
}

void Stage::end_layer_chain_recording(Recording& rec) {
  rec.copy(layer_chain_counters_.range(0, 4), layer_chain_flag_.range(0, 4));
}

bool Stage::layer_chain_timed_out() {
  uint32_t flag = 0;
  device_.download(layer_chain_flag_, &flag, 4);
  if (!flag) return false;
  // Some workgroup waited past its bound: the device may not start a dispatch's workgroups before a
  // later one's, so nothing chained is trusted again on this stage.
  stop_layer_chain("a chained wait timed out (the device may not start a dispatch's workgroups before a later "
                   "one's); the step was redone with barriers");
  ++chain_redos_;
  return true;
}

std::string Stage::why_no_folded_attention(const ops::AttentionPlan& attention) const {
  if (!fused_) return "the CPU plan has no fused layers";
  const auto kind = options_.fp16_baseline ? ops::FusedLinear::Weights::Fp16 : ops::FusedLinear::Weights::Ternary;
  return fused_->why_no_folded_attention(attention, uint32_t(c_.dim), kind);
}

Buffer Stage::upload_floats(const std::vector<float>& v, const std::string& what) {
  Buffer b = device_.create_buffer(v.size() * 4, MemoryKind::DeviceLocal, what);
  device_.upload(b, v.data(), v.size() * 4);
  weight_bytes_ += v.size() * 4;
  return b;
}

Stage::PreparedLinear Stage::prepare_linear(std::vector<TernaryMatrix> parts, std::string what) const {
  PreparedLinear out;
  out.what = std::move(what);
  out.cols = uint32_t(parts[0].cols);
  if (!options_.fp16_baseline) {
    std::vector<ops::PackedTernaryMatrix> packed;
    for (const auto& m : parts)
      packed.push_back(ops::pack_ternary(m.values, uint32_t(m.rows), uint32_t(m.cols), m.scale, out.what));
    out.ternary = packed.size() == 1 ? std::move(packed[0]) : ops::concat_rows(packed);
    out.rows = out.ternary->rows;
    return out;
  }
  uint64_t values = 0;
  for (const auto& m : parts) values += m.values.size();
  out.halves.reserve(values);
  for (const auto& m : parts) {
    const uint16_t plus = float_to_half(m.scale), minus = float_to_half(-m.scale), zero = 0;
    for (int8_t v : m.values) out.halves.push_back(v > 0 ? plus : v < 0 ? minus : zero);
    out.rows += uint32_t(m.rows);
  }
  return out;
}

Stage::LinearWeights Stage::upload_linear(PreparedLinear prepared) {
  LinearWeights w;
  if (prepared.ternary)
    w.ternary = std::make_unique<ops::TernaryMatrixGpu>(device_, *prepared.ternary, prepared.what,
                                                        options_.max_segment_bytes);
  else
    w.fp16 = std::make_unique<ops::Fp16MatrixGpu>(device_, prepared.halves, prepared.rows, prepared.cols, prepared.what,
                                                  options_.max_segment_bytes);
  return w;
}

void Stage::record_norm_linear(Recording& rec, BufferRange x, const Buffer& norm, uint32_t tokens, uint32_t cols,
                               const ops::QuantizedActivations& xq, const LinearWeights& w,
                               const ops::MatmulOutput& out, ops::Epilogue epilogue, bool one_sequence) {
  // The GPU plan normalizes with the fused layers' own prologue, so a token's bits do not depend
  // on whether its step was fused.
  const ops::NormedInput in{.x = x, .norm = norm.range(), .eps = c_.rms_eps, .tokens = tokens};
  if (w.ternary) {
    if (gpu_norms_) fused_->record_norm(rec, in, xq);
    else norm_quant_.record(rec, x, norm.range(), c_.rms_eps, tokens, xq);
    ternary_.record(rec, *w.ternary, xq, tokens, out, epilogue);
  } else {
    const BufferRange normed = normed_wide_.range(0, uint64_t(tokens) * cols * 4);
    if (gpu_norms_) fused_->record_norm(rec, in, cols, normed);
    else ops::record_rmsnorm(rec, {.x = x, .weight = norm.range(), .y = normed, .rows = tokens, .cols = cols, .eps = c_.rms_eps});
    // A step of one sequence (a prompt chunk) may take the matrix units; steps that mix sequences keep
    // the GEMV's bits (fp16_matmul.h).
    (one_sequence ? fp16_prompt_ : fp16_).record(rec, *w.fp16, normed, tokens, out, epilogue);
  }
}

// The forward pass of this stage for `tokens` tokens, read top to bottom.
void Stage::record_pass(Recording& rec, uint32_t tokens, LogitsMode mode, Selection select, bool one_sequence,
                        const PassIo& io, bool fold_attention) {
  const uint32_t T = tokens, D = uint32_t(c_.dim), F = uint32_t(c_.ffn_dim), V = uint32_t(c_.vocab);
  const uint32_t QD = uint32_t(c_.q_dim());
  const ops::HeadLayout heads{uint32_t(c_.n_heads), uint32_t(c_.n_kv_heads), uint32_t(c_.head_dim)};
  const ops::RopeParams rope{c_.rope_theta, c_.rope_neox ? ops::RopeForm::NeoX : ops::RopeForm::AdjacentPairs};
  const ops::AttentionPlan attention = plan_stage_attention(
      c_, options_, device_.info(), T, one_sequence ? ops::SequenceLayout::OneSequence : ops::SequenceLayout::Mixed);
  const ops::QkvView qkv = ops::QkvView::fused(qkv_.range(), T, heads);
  const ops::QuantizedActivations xq = q_dim_in_.view(), aq = q_attn_.view(), fq = q_ffn_.view();
  // Slot of each token; with one sequence the shaders skip that load (every token in slot 0).
  const BufferRange slots = options_.sequences > 1 ? io.slots : BufferRange{};

  // Chained layers: every count of this pass's links starts at 0 (and the timed-out flag, in a
  // recording's first pass).
  links_.reset();
  if (fused_ && recording_chained_ && T <= kFusedMaxTokens) {
    const uint64_t from = zero_layer_chain_flag_ ? 0 : 4;
    zero_layer_chain_flag_ = false;
    rec.fill(layer_chain_counters_.range(from, layer_chain_counters_.size() - from), 0);
    links_.emplace(layer_chain_counters_.range(), options_.chain_spin_limit, options_.chain_unreachable_waits ? 1 : 0);
  }
  // x[T, D] = embedding[ids]
  const uint64_t hidden_bytes = uint64_t(T) * D * 4;
  if (!spec_.embedding) rec.copy(hidden_in_.range(0, hidden_bytes), x_.range(0, hidden_bytes));
  if (spec_.embedding) {
    ops::EmbeddingArgs e{.ids = io.ids, .out = x_.range(), .tokens = T, .cols = D, .vocab = V};
    const bool i8_table = !table_ && head_i8_;
    if (i8_table) {
      e.type = ops::EmbeddingTable::I8;
      e.scales = head_i8_->scales().range();
    }
    const auto& segments = i8_table ? head_i8_->segments() : (table_ ? *table_ : *head_).segments();
    for (const auto& s : segments) e.segments.push_back({s.weights.range(), s.first_row, s.rows});
    ops::record_embedding(rec, e);
  }
  // The GPU plan's one-token steps (Stage::kFusedMaxTokens): five dispatches a layer, four with the
  // attention inside qkv. Larger steps record the separate ops, which read each weight once for all
  // the step's tokens.
  const bool fused = plan_ == ExecutionPlan::Gpu && T <= kFusedMaxTokens;
  if (fold_attention && (!fused || !why_no_folded_attention(attention).empty()))
    throw Error("internal: a pass of " + std::to_string(T) + " tokens cannot run the attention inside qkv: " +
                (fused ? why_no_folded_attention(attention) : std::string("not fused")));
  for (Layer& L : layers_) {
    const ops::KvCacheLayer cache{L.k_cache.range(), L.v_cache.range(), uint32_t(options_.context),
                                  uint32_t(options_.sequences)};
    if (fused && fusable(L)) {
      record_fused_layer(rec, L, T, attention, {heads, rope, io.positions, cache, slots}, fold_attention);
      continue;
    }
    // Attention block: x += o( sub_norm( attention( rope(q), rope(k), v ) ) ), q|k|v = W_qkv · int8(norm(x))
    record_norm_linear(rec, x_.range(), L.attn_norm, T, D, xq, L.qkv, {qkv_.range()}, ops::Epilogue::Store, one_sequence);
    ops::record_rope_kv_store(rec, qkv, heads, io.positions, rope, cache, slots);
    ops::record_attention(rec, attention, {.q = qkv, .positions = io.positions, .cache = cache,
                                           .out = attn_.range(), .scratch = attn_scratch_.range(),
                                           .slots = slots});
    record_norm_linear(rec, attn_.range(), L.attn_sub_norm, T, QD, aq, L.o, {x_.range()}, ops::Epilogue::Accumulate,
                       one_sequence);
    // FFN block: x += down( sub_norm( act(gate) * up ) ), gate|up = W_gate_up · int8(norm(x))
    record_norm_linear(rec, x_.range(), L.ffn_norm, T, D, xq, L.gate_up, {gate_up_.range()}, ops::Epilogue::Store,
                       one_sequence);
    const ops::Gating gating = c_.squared_relu() ? ops::Gating::SquaredRelu : ops::Gating::Silu;
    if (L.down.ternary && !gpu_norms_) {
      // act(gate) * up fused into the sub-norm + int8 quantization: one dispatch, no [T, F] fp32 round trip.
      norm_quant_.record_gated(rec, gate_up_.range(), gating, L.ffn_sub_norm.range(), c_.rms_eps, T, fq);
      ternary_.record(rec, *L.down.ternary, fq, T, {x_.range()}, ops::Epilogue::Accumulate);
    } else {
      ops::record_gated_activation(rec, {.gate_up = gate_up_.range(), .out = ffn_.range(), .tokens = T, .features = F,
                                         .gating = gating});
      record_norm_linear(rec, ffn_.range(), L.ffn_sub_norm, T, F, fq, L.down, {x_.range()}, ops::Epilogue::Accumulate,
                         one_sequence);
    }
  }
  close_layer_chain(rec);
  links_.reset();
  if (!spec_.head) {
    rec.copy(x_.range(0, hidden_bytes), hidden_out_.range(0, hidden_bytes));
    return;
  }
  if (mode == LogitsMode::None) return;
  // logits = head · norm(x): every token, or only the last one (decode and generation prefill).
  const uint64_t last_offset = uint64_t(T - 1) * D * 4;
  const bool last_only = mode == LogitsMode::Last && head_on_last_row_only(T);
  const uint32_t head_rows = last_only ? 1 : T;
  const ops::MatmulOutput logits{logits_.range(0, uint64_t(head_rows) * V * 4)};
  const BufferRange head_x = last_only ? x_.range(last_offset, uint64_t(D) * 4) : x_.range(0, hidden_bytes);
  const ops::NormedInput head_in{.x = head_x, .norm = output_norm_.range(), .eps = c_.rms_eps, .tokens = head_rows};
  if (fused && head_fusable() && select.kind == Selection::Argmax && argmax_in_head(head_rows)) {
    // The final norm in the head's prologue and the next token's pick in its last workgroup.
    const ops::FusedArgmax pick{.scratch = head_argmax_.range(), .result = io.selected, .clear_counter = false};
    if (head_i8_) fused_->record_with_argmax(rec, *head_i8_, head_in, logits, pick);
    else fused_->record_with_argmax(rec, *head_, head_in, logits, pick);
    return;
  }
  if (fused && head_fusable()) {  // the final norm in the head's prologue
    if (head_i8_) fused_->record(rec, *head_i8_, head_in, logits, ops::FusedEpilogue::Store);
    else fused_->record(rec, *head_, head_in, logits, ops::FusedEpilogue::Store);
  } else if (plan_ == ExecutionPlan::Gpu && head_fusable()) {  // the same norm, then the head's matmul
    const BufferRange normed = normed_.range(0, uint64_t(head_rows) * D * 4);
    fused_->record_norm(rec, head_in, D, normed);
    record_head(rec, normed, head_rows, logits);
  } else {
    ops::record_rmsnorm(rec, {.x = x_.range(), .weight = output_norm_.range(), .y = normed_.range(), .rows = T,
                              .cols = D, .eps = c_.rms_eps});
    record_head(rec, last_only ? normed_.range(last_offset, uint64_t(D) * 4) : normed_.range(0, hidden_bytes),
                head_rows, logits);
  }
  if (select.kind == Selection::Logits) return;
  // The next token's candidates, chosen on the GPU: the host reads 8 bytes (argmax) or k pairs per
  // row: the last token's row, or every row of a batched decode step.
  if (mode == LogitsMode::Last)
    record_selection(rec, head_on_last_row_only(T) ? 0 : T - 1, 1, select, io.selected);
  else
    record_selection(rec, 0, T, select, io.selected);
}

void Stage::record_fused_layer(Recording& rec, const Layer& L, uint32_t T, const ops::AttentionPlan& attention,
                               ops::RopeKvTarget rope_kv, bool fold_attention) {
  const ops::FusedEpilogue gated =
      c_.squared_relu() ? ops::FusedEpilogue::GatedSquaredRelu : ops::FusedEpilogue::GatedSilu;
  // Short contexts: attn = attention(q, K cache, V cache) by the qkv workgroup that completes each kv head.
  if (fold_attention)  // (the counters were zeroed once with the scratch)
    rope_kv.attention = ops::FoldedAttention{.plan = attention, .out = attn_.range(), .scratch = attn_scratch_.range(),
                                             .clear_counters = false};
  // q|k|v = W_qkv · int8(norm(x)); RoPE on q and k; k and v into the KV cache
  record_fused_linear(rec, x_.range(), L.attn_norm, T, L.qkv, {qkv_.range()}, ops::FusedEpilogue::RopeKvStore, &rope_kv);
  // attn = attention(q, K cache, V cache)
  if (!fold_attention) {
    close_layer_chain(rec);  // (the o dispatch then starts a new chain, after a barrier)
    ops::record_attention(rec, attention, {.q = ops::QkvView::fused(qkv_.range(), T, rope_kv.heads),
                                           .positions = rope_kv.positions, .cache = rope_kv.cache,
                                           .out = attn_.range(), .scratch = attn_scratch_.range(), .slots = rope_kv.slots});
  }
  // x += W_o · int8(sub_norm(attn))
  record_fused_linear(rec, attn_.range(), L.attn_sub_norm, T, L.o, {x_.range()}, ops::FusedEpilogue::Accumulate);
  // ffn = act(gate) * up, gate|up = W_gate_up · int8(norm(x))
  record_fused_linear(rec, x_.range(), L.ffn_norm, T, L.gate_up, {ffn_.range()}, gated);
  // x += W_down · int8(sub_norm(ffn))
  record_fused_linear(rec, ffn_.range(), L.ffn_sub_norm, T, L.down, {x_.range()}, ops::FusedEpilogue::Accumulate);
}

void Stage::record_fused_linear(Recording& rec, BufferRange x, const Buffer& norm, uint32_t tokens, const LinearWeights& w,
                                const ops::MatmulOutput& y, ops::FusedEpilogue epilogue,
                                const ops::RopeKvTarget* rope_kv) {
  const ops::NormedInput in{.x = x, .norm = norm.range(), .eps = c_.rms_eps, .tokens = tokens};
  std::optional<ops::FusedChainLink> link;
  if (links_) {
    if (!rec.chain_open()) {  // after a barrier (the embedding, or the separate attention)
      rec.begin_chain();
      links_->restart();
    }
    link = links_->next();
  }
  const ops::FusedChainLink* chain = link ? &*link : nullptr;
  const uint32_t groups = w.ternary ? fused_->record(rec, *w.ternary, in, y, epilogue, rope_kv, chain)
                                    : fused_->record(rec, *w.fp16, in, y, epilogue, rope_kv, chain);
  if (link) links_->recorded(groups);
}

bool Stage::fusable(const Layer& L) const {
  return gpu_norms_ && ops::FusedLinear::pairs_fit(L.qkv.segments()) &&
         ops::FusedLinear::pairs_fit(L.gate_up.segments()) && c_.head_dim % 4 == 0;
}

bool Stage::argmax_in_head(uint32_t rows) const {
  return rows == 1 && head_argmax_ && (head_i8_ ? head_i8_->segments() : head_->segments()).size() == 1;
}

bool Stage::head_fusable() const {
  return fused_->fits(uint32_t(c_.dim), head_i8_ ? ops::FusedLinear::Weights::Int8 : ops::FusedLinear::Weights::Fp16);
}

void Stage::record_head(Recording& rec, BufferRange x, uint32_t tokens, const ops::MatmulOutput& logits) {
  if (head_i8_)
    int8_.record(rec, *head_i8_, x, tokens, logits);
  else
    fp16_.record(rec, *head_, x, tokens, logits);
}

void Stage::record_selection(Recording& rec, uint64_t first_row, uint32_t rows, Selection select, BufferRange out) {
  const uint32_t V = uint32_t(c_.vocab);
  const BufferRange logits = logits_.range(first_row * V * 4, uint64_t(rows) * V * 4);
  if (select.kind == Selection::Argmax)
    ops::record_argmax(rec, {.logits = logits, .out = {out.buffer, out.offset, uint64_t(rows) * sizeof(ops::ArgmaxResult)},
                             .scratch = select_scratch_.range(), .rows = rows, .cols = V,
                             .plan = ops::plan_argmax(device_.info(), rows, V)});
  else
    ops::record_topk(rec, {.logits = logits,
                           .out = {out.buffer, out.offset, uint64_t(rows) * select.k * sizeof(ops::TopKEntry)},
                           .scratch = select_scratch_.range(), .rows = rows, .cols = V, .k = select.k,
                           .plan = ops::plan_topk(device_.info(), rows, V, select.k)});
}

Stage::PassIo Stage::step_io() const {
  if (ids_on_device_)
    return {ids_on_device_.range(), positions_on_device_.range(), slots_on_device_.range(), selected_.range()};
  return {ids_.range(), positions_.range(), slots_.range(), selected_.range()};
}

void Stage::record_step_inputs(Recording& rec) {
  if (!ids_on_device_) return;
  if (spec_.embedding) rec.copy(ids_.range(), ids_on_device_.range());
  rec.copy(positions_.range(), positions_on_device_.range());
  if (options_.sequences > 1) rec.copy(slots_.range(), slots_on_device_.range());
}

RecordingOptions Stage::recording_options() const {
  return {.timestamps = options_.timestamps != TimestampMode::None,
          .whole_pass = options_.timestamps == TimestampMode::Pass};
}

Recording& Stage::pass(uint32_t tokens, LogitsMode mode, Selection select, bool one_sequence, bool fold_attention,
                       bool chained) {
  chained = chained && tokens <= kFusedMaxTokens;
  auto& slot = passes_[{tokens, int(mode), int(select.kind), select.k, one_sequence, fold_attention, chained}];
  if (!slot) {
    // Kept only once whole: a recording that threw halfway must not be replayed next time.
    auto rec = std::make_unique<Recording>(device_, recording_options());
    recording_chained_ = chained;
    if (chained) begin_layer_chain_recording();
    record_step_inputs(*rec);
    record_pass(*rec, tokens, mode, select, one_sequence, step_io(), fold_attention);
    if (chained) end_layer_chain_recording(*rec);
    recording_chained_ = false;
    rec->finish();
    slot = std::move(rec);
  }
  return *slot;
}

void Stage::prepare_greedy_chain(uint32_t steps) {
  if (!spec_.embedding || !spec_.head) throw Error("internal: a greedy chain needs the embedding and the head");
  if (steps < 2 || steps > uint32_t(options_.greedy_chain))
    throw Error("internal: a greedy chain of " + std::to_string(steps) + " steps; this stage takes 2.." +
                std::to_string(options_.greedy_chain));
  for (const bool chained : layer_chain_forms()) {
    record_greedy_chain(steps, false, chained);
    if (steps <= fold_keys_) record_greedy_chain(steps, true, chained);
  }
}

void Stage::record_greedy_chain(uint32_t steps, bool fold_attention, bool chained) {
  auto& slot = greedy_chains_[{steps, fold_attention, chained}];
  if (slot) return;
  auto rec = std::make_unique<Recording>(device_, recording_options());
  const uint64_t stride = greedy_chain_stride(device_.info());
  recording_chained_ = chained;
  if (chained) begin_layer_chain_recording();
  record_step_inputs(*rec);
  const PassIo inputs = step_io();
  // The picks stay in device memory until the chain ends, where the device has its own.
  const Buffer& picks = greedy_picks_ ? greedy_picks_ : selected_;
  for (uint32_t i = 0; i < steps; ++i) {
    // Step i reads its position from slot i and its token from step i - 1's argmax (ArgmaxResult's
    // index comes first, so the embedding's ids[0] is the pick); the first token comes from the host.
    const PassIo io{.ids = i == 0 ? BufferRange{inputs.ids.buffer, 0, 4} : picks.range((i - 1) * stride, 4),
                    .positions = {inputs.positions.buffer, i * stride, 4},
                    .slots = inputs.slots,
                    .selected = picks.range(i * stride, sizeof(ops::ArgmaxResult))};
    record_pass(*rec, 1, LogitsMode::Last, {Selection::Argmax}, true, io, fold_attention);
  }
  if (greedy_picks_) rec->copy(greedy_picks_.range(0, steps * stride), selected_.range(0, steps * stride));
  if (chained) end_layer_chain_recording(*rec);
  recording_chained_ = false;
  rec->finish();
  slot = std::move(rec);
}

std::vector<uint32_t> Stage::run_greedy_chain(uint32_t id, uint32_t slot, uint32_t position, uint32_t steps) {
  if (pending_) throw Error("internal: a greedy chain while a stage step runs");
  if (slot >= uint32_t(options_.sequences))
    throw Error("KV slot " + std::to_string(slot) + " is outside the " + std::to_string(options_.sequences) +
                " sequences of this stage");
  if (id >= uint32_t(c_.vocab))
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(c_.vocab));
  if (uint64_t(position) + steps > uint64_t(options_.context))
    throw Error("a greedy chain of " + std::to_string(steps) + " steps from position " + std::to_string(position) +
                " passes the context of " + std::to_string(options_.context) + " tokens");
  // Folded only if every step's context is short (each step's position below fold_keys_).
  const bool fold = uint64_t(position) + steps <= fold_keys_;
  prepare_greedy_chain(steps);
  const uint64_t stride = greedy_chain_stride(device_.info());
  auto* positions = static_cast<uint8_t*>(positions_.mapped());
  for (uint32_t i = 0; i < steps; ++i) {
    const uint32_t p = position + i;
    std::memcpy(positions + i * stride, &p, 4);
  }
  std::memcpy(ids_.mapped(), &id, 4);
  std::memcpy(slots_.mapped(), &slot, 4);
  // Nothing of this run can be read as a single step's output afterwards (last_pass_ is set below).
  forget_last_step();
  auto chain_of = [&](bool chained) {
    prepare_greedy_chain(steps);  // again after a timed-out wait dropped the chained recordings
    return greedy_chains_.at({steps, fold, chained}).get();
  };
  Recording* rec = nullptr;
  if (chain_state_ == ChainState::Trial) {
    rec = run_layer_chain_trial(chain_of, 1, steps * stride);
  } else {
    const bool chained = chain_state_ == ChainState::On;
    rec = chain_of(chained);
    rec->submit_and_wait();
    if (chained && layer_chain_timed_out()) {  // redone with barriers: the same inputs, the same positions' K/V rewritten
      rec = chain_of(false);
      rec->submit_and_wait();
    }
  }
  last_pass_ = rec;
  std::vector<uint32_t> picks(steps);
  std::vector<uint8_t> results(steps * stride);
  device_.download(selected_, results.data(), results.size());
  for (uint32_t i = 0; i < steps; ++i) {
    ops::ArgmaxResult r;
    std::memcpy(&r, results.data() + i * stride, sizeof(r));
    picks[i] = r.index;
  }
  return picks;
}

void Stage::start(std::span<const uint32_t> ids, const TokenPlaces& places, LogitsMode mode, Selection select) {
  if (pending_) throw Error("internal: a stage step was started twice without finish()");
  const std::span<const uint32_t> positions = places.positions;
  if (select.kind != Selection::Logits && (!spec_.head || mode == LogitsMode::None))
    throw Error("internal: token selection needs the last stage and logits");
  if (select.kind == Selection::TopK && (select.k < 1 || select.k > ops::kMaxTopK))
    throw Error("top-k on the GPU takes k in 1.." + std::to_string(ops::kMaxTopK) + ", not " + std::to_string(select.k));
  const uint32_t T = uint32_t(positions.size());
  if (T == 0 || T > uint32_t(options_.max_tokens))
    throw Error("a step runs 1.." + std::to_string(options_.max_tokens) + " tokens, not " + std::to_string(T));
  for (uint32_t p : positions)
    if (p >= uint32_t(options_.context))
      throw Error("position " + std::to_string(p) + " is past the context of " + std::to_string(options_.context) +
                  " tokens");
  if (spec_.embedding) {
    if (ids.size() != T) throw Error("internal: ids and positions differ in length");
    for (uint32_t id : ids)
      if (id >= uint32_t(c_.vocab))
        throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(c_.vocab));
    std::memcpy(ids_.mapped(), ids.data(), T * 4);
  }
  if (places.slots.size() != T) throw Error("internal: slots and positions differ in length");
  for (uint32_t s : places.slots)
    if (s >= uint32_t(options_.sequences))
      throw Error("KV slot " + std::to_string(s) + " is outside the " + std::to_string(options_.sequences) +
                  " sequences of this stage");
  std::memcpy(positions_.mapped(), positions.data(), T * 4);
  std::memcpy(slots_.mapped(), places.slots.data(), T * 4);
  const bool fold = T == 1 && positions[0] < fold_keys_;
  const bool one_token = T <= kFusedMaxTokens;
  pending_trial_ = one_token && chain_state_ == ChainState::Trial;  // both forms run in finish()
  const bool chained = one_token && chain_state_ == ChainState::On;
  Recording& rec = pass(T, mode, select, places.one_sequence, fold, chained);
  if (!pending_trial_) rec.submit();
  pending_ = &rec;
  pending_key_ = {T, mode, select, places.one_sequence, fold, chained};
  last_tokens_ = T;
  last_mode_ = mode;
  last_select_ = select;
}

void Stage::finish() {
  if (!pending_) throw Error("internal: finish() without a started stage step");
  Recording* rec = pending_;
  pending_ = nullptr;
  const PassKey& k = pending_key_;
  if (pending_trial_) {
    pending_trial_ = false;
    last_pass_ = run_layer_chain_trial(
        [&](bool chained) { return &pass(k.tokens, k.mode, k.select, k.one_sequence, k.fold, chained); }, k.tokens,
        k.select.kind == Selection::Logits ? 0 : selected_.size());
    return;
  }
  rec->wait();
  last_pass_ = rec;
  if (k.chained && layer_chain_timed_out()) {  // redone with barriers from the same inputs (its K/V rows rewritten)
    Recording& again = pass(k.tokens, k.mode, k.select, k.one_sequence, k.fold, false);
    again.submit_and_wait();
    last_pass_ = &again;
  }
}

Recording* Stage::run_layer_chain_trial(const std::function<Recording*(bool chained)>& form, uint32_t tokens,
                                        uint64_t selected_bytes) {
  struct Outcome {
    Recording* rec = nullptr;
    double seconds = 0;
    std::vector<uint8_t> hidden, selected;
  };
  const Buffer& residual = residual_out();
  // The residual stream after the last layer and the GPU's selection: the head and the selection are
  // not chained, and compute the same from the same residual stream.
  auto run_form = [&](bool chained) {
    Outcome o;
    o.rec = form(chained);  // recorded first if new: only the run is timed
    o.seconds = submit_and_time(*o.rec);
    o.hidden.resize(uint64_t(tokens) * c_.dim * 4);
    device_.download(residual, o.hidden.data(), o.hidden.size());
    o.selected.resize(selected_bytes);
    if (selected_bytes) device_.download(selected_, o.selected.data(), selected_bytes);
    if (chained && options_.chain_trial_mismatch_pair == uint32_t(chain_trial_.pairs() + 1)) {
      // Tests: as if the device had raced, on the device (what the caller would read) and in the copy.
      o.hidden.back() ^= 1;
      device_.upload(residual, o.hidden.data(), o.hidden.size());
      if (spec_.head) {
        std::vector<uint8_t> logit(4);
        device_.download(logits_, logit.data(), 4);
        logit[0] ^= 1;
        device_.upload(logits_, logit.data(), 4);
      }
    }
    return o;
  };
  Outcome plain, chained;
  const bool chained_first = chain_trial_.chained_first();
  for (const bool chained_now : {chained_first, !chained_first}) {
    (chained_now ? chained : plain) = run_form(chained_now);
    // A timed-out wait turns chaining off and drops the chained recordings: the unchained form runs again.
    if (chained_now && layer_chain_timed_out()) return run_form(false).rec;
  }
  if (plain.hidden != chained.hidden || plain.selected != chained.selected) {
    stop_layer_chain(std::string("the chained pass gave other bits than the unchained one on this device (") +
                     (plain.hidden != chained.hidden ? "residual stream" : "selected tokens") + ", trial pair " +
                     std::to_string(chain_trial_.pairs() + 1) + ")");
    // The unchained form runs last, so that its results stand.
    return run_form(false).rec;
  }
  chain_trial_.add(plain.seconds, chained.seconds);
  // After the first timed pair: can the chain win at all on passes this long?
  const double gap = options_.chain_max_gap_seconds > 0 ? options_.chain_max_gap_seconds : LayerChainTrial::kMaxGapSeconds;
  const bool bounded = options_.chain_layers == LayerChain::Auto || options_.chain_max_gap_seconds > 0;
  if (bounded && chain_trial_.timed_pairs() == 1) {
    const size_t dispatches = profiler::pass_totals(*plain.rec, {}).dispatches;
    if (!LayerChainTrial::could_win(plain.seconds, dispatches, gap)) {
      char why[192];
      std::snprintf(why, sizeof why,
                    "a one-token step takes %.1f ms; chaining its %zu dispatches saves at most %.0f us each (%.1f%%), "
                    "under the %.0f%% it must win by",
                    plain.seconds * 1e3, dispatches, gap * 1e6, 100 * double(dispatches) * gap / plain.seconds,
                    100 * (1 - LayerChainTrial::kKeepRatio));
      stop_layer_chain(why);
      return plain.rec;
    }
  }
  if (chain_trial_.decided()) {
    if (chain_trial_.keep_chain()) {
      chain_state_ = ChainState::On;
      chain_note_ = "on: " + chain_trial_.summary() + ", same bits";
    } else {
      stop_layer_chain(chain_trial_.summary());
    }
  }
  // Either form's results (the same bits); the unchained recording stands for the step.
  return plain.rec;
}

double Stage::submit_and_time(Recording& rec) {
  const auto start = std::chrono::steady_clock::now();
  rec.submit_and_wait();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void Stage::forget_last_step() {
  if (pending_) throw Error("internal: forget_last_step() while the stage's step runs");
  last_pass_ = nullptr;
  last_tokens_ = 0;
  last_mode_ = LogitsMode::None;
  last_select_ = {};
}

void Stage::abandon() noexcept {
  if (!pending_) return;
  try {
    // Only the wait: a chained step whose wait timed out is not redone while the caller stops.
    Recording* rec = pending_;
    pending_ = nullptr;
    if (pending_trial_) {  // a trial's step was never submitted: nothing of it can be read
      pending_trial_ = false;
      forget_last_step();
      return;
    }
    rec->wait();
    last_pass_ = rec;
  } catch (...) {
    // The caller is already reporting the error that stopped the pipeline.
  }
}

// Recordings must not be freed while the device still runs them.
Stage::~Stage() { abandon(); }

std::vector<float> Stage::read_hidden(uint32_t tokens) const {
  if (pending_) throw Error("internal: read_hidden() while the stage's step runs");
  if (tokens > uint32_t(options_.max_tokens)) throw Error("internal: read_hidden of too many tokens");
  std::vector<float> h(uint64_t(tokens) * c_.dim);
  // The last stage keeps no hand-over buffer: read the residual stream itself (tests, diagnostics).
  device_.download(residual_out(), h.data(), h.size() * 4);
  return h;
}

void Stage::write_hidden(std::span<const float> hidden) {
  if (pending_) throw Error("internal: write_hidden() while the stage's step runs");
  if (spec_.embedding) throw Error("internal: the first stage takes token ids, not a hidden state");
  if (hidden.size() > uint64_t(options_.max_tokens) * c_.dim || hidden.size() % c_.dim)
    throw Error("internal: hidden state of " + std::to_string(hidden.size()) + " floats does not fit the stage");
  std::memcpy(hidden_in_.mapped(), hidden.data(), hidden.size() * 4);
}

bool Stage::head_on_last_row_only(uint32_t tokens) const {
  return uint64_t(tokens - 1) * c_.dim * 4 % device_.info().min_storage_buffer_offset_alignment == 0;
}

std::vector<float> Stage::read_last_logits() const {
  if (!spec_.head || !last_tokens_ || last_mode_ == LogitsMode::None) throw Error("internal: no logits to read");
  const uint64_t row =
      last_mode_ == LogitsMode::Last && head_on_last_row_only(last_tokens_) ? 0 : last_tokens_ - 1;
  std::vector<float> out(c_.vocab);
  device_.download(logits_, out.data(), out.size() * 4, row * c_.vocab * 4);
  return out;
}

std::vector<float> Stage::read_logits_row(uint32_t row) const {
  if (!spec_.head || !last_tokens_ || last_mode_ == LogitsMode::None) throw Error("internal: no logits to read");
  if (last_mode_ == LogitsMode::Last) {
    if (row != 0) throw Error("internal: only row 0 after a step with the last token's logits");
    return read_last_logits();
  }
  if (row >= last_tokens_) throw Error("internal: logits row " + std::to_string(row) + " of " + std::to_string(last_tokens_));
  std::vector<float> out(c_.vocab);
  device_.download(logits_, out.data(), out.size() * 4, uint64_t(row) * c_.vocab * 4);
  return out;
}

// Rows of the selection: one (LogitsMode::Last) or every token's.
static uint32_t selection_rows(LogitsMode mode, uint32_t tokens) { return mode == LogitsMode::Last ? 1 : tokens; }

uint32_t Stage::read_argmax(uint32_t row) const {
  if (last_select_.kind != Selection::Argmax) throw Error("internal: the last step did not select an argmax");
  if (row >= selection_rows(last_mode_, last_tokens_)) throw Error("internal: argmax row out of range");
  ops::ArgmaxResult r{};
  device_.download(selected_, &r, sizeof(r), uint64_t(row) * sizeof(r));
  return r.index;
}

std::vector<Candidate> Stage::read_top_k(uint32_t row) const {
  if (last_select_.kind != Selection::TopK) throw Error("internal: the last step did not select a top-k");
  if (row >= selection_rows(last_mode_, last_tokens_)) throw Error("internal: top-k row out of range");
  std::vector<ops::TopKEntry> entries(last_select_.k);
  device_.download(selected_, entries.data(), entries.size() * sizeof(ops::TopKEntry),
                   uint64_t(row) * last_select_.k * sizeof(ops::TopKEntry));
  std::vector<Candidate> out;
  for (const auto& e : entries)
    if (e.index != 0xffffffffu) out.push_back({e.index, e.value});
  return out;
}

std::vector<float> Stage::read_all_logits() const {
  if (!spec_.head || !last_tokens_ || last_mode_ == LogitsMode::None) throw Error("internal: no logits to read");
  std::vector<float> out(uint64_t(last_tokens_) * c_.vocab);
  device_.download(logits_, out.data(), out.size() * 4);
  return out;
}

std::vector<DispatchTiming> Stage::last_timings() const { return last_pass_ ? last_pass_->timings() : std::vector<DispatchTiming>{}; }

}  // namespace ternvk

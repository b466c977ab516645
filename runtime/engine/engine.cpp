#include "runtime/engine/engine.h"

#include <algorithm>
#include <chrono>

#include "runtime/core/error.h"
#include "runtime/engine/gpu_footprint.h"
#include "runtime/engine/placement.h"
#include "runtime/ops/topk.h"

namespace ternvk {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Engine::Engine(Instance& instance, const std::filesystem::path& model, EngineOptions options)
    : options_(std::move(options)) {
  source_ = open_model(model);
  const ModelConfig& c = source_->config();
  if (options_.load_tokenizer) tokenizer_ = source_->tokenizer();
  if (tokenizer_ && tokenizer_->vocab_size() > c.vocab)
    throw Error(model.string() + ": the tokenizer has " + std::to_string(tokenizer_->vocab_size()) +
                " tokens but the model only " + std::to_string(c.vocab) + " embedding rows");
  context_ = options_.context > 0 ? options_.context : std::min(c.context, 4096);
  if (context_ > c.context)
    throw Error("context " + std::to_string(context_) + " is larger than the model's maximum of " +
                std::to_string(c.context) + " positions");
  if (options_.prefill_chunk < 1 || options_.prefill_chunk > 4096)
    throw Error("prefill chunk " + std::to_string(options_.prefill_chunk) + " is outside 1..4096");
  std::vector<const DeviceInfo*> infos;
  if (options_.devices.empty()) {
    infos.push_back(&instance.select(options_.device));
  } else {
    for (int d : options_.devices) infos.push_back(&instance.select(d));
  }
  // Logical devices first: an automatic split over several devices is measured on them.
  for (const DeviceInfo* info : infos) devices_.push_back(std::make_unique<Device>(instance, *info));
  std::vector<int> split = options_.split;
  if (split.empty() && devices_.size() > 1) {
    std::vector<double> speeds;
    for (auto& d : devices_) speeds.push_back(calibrate_ternary_gemv(*d));
    split = split_by_speed(c.n_layers, speeds);
  }
  const std::vector<StageSpec> specs = plan_stages(c, int(infos.size()), split);
  // Refuse before uploading anything when a stage cannot fit its device's memory.
  for (size_t i = 0; i < specs.size(); ++i) {
    const DeviceInfo& info = *infos[i];
    const auto estimate = options_.fp16_baseline ? estimate_fp16_footprint : estimate_gpu_footprint;
    const GpuFootprint need = estimate(c, context_, 1, options_.prefill_chunk,
                                       specs[i].end_layer - specs[i].first_layer, specs[i].embedding, specs[i].head);
    const uint64_t heap = info.unified_memory() ? (info.heaps.empty() ? 0 : info.heaps[0].size) : info.device_local_bytes();
    if (heap && need.total() > heap)
      throw OutOfMemoryError(model.string() + ": stage " + std::to_string(i) + " needs about " +
                             std::to_string(need.total() >> 20) + " MiB on the GPU (" + std::to_string(need.weights >> 20) +
                             " MiB weights, " + std::to_string(need.kv_cache >> 20) + " MiB KV cache at " +
                             std::to_string(context_) + " tokens) but device " + std::to_string(info.index) + " (" +
                             info.name + ") has " + std::to_string(heap >> 20) +
                             " MiB. Try a smaller context (-c), another device, or more devices");
  }
  StageOptions so{.context = context_, .max_tokens = options_.prefill_chunk, .dot = options_.dot,
                  .timestamps = options_.timestamps, .max_segment_bytes = options_.max_segment_bytes,
                  .fp16_baseline = options_.fp16_baseline};
  for (size_t i = 0; i < specs.size(); ++i) {
    try {
      stages_.push_back(std::make_unique<Stage>(*devices_[i], *source_, specs[i], so, options_.progress));
    } catch (const OutOfMemoryError& e) {
      throw OutOfMemoryError("stage " + std::to_string(i) + " on device " + std::to_string(infos[i]->index) + " (" +
                             infos[i]->name + "): " + e.what());
    }
  }
}

Engine::~Engine() = default;

uint64_t Engine::peak_gpu_bytes() const {
  uint64_t total = 0;
  for (const auto& d : devices_) total += d->memory().peak_bytes_in_use();
  return total;
}

std::string Engine::describe_plan() const {
  std::string out;
  for (size_t i = 0; i < stages_.size(); ++i) {
    const Stage& s = *stages_[i];
    const StageSpec& sp = s.spec();
    out += "stage " + std::to_string(i) + ": device " + std::to_string(s.device().info().index) + " (" +
           s.device().info().name + "), layers " + std::to_string(sp.first_layer) + ".." +
           std::to_string(sp.end_layer - 1) + (sp.embedding ? " + embedding" : "") + (sp.head ? " + head" : "") +
           ", weights " + std::to_string(s.weight_bytes() >> 10) + " KiB, KV cache " + std::to_string(s.kv_bytes() >> 10) +
           " KiB\n";
  }
  return out;
}

void Engine::run_stages(std::span<const uint32_t> ids, std::span<const uint32_t> positions, LogitsMode mode,
                        Selection select) {
  for (size_t i = 0; i < stages_.size(); ++i) {
    const bool is_last = i + 1 == stages_.size();
    if (i > 0) stages_[i]->write_hidden(stages_[i - 1]->read_hidden(uint32_t(positions.size())));
    try {
      stages_[i]->run(ids, positions, is_last ? mode : LogitsMode::None, is_last ? select : Selection{});
    } catch (const Error& e) {
      if (stages_.size() == 1) throw;
      throw Error("stage " + std::to_string(i) + " on device " + std::to_string(stages_[i]->device().info().index) +
                  " (" + stages_[i]->device().info().name + "): " + e.what());
    }
  }
}

Tokenizer& Engine::tokenizer() const {
  if (!tokenizer_) throw Error("internal: this engine was created without its tokenizer");
  return *tokenizer_;
}

void Engine::truncate(int n) {
  if (n < 0 || n > position_) throw Error("internal: truncate to " + std::to_string(n) + " of " + std::to_string(position_));
  position_ = n;
  sequence_.resize(size_t(n));
}

void Engine::check_fits(size_t n) const {
  if (n == 0) throw Error("nothing to evaluate: the token list is empty");
  if (position_ + int64_t(n) > context_)
    throw Error("the sequence would reach " + std::to_string(position_ + n) + " tokens, more than the context of " +
                std::to_string(context_) + " (raise -c, up to " + std::to_string(config().context) + ")");
}

std::vector<float> Engine::eval(std::span<const uint32_t> tokens, bool all_logits) {
  if (!all_logits) {
    feed(tokens, {Selection::Logits});
    return last().read_last_logits();
  }
  std::vector<float> all;
  feed(tokens, {}, &all);
  return all;
}

void Engine::feed(std::span<const uint32_t> tokens, Selection select, std::vector<float>* all_logits) {
  check_fits(tokens.size());
  const size_t chunk = size_t(options_.prefill_chunk);
  for (size_t start = 0; start < tokens.size(); start += chunk) {
    const size_t n = std::min(chunk, tokens.size() - start);
    std::vector<uint32_t> positions(n);
    for (size_t i = 0; i < n; ++i) positions[i] = uint32_t(position_ + i);
    const bool last_chunk = start + n == tokens.size();
    if (all_logits)
      run_stages(tokens.subspan(start, n), positions, LogitsMode::All, {});
    else
      run_stages(tokens.subspan(start, n), positions, last_chunk ? LogitsMode::Last : LogitsMode::None,
                 last_chunk ? select : Selection{});
    position_ += int(n);
    sequence_.insert(sequence_.end(), tokens.begin() + long(start), tokens.begin() + long(start + n));
    if (all_logits) {
      auto part = last().read_all_logits();
      all_logits->insert(all_logits->end(), part.begin(), part.end());
    }
  }
}

uint32_t Engine::next_token(std::span<const uint32_t> tokens, Sampler& sampler, std::span<const uint32_t> history) {
  const SamplingParams& p = sampler.params();
  if (p.greedy() && !p.has_penalties()) {
    feed(tokens, {Selection::Argmax});
    return last().read_argmax();
  }
  if (!p.needs_all_logits() && p.top_k <= int(ops::kMaxTopK)) {
    feed(tokens, {Selection::TopK, uint32_t(p.top_k)});
    return sampler.sample_candidates(last().read_top_k());
  }
  feed(tokens, {Selection::Logits});
  return sampler.sample(last().read_last_logits(), history);
}

GenerationStats Engine::generate(std::span<const uint32_t> prompt, int max_tokens, Sampler& sampler,
                                 const std::function<bool(uint32_t)>& on_token) {
  cancelled_ = false;
  GenerationStats stats;
  stats.prompt_tokens = int(prompt.size());
  stats.stop_reason = "length";
  if (max_tokens <= 0) return stats;
  std::vector<uint32_t> history(prompt.begin(), prompt.end());
  const auto eos = tokenizer_ ? tokenizer_->eos() : std::nullopt;
  const auto eot = tokenizer_ ? tokenizer_->eot() : std::nullopt;
  auto t0 = std::chrono::steady_clock::now();
  uint32_t next = next_token(prompt, sampler, history);
  stats.prompt_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  while (true) {
    if ((eos && next == *eos) || (eot && next == *eot)) {
      stats.stop_reason = "eos";
      break;
    }
    history.push_back(next);
    ++stats.generated_tokens;
    if (!on_token(next)) {
      stats.stop_reason = "stop string";
      break;
    }
    if (stats.generated_tokens == max_tokens) break;
    if (cancelled_) {
      stats.stop_reason = "cancelled";
      break;
    }
    if (position_ >= context_) {
      stats.stop_reason = "context";
      break;
    }
    const uint32_t one[] = {next};
    next = next_token(one, sampler, history);
  }
  stats.decode_seconds = seconds_since(t0);
  return stats;
}

}  // namespace ternvk

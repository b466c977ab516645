// The engine: a model loaded onto one or more devices as stages, its tokenizer, and one sequence
// being generated. Safe to drive from a worker thread; cancel() may be called from any thread.
#pragma once
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/instance.h"
#include "runtime/engine/model_source.h"
#include "runtime/engine/sampler.h"
#include "runtime/engine/stage.h"

namespace ternvk {

struct EngineOptions {
  std::optional<int> device;  // index from `ternvk devices`; default: TERNVK_DEVICE, else the best
  // Several devices: the model runs as a pipeline of stages, one per entry (an index may repeat:
  // each entry is its own logical device). Overrides `device` when not empty.
  std::vector<int> devices;
  std::vector<int> split;     // layers per device; empty: an even split
  int context = 0;            // KV cache positions; 0: min(model maximum, 4096)
  int prefill_chunk = 64;     // tokens per prefill step (the GEMM path)
  ops::TernaryDot dot = ops::TernaryDot::Auto;
  bool timestamps = false;    // per-dispatch GPU times (profiler)
  uint64_t max_segment_bytes = 0;  // tests: force tensors to split
  std::function<void(int done, int total)> progress;  // while loading
  bool fp16_baseline = false;  // linear weights in FP16 (the baseline every claim is measured against)
  bool load_tokenizer = true;  // tests of weights-only files turn it off
};

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prompt_seconds = 0;
  double decode_seconds = 0;
  std::string stop_reason;  // "eos", "length", "context", "cancelled", "stop string"
  double prompt_tokens_per_second() const { return prompt_seconds > 0 ? prompt_tokens / prompt_seconds : 0; }
  double decode_tokens_per_second() const { return decode_seconds > 0 ? generated_tokens / decode_seconds : 0; }
};

class Engine {
 public:
  Engine(Instance& instance, const std::filesystem::path& model, EngineOptions options = {});
  ~Engine();

  const ModelConfig& config() const { return source_->config(); }
  const ModelSource& source() const { return *source_; }
  Tokenizer& tokenizer() const;
  Device& device() const { return *devices_.front(); }  // the first stage's
  size_t stage_count() const { return stages_.size(); }
  const Stage& stage(size_t i) const { return *stages_.at(i); }
  // The placement: each stage's device, layers, and bytes of weights and KV cache.
  std::string describe_plan() const;
  int context() const { return context_; }
  int position() const { return position_; }
  uint64_t peak_gpu_bytes() const;
  const Stage& stage() const { return *stages_.back(); }

  // Starts a new sequence at position 0.
  void reset() { truncate(0); }
  // Keeps only the first `n` tokens of the sequence (the KV cache beyond them is overwritten later).
  void truncate(int n);
  // The tokens whose keys and values are in the cache, in order.
  const std::vector<uint32_t>& sequence() const { return sequence_; }
  // Feeds tokens at the next positions (in prefill chunks) and returns the last token's logits, or
  // every token's logits [n * vocab] when `all_logits`.
  std::vector<float> eval(std::span<const uint32_t> tokens, bool all_logits = false);

  // Feeds `prompt` then samples up to `max_tokens` tokens, calling `on_token` with each (return
  // false to stop). Stops at EOS/EOT, at the context's end, or when cancel() is called.
  GenerationStats generate(std::span<const uint32_t> prompt, int max_tokens, Sampler& sampler,
                           const std::function<bool(uint32_t)>& on_token);
  void cancel() { cancelled_ = true; }
  // Feeds tokens and picks the next one with `sampler`: on the GPU (argmax, or top-k candidates)
  // when the sampling settings allow, else from the full row of logits.
  uint32_t next_token(std::span<const uint32_t> tokens, Sampler& sampler, std::span<const uint32_t> history);

  // Tokenizer ids (int32) as the engine's token ids.
  static std::vector<uint32_t> ids(const std::vector<TokenId>& tokens) { return {tokens.begin(), tokens.end()}; }

 private:
  // Feeds tokens in prefill chunks; the last chunk selects `select`, or with `all_logits` every
  // chunk's logits are appended there instead.
  void feed(std::span<const uint32_t> tokens, Selection select, std::vector<float>* all_logits = nullptr);
  void check_fits(size_t n) const;
  // Runs every stage on one chunk, handing the hidden state from device to device through the host.
  void run_stages(std::span<const uint32_t> ids, std::span<const uint32_t> positions, LogitsMode mode,
                  Selection select);
  Stage& last() { return *stages_.back(); }
  std::vector<std::unique_ptr<Device>> devices_;
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::unique_ptr<Stage>> stages_;
  EngineOptions options_;
  int context_ = 0;
  int position_ = 0;
  std::vector<uint32_t> sequence_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace ternvk

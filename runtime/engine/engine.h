// The engine: a model loaded onto one or more devices as stages, its tokenizer, and the sequences
// being generated. Each sequence lives in a KV cache slot (EngineOptions::sequences of them); the
// single-sequence calls (eval, generate, next_token, truncate) use slot 0, and decode() advances
// several slots in one forward pass (batched decode: the server, throughput benchmarks).
// Drive it from one thread at a time; cancel() may be called from any thread.
#pragma once
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <utility>
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
  // The prefill GEMM's multiply units: the matrix units where the device has them (int8 for ternary
  // models, fp16 for the FP16 baseline's prompt chunks) and they pass a self-check on it (Auto), or
  // forced (benchmarks compare both in one run).
  ops::GemmUnits gemm_units = ops::GemmUnits::Auto;
  // GPU times (profiler): of every dispatch, or of whole passes (undistorted on GPUs).
  TimestampMode timestamps = TimestampMode::None;
  uint64_t max_segment_bytes = 0;  // tests: force tensors to split
  // Tests and benchmarks: the GPU plan's fused layers split as this shape says instead of their pick.
  std::optional<ops::FusedLinearShape> fused_shape;
  std::function<void(int done, int total)> progress;  // while loading
  // Called once the placement is decided, before any weight is uploaded, with one line per stage:
  // device, layers, estimated bytes of weights and KV cache, expected share of a token's time.
  std::function<void(const std::string& plan)> on_plan;
  bool fp16_baseline = false;  // linear weights in FP16 (the baseline every claim is measured against)
  // The output head (and the embedding when tied) as FP16 (default) or int8 rows: half its bytes,
  // which dominate a decode token of small models (docs/performance.md "Int8 head").
  HeadPrecision head = HeadPrecision::F16;
  bool load_tokenizer = true;  // tests of weights-only files turn it off
  // KV cache slots: sequences held at once (batched decode, the server's --parallel). Each slot has
  // `context` positions; the KV cache is allocated up front for all of them.
  int sequences = 1;
  // The forward pass each stage records: the GPU plan (fused decode layers) or the CPU plan;
  // Auto picks by each stage's device type (ExecutionPlan in stage.h).
  ExecutionPlan plan = ExecutionPlan::Auto;
  // Greedy decoding (decode_greedy(), generate() without penalties): up to this many steps a
  // submit, the GPU feeding each step's pick to the next, so the host's round trip is paid once a
  // chain (docs/performance.md, "Greedy tokens chained on the GPU"). 1: a submit a token. Profiling
  // (timestamps) times single passes, so it takes 1.
  int greedy_chain = 16;
  // decode_greedy's time a submit: chains shorten so that one takes about this long at the measured
  // speed (streamed text stays smooth on slow devices). 0: no limit (tests: always the longest chain).
  double greedy_chain_budget_ms = 25;
  // Token ids, positions and KV slots read from device-local copies each pass makes first, or from
  // the host-visible buffers the host writes (StageOptions::step_inputs_on_device). Unset: copies
  // on devices with memory of their own (discrete GPUs). Benchmarks compare both.
  std::optional<bool> step_inputs_on_device;
  // StageOptions::fold_attention: the attention inside the qkv dispatch of one-token steps at short
  // contexts (GPU plan). Unset: wherever the device can.
  std::optional<bool> fold_attention;
  uint32_t attention_min_split = 0;  // tests: StageOptions::attention_min_split
  // StageOptions::chain_layers: the GPU plan's one-token steps with their fused dispatches chained (no
  // barriers between them). Auto: on GPUs, the first one-token steps run both ways, checked for the same
  // bits and timed, and the chain stays only where it wins (LayerChainTrial); off on CPU devices.
  LayerChain chain_layers = LayerChain::Auto;
  // The trial ends while the engine loads (Engine::settle_layer_chain), so that the first tokens a
  // caller asks for run one form each. false: it runs in the first one-token steps (tests).
  bool settle_layer_chain_at_load = true;
  uint32_t chain_spin_limit = 0;          // tests: StageOptions::chain_spin_limit
  bool chain_unreachable_waits = false;   // tests: StageOptions::chain_unreachable_waits
  uint32_t chain_trial_mismatch_pair = 0;  // tests: StageOptions::chain_trial_mismatch_pair
  double chain_max_gap_seconds = 0;        // tests: StageOptions::chain_max_gap_seconds
  // StageOptions::matrix_splits: the rule that splits the GPU plan's fused matrices, argued (Rule) or
  // timed on the device as the engine loads (Measure; Auto on GPUs), before the chained layers' trial.
  MatrixSplits matrix_splits = MatrixSplits::Auto;
  uint32_t split_trial_keep = 0;      // tests: StageOptions::split_trial_keep
  uint32_t split_trial_mismatch = 0;  // tests: StageOptions::split_trial_mismatch
};

// What one sequence's step produced (prefill() and decode()), as asked by its Selection: the token
// the GPU picked (Argmax), its top candidates (TopK), or the full row of logits (Logits).
struct StepOutput {
  uint32_t token = 0;                 // Argmax
  std::vector<Candidate> candidates;  // TopK, sorted by logit, highest first
  std::vector<float> logits;          // Logits: [vocab]
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

// Tokens picked but not yet handed to the caller. A greedy chain feeds every pick but its last, so
// the sequence runs fed_ahead() tokens ahead of what was handed out; a loop that stops early gives
// them back (Engine::take_back), leaving the sequence of one step a submit.
class PicksAhead {
 public:
  void refill(std::vector<uint32_t> picks) {
    picks_ = std::move(picks);
    at_ = 0;
  }
  bool empty() const { return at_ == picks_.size(); }
  uint32_t take() { return picks_.at(at_++); }
  uint32_t newest() const { return picks_.back(); }
  int fed_ahead() const { return int(picks_.size() - at_); }
  // Forgets the picks not handed out; returns how many were fed.
  int drop_rest() {
    const int n = fed_ahead();
    picks_.resize(at_);
    return n;
  }

 private:
  std::vector<uint32_t> picks_;
  size_t at_ = 0;
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
  // Steps redone with barriers because a chained wait timed out (EngineOptions::chain_layers), over
  // all stages; a stage that redid one no longer chains.
  int chain_redos() const {
    int n = 0;
    for (const auto& s : stages_) n += s->chain_redos();
    return n;
  }
  // What became of the chained layers (Stage::layer_chain_note), one stage's note, or each stage's.
  std::string layer_chain_note() const;
  // The rule the fused matrices split by and how it was chosen (Stage::matrix_split_note), likewise.
  std::string matrix_split_note() const;
  const Stage& stage(size_t i) const { return *stages_.at(i); }
  // The placement: each stage's device, layers, and bytes of weights and KV cache.
  std::string describe_plan() const;
  int context() const { return context_; }
  int position() const { return position(0); }
  int sequences() const { return int(slots_.size()); }
  int position(int slot) const { return slot_at(slot).position; }
  uint64_t peak_gpu_bytes() const;
  const Stage& stage() const { return *stages_.back(); }

  // Starts a new sequence at position 0.
  void reset() { truncate(0); }
  // Keeps only the first `n` tokens of the sequence (the KV cache beyond them is overwritten later).
  void truncate(int n) { truncate(0, n); }
  void truncate(int slot, int n);
  // The tokens whose keys and values are in the cache, in order.
  const std::vector<uint32_t>& sequence() const { return sequence(0); }
  const std::vector<uint32_t>& sequence(int slot) const { return slot_at(slot).tokens; }

  // Feeds `tokens` to one slot at its next positions (in prefill chunks) and returns what `select`
  // asks of the last token.
  StepOutput prefill(int slot, std::span<const uint32_t> tokens, Selection select);
  // One decode step of several sequences in one forward pass: tokens[i] is appended to slots[i]
  // (distinct slots, at most max_batch() of them). Returns one output per slot, in order. Results
  // do not depend on which other sequences share the step.
  std::vector<StepOutput> decode(std::span<const int> slots, std::span<const uint32_t> tokens, Selection select);
  // Sequences one decode() step can take.
  int max_batch() const { return max_tokens_; }
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
  // Greedy decoding of sequence 0: feeds `token` and returns the tokens picked after it, one
  // submit for up to `max_steps` steps chained on the GPU (each step's embedding reads the previous
  // step's argmax). How many a submit runs adapts to the measured time a token: a power of two, at
  // most EngineOptions::greedy_chain and max_steps, within greedy_chain_budget_ms a submit (growing
  // at most twofold a call). The sequence advances by the number returned (every returned token but the
  // last was fed); truncate() takes back what the caller does not keep.
  std::vector<uint32_t> decode_greedy(uint32_t token, int max_steps) { return decode_greedy(0, token, max_steps); }
  // The same for the sequence in KV slot `slot` (the C API's ternvk_generate). Where a step's
  // logits are all NaN, the picks before it are returned, and a call starting there throws.
  std::vector<uint32_t> decode_greedy(int slot, uint32_t token, int max_steps);
  // Takes back what a chain fed past the last token `picks` handed out.
  void take_back(int slot, PicksAhead& picks) { truncate(slot, position(slot) - picks.drop_rest()); }
  // Records every chain length decode_greedy may run (benchmarks: nothing is recorded while timed).
  void prepare_greedy_chains();
  // Runs the chained layers' trial (EngineOptions::chain_layers Auto or Measure) to its end now: scratch
  // decode steps of sequence 0 (logits, the GPU's argmax and greedy chains of two, on both sides of the
  // position where the attention leaves qkv where the context has room), which is reset afterwards. The
  // engine calls it as it loads (EngineOptions::settle_layer_chain_at_load). Every sequence must be
  // empty. Nothing to do where no trial runs.
  void settle_layer_chain();
  bool layer_chain_trial_running() const;  // in any stage

  // Tokenizer ids (int32) as the engine's token ids.
  static std::vector<uint32_t> ids(const std::vector<TokenId>& tokens) { return {tokens.begin(), tokens.end()}; }

 private:
  // Feeds tokens in prefill chunks; the last chunk selects `select`, or with `all_logits` every
  // chunk's logits are appended there instead.
  void feed(int slot, std::span<const uint32_t> tokens, Selection select, std::vector<float>* all_logits = nullptr);
  void check_fits(int slot, size_t n) const;
  StepOutput read_selection(Selection select, uint32_t row) const;
  // Runs `steps` steps through every stage as a pipeline: at tick j stage k runs step j - k, so all
  // devices compute at once (micro-batched prefill, staggered batched decode); with one stage the
  // steps simply run in order. The hidden state moves between stages through the host. `input(i)`
  // describes step i; `on_last_stage_done(i)` reads its results before the next step overwrites them.
  using StepInputs = std::tuple<std::span<const uint32_t>, TokenPlaces, LogitsMode, Selection>;
  void run_pipeline(size_t steps, const std::function<StepInputs(size_t)>& input,
                    const std::function<void(size_t)>& on_last_stage_done);
  struct Slot {
    int position = 0;
    std::vector<uint32_t> tokens;
  };
  // After a greedy chain from `token` (Stage::run_greedy_chain): the slot holds `token` and every pick
  // but the last, each step one position further.
  void advance_by_chain(Slot& slot, uint32_t token, const std::vector<uint32_t>& picks);
  const Slot& slot_at(int slot) const;
  Slot& slot_at(int slot) { return const_cast<Slot&>(std::as_const(*this).slot_at(slot)); }
  Stage& last() { return *stages_.back(); }
  std::vector<std::unique_ptr<Device>> devices_;
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::unique_ptr<Stage>> stages_;
  EngineOptions options_;
  int context_ = 0;
  int max_tokens_ = 0;  // tokens per forward pass: the prefill chunk or the largest decode batch
  std::vector<Slot> slots_;
  std::atomic<bool> cancelled_{false};
  int chain_steps_ = 1;  // decode_greedy's next chain length
};

}  // namespace ternvk

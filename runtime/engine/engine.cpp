#include "runtime/engine/engine.h"

#include <algorithm>
#include <bit>
#include <chrono>

#include "runtime/core/error.h"
#include "runtime/engine/placement.h"
#include "runtime/ops/topk.h"

namespace ternvk {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The GPU's argmax finds no token in a row of only NaN (ops::ArgmaxResult's index is then ~0).
[[noreturn]] void throw_no_pick(int position) {
  throw Error("no token could be picked after position " + std::to_string(position) +
              ": every logit is NaN (a damaged model file?)");
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
  if (options_.greedy_chain < 1 || options_.greedy_chain > 64)
    throw Error("greedy chain " + std::to_string(options_.greedy_chain) + " is outside 1..64");
  if (!(options_.greedy_chain_budget_ms >= 0))
    throw Error("greedy chain budget " + std::to_string(options_.greedy_chain_budget_ms) + " ms is below 0");
  // With a time budget the first chain is one step (a measure of the speed); without, the longest.
  chain_steps_ = options_.greedy_chain_budget_ms > 0 ? 1 : options_.greedy_chain;
  if (options_.sequences < 1 || options_.sequences > 4096)
    throw Error("sequences (parallel) " + std::to_string(options_.sequences) + " is outside 1..4096");
  // A forward pass takes a prefill chunk of one sequence or one token of every sequence.
  max_tokens_ = std::max(options_.prefill_chunk, options_.sequences);
  slots_.resize(size_t(options_.sequences));
  std::vector<const DeviceInfo*> infos;
  if (options_.devices.empty()) {
    infos.push_back(&instance.select(options_.device));
  } else {
    for (int d : options_.devices) infos.push_back(&instance.select(d));
  }
  // Logical devices first: an automatic split over several devices is measured on them.
  for (const DeviceInfo* info : infos) devices_.push_back(std::make_unique<Device>(instance, *info));
  std::vector<Device*> devices;
  for (auto& d : devices_) devices.push_back(d.get());
  const StageOptions so{.context = context_, .sequences = options_.sequences, .max_tokens = max_tokens_,
                        .dot = options_.dot, .gemm_units = options_.gemm_units, .timestamps = options_.timestamps,
                        .max_segment_bytes = options_.max_segment_bytes,
                        .fused_shape = options_.fused_shape, .fp16_baseline = options_.fp16_baseline,
                        .head = options_.head, .plan = options_.plan,
                        .greedy_chain = options_.timestamps == TimestampMode::None ? options_.greedy_chain : 1,
                        .step_inputs_on_device = options_.step_inputs_on_device,
                        .fold_attention = options_.fold_attention,
                        .attention_min_split = options_.attention_min_split,
                        .chain_layers = options_.chain_layers,
                        .chain_spin_limit = options_.chain_spin_limit,
                        .chain_unreachable_waits = options_.chain_unreachable_waits,
                        .chain_trial_mismatch_pair = options_.chain_trial_mismatch_pair,
                        .chain_max_gap_seconds = options_.chain_max_gap_seconds,
                        .matrix_splits = options_.matrix_splits,
                        .split_trial_keep = options_.split_trial_keep,
                        .split_trial_mismatch = options_.split_trial_mismatch};
  const Placement placement = place_model(c, devices, options_.split, so, model.string());
  const std::vector<StageSpec>& specs = placement.stages;
  if (options_.on_plan) options_.on_plan(placement.text);
  for (size_t i = 0; i < specs.size(); ++i) {
    try {
      stages_.push_back(std::make_unique<Stage>(*devices_[i], *source_, specs[i], so, options_.progress));
    } catch (const OutOfMemoryError& e) {
      throw OutOfMemoryError("stage " + std::to_string(i) + " on device " + std::to_string(infos[i]->index) + " (" +
                             infos[i]->name + "): " + e.what());
    }
  }
  // The split rule first: the chained layers' trial then times the passes the stages will run.
  for (auto& s : stages_) s->settle_matrix_splits();
  if (options_.settle_layer_chain_at_load) settle_layer_chain();
}

Engine::~Engine() = default;

uint64_t Engine::peak_gpu_bytes() const {
  uint64_t total = 0;
  for (const auto& d : devices_) total += d->memory().peak_bytes_in_use();
  return total;
}

bool Engine::layer_chain_trial_running() const {
  for (const auto& s : stages_)
    if (s->layer_chain_trial_running()) return true;
  return false;
}

void Engine::settle_layer_chain() {
  if (!layer_chain_trial_running()) return;
  for (const Slot& s : slots_)
    if (s.position != 0) throw Error("internal: the chained layers' trial needs every sequence empty");
  const uint32_t vocab = uint32_t(config().vocab);
  // Scratch tokens, varied so that the steps are not all alike.
  auto token = [&](uint32_t i) { return (i * 7919u + 1) % vocab; };
  // From a few positions before the attention leaves qkv where the context has room (a prompt chunk,
  // not a pair), so that the pairs check and time the chained passes on both sides of it.
  const int fold = int(last().fold_attention_keys());
  auto start = [&] {
    reset();
    const int lead = fold > 4 && fold + 16 < context_ ? fold - 4 : 0;
    std::vector<uint32_t> prompt(static_cast<size_t>(lead));
    for (int i = 0; i < lead; ++i) prompt[size_t(i)] = token(uint32_t(1000 + i));
    if (lead) eval(prompt);
  };
  start();
  // A pair a step, each in one of the forms decode runs: logits for the host's sampler, the GPU's
  // argmax (greedy), and a greedy chain of two steps (one stage holding the embedding and the head).
  const bool chains = stages_.size() == 1 && last().options().greedy_chain >= 2;
  for (uint32_t i = 0; layer_chain_trial_running() && i < 4 * (LayerChainTrial::kTimedPairs + 1); ++i) {
    if (position() + 2 > context_) start();
    const uint32_t t[] = {token(i)};
    if (i % 3 == 2 && chains && position() + 2 <= context_) {
      Slot& slot = slot_at(0);
      last().prepare_greedy_chain(2);
      advance_by_chain(slot, t[0], last().run_greedy_chain(t[0], 0, uint32_t(slot.position), 2));
    } else {
      feed(0, t, i % 3 == 1 ? Selection{Selection::Argmax} : Selection{});
    }
  }
  reset();
  // Nothing of the scratch steps can be read as a caller's step afterwards.
  for (auto& s : stages_) s->forget_last_step();
}

void Engine::advance_by_chain(Slot& slot, uint32_t token, const std::vector<uint32_t>& picks) {
  slot.position += int(picks.size());
  slot.tokens.push_back(token);
  slot.tokens.insert(slot.tokens.end(), picks.begin(), picks.end() - 1);
}

// One stage's note, or each stage's named.
static std::string stages_note(const std::vector<std::unique_ptr<Stage>>& stages, std::string (Stage::*note)() const) {
  if (stages.size() == 1) return (*stages.front().*note)();
  std::string out;
  for (size_t i = 0; i < stages.size(); ++i) out += (i ? "; stage " : "stage ") + std::to_string(i) + ": " + (*stages[i].*note)();
  return out;
}

std::string Engine::layer_chain_note() const { return stages_note(stages_, &Stage::layer_chain_note); }
std::string Engine::matrix_split_note() const { return stages_note(stages_, &Stage::matrix_split_note); }

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

Tokenizer& Engine::tokenizer() const {
  if (!tokenizer_) throw Error("internal: this engine was created without its tokenizer");
  return *tokenizer_;
}

const Engine::Slot& Engine::slot_at(int slot) const {
  if (slot < 0 || slot >= int(slots_.size()))
    throw Error("sequence slot " + std::to_string(slot) + " is outside 0.." + std::to_string(slots_.size() - 1));
  return slots_[size_t(slot)];
}

void Engine::truncate(int slot, int n) {
  Slot& s = slot_at(slot);
  if (n < 0 || n > s.position)
    throw Error("internal: truncate to " + std::to_string(n) + " of " + std::to_string(s.position));
  s.position = n;
  s.tokens.resize(size_t(n));
}

void Engine::check_fits(int slot, size_t n) const {
  if (n == 0) throw Error("nothing to evaluate: the token list is empty");
  const int position = slot_at(slot).position;
  if (position + int64_t(n) > context_)
    throw Error("the sequence would reach " + std::to_string(position + n) + " tokens, more than the context of " +
                std::to_string(context_) + " (raise -c, up to " + std::to_string(config().context) + ")");
}

std::vector<float> Engine::eval(std::span<const uint32_t> tokens, bool all_logits) {
  if (!all_logits) {
    feed(0, tokens, {Selection::Logits});
    return last().read_last_logits();
  }
  std::vector<float> all;
  feed(0, tokens, {}, &all);
  return all;
}

StepOutput Engine::read_selection(Selection select, uint32_t row) const {
  StepOutput out;
  const Stage& s = *stages_.back();
  switch (select.kind) {
    case Selection::Argmax: out.token = s.read_argmax(row); break;
    case Selection::TopK: out.candidates = s.read_top_k(row); break;
    case Selection::Logits: out.logits = s.read_logits_row(row); break;
  }
  return out;
}

StepOutput Engine::prefill(int slot, std::span<const uint32_t> tokens, Selection select) {
  feed(slot, tokens, select);
  return read_selection(select, 0);
}

std::vector<StepOutput> Engine::decode(std::span<const int> slots, std::span<const uint32_t> tokens, Selection select) {
  if (slots.empty()) throw Error("decode: no sequences given");
  if (slots.size() != tokens.size())
    throw Error("decode: " + std::to_string(slots.size()) + " slots but " + std::to_string(tokens.size()) + " tokens");
  if (int(slots.size()) > max_tokens_)
    throw Error("decode: " + std::to_string(slots.size()) + " sequences in one step, at most " +
                std::to_string(max_tokens_));
  std::vector<uint32_t> positions, slot_ids;
  std::vector<bool> seen(slots_.size());
  for (int slot : slots) {
    check_fits(slot, 1);
    if (seen[size_t(slot)]) throw Error("decode: sequence slot " + std::to_string(slot) + " given twice");
    seen[size_t(slot)] = true;
    positions.push_back(uint32_t(slot_at(slot).position));
    slot_ids.push_back(uint32_t(slot));
  }
  // Every row's logits (one per sequence), recorded with the mixed-sequence attention plan even for
  // one sequence, so a sequence's results do not depend on the others in the step.
  std::vector<StepOutput> out(slots.size());
  // Over several stages the batch is staggered: cut into one group per stage, group g + 1 enters
  // stage k while group g is in stage k + 1, so every device is busy. One stage: one group.
  const size_t groups = std::min(stages_.size(), slots.size());
  const size_t per = (slots.size() + groups - 1) / groups;
  auto first_of = [&](size_t g) { return std::min(g * per, slots.size()); };
  run_pipeline(groups, [&](size_t g) -> StepInputs {
    const size_t b = first_of(g), n = first_of(g + 1) - b;
    return {tokens.subspan(b, n),
            TokenPlaces{.positions = std::span(positions).subspan(b, n), .slots = std::span(slot_ids).subspan(b, n),
                        .one_sequence = false},
            LogitsMode::All, select};
  }, [&](size_t g) {
    for (size_t i = first_of(g); i < first_of(g + 1); ++i) out[i] = read_selection(select, uint32_t(i - first_of(g)));
  });
  for (size_t i = 0; i < slots.size(); ++i) {
    Slot& s = slot_at(slots[i]);
    ++s.position;
    s.tokens.push_back(tokens[i]);
  }
  return out;
}

void Engine::feed(int slot_index, std::span<const uint32_t> tokens, Selection select, std::vector<float>* all_logits) {
  check_fits(slot_index, tokens.size());
  Slot& slot = slot_at(slot_index);
  struct Chunk {
    std::span<const uint32_t> ids;
    std::vector<uint32_t> positions, slots;
    LogitsMode mode;
    Selection select;
    TokenPlaces places() const { return {.positions = positions, .slots = slots, .one_sequence = true}; }
  };
  std::vector<Chunk> chunks;
  const size_t chunk = size_t(options_.prefill_chunk);
  for (size_t start = 0; start < tokens.size(); start += chunk) {
    const size_t n = std::min(chunk, tokens.size() - start);
    Chunk c{.ids = tokens.subspan(start, n), .positions = {}, .slots = std::vector<uint32_t>(n, uint32_t(slot_index)),
            .mode = LogitsMode::None, .select = {}};
    for (size_t i = 0; i < n; ++i) c.positions.push_back(uint32_t(slot.position) + uint32_t(start + i));
    const bool last_chunk = start + n == tokens.size();
    if (all_logits) c.mode = LogitsMode::All;
    else if (last_chunk) c.mode = LogitsMode::Last, c.select = select;
    chunks.push_back(std::move(c));
  }
  run_pipeline(chunks.size(), [&](size_t i) -> StepInputs {
    return {chunks[i].ids, chunks[i].places(), chunks[i].mode, chunks[i].select};
  }, [&](size_t) {
    if (!all_logits) return;
    auto part = last().read_all_logits();
    all_logits->insert(all_logits->end(), part.begin(), part.end());
  });
  slot.position += int(tokens.size());
  slot.tokens.insert(slot.tokens.end(), tokens.begin(), tokens.end());
}

void Engine::run_pipeline(size_t steps, const std::function<StepInputs(size_t)>& input,
                          const std::function<void(size_t)>& on_last_stage_done) {
  const size_t S = stages_.size();
  std::vector<std::vector<float>> handed(S);  // handed[k]: stage k-1's output, stage k's next input
  for (size_t tick = 0; tick + 1 < steps + S; ++tick) {
    std::vector<std::pair<size_t, uint32_t>> active;  // stage, tokens of its step
    size_t current = 0;
    try {
      for (size_t k = 0; k < S; ++k) {
        if (tick < k || tick - k >= steps) continue;
        current = k;
        const auto [ids, places, mode, select] = input(tick - k);
        if (k > 0) stages_[k]->write_hidden(handed[k]);
        const bool is_last = k + 1 == S;
        stages_[k]->start(ids, places, is_last ? mode : LogitsMode::None, is_last ? select : Selection{});
        active.push_back({k, uint32_t(places.positions.size())});
      }
      for (auto [k, tokens] : active) {
        current = k;
        stages_[k]->finish();
        if (k + 1 < S) handed[k + 1] = stages_[k]->read_hidden(tokens);
        else on_last_stage_done(tick - k);
      }
    } catch (const Error&) {
      for (auto& s : stages_) s->abandon();
      if (S == 1) throw;  // one device: its own message says enough
      rethrow_with_context("stage " + std::to_string(current) + " on device " +
                           std::to_string(stages_[current]->device().info().index) + " (" +
                           stages_[current]->device().info().name + "): ");
    }
  }
}

uint32_t Engine::next_token(std::span<const uint32_t> tokens, Sampler& sampler, std::span<const uint32_t> history) {
  const SamplingParams& p = sampler.params();
  if (p.greedy() && !p.has_penalties()) {
    feed(0, tokens, {Selection::Argmax});
    const uint32_t pick = last().read_argmax();
    if (pick >= uint32_t(config().vocab)) throw_no_pick(position() - 1);
    return pick;
  }
  if (!p.needs_all_logits() && p.top_k <= int(ops::kMaxTopK)) {
    feed(0, tokens, {Selection::TopK, uint32_t(p.top_k)});
    return sampler.sample_candidates(last().read_top_k());
  }
  feed(0, tokens, {Selection::Logits});
  return sampler.sample(last().read_last_logits(), history);
}

std::vector<uint32_t> Engine::decode_greedy(int slot_index, uint32_t token, int max_steps) {
  if (max_steps < 1) throw Error("decode_greedy: max_steps is " + std::to_string(max_steps) + "; give 1 or more");
  check_fits(slot_index, 1);
  Slot& slot = slot_at(slot_index);
  const int chain_max = stages_.size() == 1 ? last().options().greedy_chain : 1;
  // A chain that starts where the attention runs inside qkv ends before it stops doing so (a chain
  // that crosses runs the separate attention in every step).
  const int fold_keys = int(last().fold_attention_keys());
  const int before_unfold = slot.position < fold_keys ? fold_keys - slot.position : context_;
  // Powers of two only: each chain length is a recording of its own.
  const int steps = int(std::bit_floor(
      unsigned(std::min({chain_steps_, max_steps, context_ - slot.position, chain_max, before_unfold}))));
  const int first_position = slot.position;
  std::vector<uint32_t> picks;
  std::chrono::steady_clock::time_point t0;
  // A step the chained layers' trial runs twice says nothing about the speed the budget is kept at.
  const bool trial = layer_chain_trial_running();
  if (steps == 1) {
    t0 = std::chrono::steady_clock::now();
    const uint32_t one[] = {token};
    feed(slot_index, one, {Selection::Argmax});
    picks.push_back(last().read_argmax());
  } else {
    last().prepare_greedy_chain(uint32_t(steps));  // recorded before the clock starts
    t0 = std::chrono::steady_clock::now();
    picks = last().run_greedy_chain(token, uint32_t(slot_index), uint32_t(slot.position), uint32_t(steps));
    advance_by_chain(slot, token, picks);
  }
  // The next chain: as many steps as fit the time budget at this speed, growing at most twofold (a
  // chain cut short by max_steps or the context does not shorten the next).
  const double budget = options_.greedy_chain_budget_ms / 1000, per_token = seconds_since(t0) / steps;
  const double fit = budget > 0 && per_token > 0 ? budget / per_token : double(chain_max);
  const int most = budget > 0 ? std::min(chain_max, std::max(chain_steps_, 2 * steps)) : chain_max;
  if (!trial || budget <= 0) chain_steps_ = std::clamp(int(std::min(fit, double(chain_max))), 1, most);
  const auto bad = std::find_if(picks.begin(), picks.end(), [&](uint32_t t) { return t >= uint32_t(config().vocab); });
  if (bad == picks.end()) return picks;
  // Step i fed its token and found none; later steps ran from no token. The picks before it are
  // returned (the next call reaches step i again, and throws there).
  const int i = int(bad - picks.begin());
  truncate(slot_index, first_position + std::max(i, 1));
  if (i == 0) throw_no_pick(first_position);
  picks.resize(size_t(i));
  return picks;
}

void Engine::prepare_greedy_chains() {
  if (stages_.size() != 1) return;  // pipelines step a token at a time
  for (int steps = 2; steps <= last().options().greedy_chain; steps *= 2) last().prepare_greedy_chain(uint32_t(steps));
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
  const SamplingParams& p = sampler.params();
  const bool greedy_on_gpu = p.greedy() && !p.has_penalties();
  auto t0 = std::chrono::steady_clock::now();
  PicksAhead picks;
  picks.refill({next_token(prompt, sampler, history)});
  stats.prompt_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  // The sequence ends as if every token had been fed one by one (also when on_token or a step throws).
  try {
    while (true) {
      if (picks.empty()) {
        const uint32_t one[] = {picks.newest()};
        if (greedy_on_gpu)
          picks.refill(decode_greedy(one[0], std::min(max_tokens - stats.generated_tokens, context_ - position())));
        else
          picks.refill({next_token(one, sampler, history)});
      }
      const uint32_t next = picks.take();
      if ((eos && next == uint32_t(*eos)) || (eot && next == uint32_t(*eot))) {
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
      if (position() - picks.fed_ahead() >= context_) {
        stats.stop_reason = "context";
        break;
      }
    }
  } catch (...) {
    take_back(0, picks);
    throw;
  }
  take_back(0, picks);
  stats.decode_seconds = seconds_since(t0);
  return stats;
}

}  // namespace ternvk

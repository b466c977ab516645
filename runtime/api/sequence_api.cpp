// The C API: sequences (prefill, batched decode, sampling, logits, truncation) and the streaming
// generate helper.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime/api/state.h"
#include "runtime/core/error.h"
#include "runtime/ops/topk.h"

using namespace ternvk;
using namespace ternvk::api;

namespace {

std::shared_ptr<SequenceState> sequence_of(const ternvk_sequence* sequence) {
  return sequences().find(sequence, "sequence");
}

SamplingParams sampling_params(const ternvk_sampling& s) {
  auto bad = [](const std::string& what) { throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "sampling: " + what); };
  if (!std::isfinite(s.temperature)) bad("temperature is not a finite number");
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) bad("top_p " + std::to_string(s.top_p) + " is outside (0, 1]");
  if (!(s.min_p >= 0.0f && s.min_p < 1.0f)) bad("min_p " + std::to_string(s.min_p) + " is outside [0, 1)");
  if (!(s.repeat_penalty > 0.0f) || !std::isfinite(s.repeat_penalty))
    bad("repeat_penalty " + std::to_string(s.repeat_penalty) + " is not > 0");
  if (!std::isfinite(s.frequency_penalty) || !std::isfinite(s.presence_penalty))
    bad("frequency_penalty and presence_penalty must be finite numbers");
  if (s.repeat_last_n < -1) bad("repeat_last_n " + std::to_string(s.repeat_last_n) + " is below -1 (-1: all)");
  return {.temperature = s.temperature, .top_k = s.top_k, .top_p = s.top_p, .min_p = s.min_p,
          .repeat_penalty = s.repeat_penalty, .repeat_last_n = s.repeat_last_n,
          .frequency_penalty = s.frequency_penalty, .presence_penalty = s.presence_penalty, .seed = s.seed};
}

void set_sampling(SequenceState& s, const ternvk_sampling* sampling) {
  s.params = sampling ? sampling_params(*sampling) : SamplingParams{};
  s.sampler = Sampler(s.params);
}

// What a step must read back for this sequence: the GPU's argmax when sampling is greedy, its
// top-k when sampling needs no more, else the full row (penalties, all-token sampling, kept logits).
// The same choice as Engine::next_token, so a generation equals `ternvk run`'s.
Selection selection_for(const SequenceState& s) {
  const SamplingParams& p = s.params;
  if (s.keep_logits) return {Selection::Logits};
  if (p.greedy() && !p.has_penalties()) return {Selection::Argmax};
  if (!p.needs_all_logits() && p.top_k <= int(ops::kMaxTopK)) return {Selection::TopK, uint32_t(p.top_k)};
  return {Selection::Logits};
}

// One selection that serves every sequence of a batched step.
Selection widest(const Selection& a, const Selection& b) {
  if (a.kind == Selection::Logits || b.kind == Selection::Logits) return {Selection::Logits};
  if (a.kind == Selection::TopK || b.kind == Selection::TopK) return {Selection::TopK, std::max(a.k, b.k)};
  return {Selection::Argmax};
}

void check_fits(const SequenceState& s, size_t count) {
  const Engine& e = *s.model->engine;
  const int position = e.position(s.slot);
  if (position + int64_t(count) > e.context())
    throw ApiError(TERNVK_ERROR_CONTEXT_FULL, "the sequence holds " + std::to_string(position) + " tokens; " +
                                                  std::to_string(count) + " more would pass its context of " +
                                                  std::to_string(e.context()) +
                                                  " (truncate it, or load the model with a larger context)");
}

// Feeds tokens to one sequence (prefill chunks) and keeps what its sampling needs. Model locked.
void step(SequenceState& s, std::span<const uint32_t> ids) {
  if (ids.empty()) throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "no tokens to feed (count is 0)");
  check_fits(s, ids.size());
  const Selection select = selection_for(s);
  s.last.reset();
  s.last = s.model->engine->prefill(s.slot, ids, select);
  s.last_kind = select.kind;
}

// The next token from the last step's output. Model locked (the history is the engine's).
uint32_t pick(SequenceState& s) {
  if (!s.last) throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "nothing to sample: feed tokens first (prefill or decode)");
  switch (s.last_kind) {
    case Selection::Argmax: return s.last->token;
    case Selection::TopK: return s.sampler.sample_candidates(s.last->candidates);
    case Selection::Logits: return s.sampler.sample(s.last->logits, s.model->engine->sequence(s.slot));
  }
  throw ApiError(TERNVK_ERROR_INTERNAL, "unknown selection");
}

void truncate(SequenceState& s, int32_t length) {
  InUse in_use(s.busy, "sequence");
  std::lock_guard lock(s.model->mutex);
  const int position = s.model->engine->position(s.slot);
  if (length < 0 || length > position)
    throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "length " + std::to_string(length) + " is outside 0.." +
                                                      std::to_string(position) + " (the sequence's length)");
  s.model->engine->truncate(s.slot, length);
  s.last.reset();
}

}  // namespace

extern "C" {

ternvk_sampling ternvk_sampling_default(void) {
  const SamplingParams p;
  return {.temperature = p.temperature, .top_k = p.top_k, .top_p = p.top_p, .min_p = p.min_p,
          .repeat_penalty = p.repeat_penalty, .repeat_last_n = p.repeat_last_n,
          .frequency_penalty = p.frequency_penalty, .presence_penalty = p.presence_penalty, .seed = p.seed};
}

ternvk_status ternvk_sequence_create(ternvk_model* model, ternvk_sequence** sequence) {
  return run(__func__, [&] {
    auto m = models().find(model, "model");
    require(sequence, "sequence (the output)");
    *sequence = nullptr;
    int slot = -1;
    {
      std::lock_guard lock(m->mutex);
      auto it = std::find(m->slot_used.begin(), m->slot_used.end(), false);
      if (it == m->slot_used.end())
        throw ApiError(TERNVK_ERROR_NO_SEQUENCE_SLOT,
                       "all " + std::to_string(m->slot_used.size()) +
                           " sequence slots of the model are in use: free one, or load the model with more "
                           "sequences (ternvk_model_params.sequences)");
      *it = true;
      slot = int(it - m->slot_used.begin());
      m->engine->truncate(slot, 0);
    }
    std::shared_ptr<SequenceState> state;
    try {
      state = std::make_shared<SequenceState>(m, slot);  // from here its destructor gives the slot back
    } catch (...) {
      std::lock_guard lock(m->mutex);
      m->slot_used[size_t(slot)] = false;
      throw;
    }
    *sequence = reinterpret_cast<ternvk_sequence*>(sequences().add(std::move(state)));
  });
}

ternvk_status ternvk_sequence_free(ternvk_sequence* sequence) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    InUse in_use(s->busy, "sequence");
    sequences().remove(sequence, "sequence");
  });
}

ternvk_status ternvk_sequence_set_sampling(ternvk_sequence* sequence, const ternvk_sampling* sampling) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    InUse in_use(s->busy, "sequence");
    set_sampling(*s, sampling);
  });
}

ternvk_status ternvk_sequence_keep_logits(ternvk_sequence* sequence, int32_t keep) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    InUse in_use(s->busy, "sequence");
    s->keep_logits = keep != 0;
  });
}

ternvk_status ternvk_sequence_prefill(ternvk_sequence* sequence, const int32_t* tokens, size_t count) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    InUse in_use(s->busy, "sequence");
    const std::vector<uint32_t> ids = checked_tokens(*s->model, tokens, count);
    std::lock_guard lock(s->model->mutex);
    step(*s, ids);
  });
}

ternvk_status ternvk_decode(ternvk_model* model, ternvk_sequence* const* sequences_in, const int32_t* tokens,
                            size_t count) {
  return run(__func__, [&] {
    auto m = models().find(model, "model");
    if (count == 0) throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "no sequences to decode (count is 0)");
    require(sequences_in, "sequences");
    const std::vector<uint32_t> ids = checked_tokens(*m, tokens, count);
    std::vector<std::shared_ptr<SequenceState>> list;
    std::vector<std::unique_ptr<InUse>> in_use;
    std::vector<int> slots;
    Selection select{Selection::Argmax};
    for (size_t i = 0; i < count; ++i) {
      auto s = sequence_of(sequences_in[i]);
      if (s->model != m)
        throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "sequences[" + std::to_string(i) + "] belongs to another model");
      if (std::find(list.begin(), list.end(), s) != list.end())
        throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "sequences[" + std::to_string(i) + "] is given twice");
      in_use.push_back(std::make_unique<InUse>(s->busy, "sequence"));
      slots.push_back(s->slot);
      select = widest(select, selection_for(*s));
      list.push_back(std::move(s));
    }
    std::lock_guard lock(m->mutex);
    for (auto& s : list) check_fits(*s, 1);
    for (auto& s : list) s->last.reset();
    std::vector<StepOutput> out = m->engine->decode(slots, ids, select);
    for (size_t i = 0; i < count; ++i) {
      list[i]->last = std::move(out[i]);
      list[i]->last_kind = select.kind;
    }
  });
}

ternvk_status ternvk_sequence_sample(ternvk_sequence* sequence, int32_t* token) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    require(token, "token");
    InUse in_use(s->busy, "sequence");
    std::lock_guard lock(s->model->mutex);
    *token = int32_t(pick(*s));
  });
}

ternvk_status ternvk_sequence_logits(ternvk_sequence* sequence, const float** logits, size_t* count) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    require(logits, "logits");
    require(count, "count");
    InUse in_use(s->busy, "sequence");
    if (!s->last || s->last_kind != Selection::Logits)
      throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT,
                     "the last step kept no logits: call ternvk_sequence_keep_logits(sequence, 1) before it");
    *logits = s->last->logits.data();
    *count = s->last->logits.size();
  });
}

ternvk_status ternvk_sequence_length(const ternvk_sequence* sequence, int32_t* length) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    require(length, "length");
    std::lock_guard lock(s->model->mutex);
    *length = s->model->engine->position(s->slot);
  });
}

ternvk_status ternvk_sequence_tokens(const ternvk_sequence* sequence, int32_t* tokens, size_t capacity, size_t* count) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    require(count, "count");
    if (capacity > 0) require(tokens, "tokens");
    std::lock_guard lock(s->model->mutex);
    const std::vector<uint32_t>& ids = s->model->engine->sequence(s->slot);
    *count = ids.size();
    std::transform(ids.begin(), ids.begin() + std::min(capacity, ids.size()), tokens,
                   [](uint32_t id) { return int32_t(id); });
    if (ids.size() > capacity)
      throw ApiError(TERNVK_ERROR_BUFFER_TOO_SMALL, "the buffer holds " + std::to_string(capacity) +
                                                        " tokens; the sequence has " + std::to_string(ids.size()));
  });
}

ternvk_status ternvk_sequence_truncate(ternvk_sequence* sequence, int32_t length) {
  return run(__func__, [&] { truncate(*sequence_of(sequence), length); });
}

ternvk_status ternvk_sequence_clear(ternvk_sequence* sequence) {
  return run(__func__, [&] { truncate(*sequence_of(sequence), 0); });
}

ternvk_status ternvk_sequence_cancel(ternvk_sequence* sequence) {
  return run(__func__, [&] { sequence_of(sequence)->cancelled = true; });
}

ternvk_status ternvk_generate(ternvk_sequence* sequence, const int32_t* prompt, size_t count, int32_t max_tokens,
                              const ternvk_sampling* sampling, ternvk_piece_callback callback, void* user_data,
                              ternvk_generation* result) {
  return run(__func__, [&] {
    auto s = sequence_of(sequence);
    InUse in_use(s->busy, "sequence");
    if (max_tokens < 0)
      throw ApiError(TERNVK_ERROR_INVALID_ARGUMENT, "max_tokens " + std::to_string(max_tokens) + " is negative");
    const std::vector<uint32_t> ids = checked_tokens(*s->model, prompt, count);
    if (sampling) set_sampling(*s, sampling);
    s->cancelled = false;
    ternvk_generation stats{};
    stats.prompt_tokens = int32_t(count);
    stats.stop_reason = TERNVK_STOP_LENGTH;
    const Tokenizer& tok = s->model->tokenizer();
    const auto eos = tok.eos(), eot = tok.eot();
    StreamingDecoder decoder(tok);
    using Clock = std::chrono::steady_clock;
    auto t0 = Clock::now();
    PicksAhead picks;
    {
      std::lock_guard lock(s->model->mutex);
      step(*s, ids);
      if (max_tokens > 0) picks.refill({pick(*s)});
    }
    stats.prompt_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    t0 = Clock::now();
    // The loop of Engine::generate (what `ternvk run` does), one model lock per step (or greedy
    // chain) so that other sequences of the model advance in between and the callback runs unlocked.
    Engine& engine = *s->model->engine;
    uint32_t next = 0;
    while (!picks.empty()) {
      next = picks.take();
      if ((eos && next == uint32_t(*eos)) || (eot && next == uint32_t(*eot))) {
        stats.stop_reason = TERNVK_STOP_EOS;
        break;
      }
      ++stats.generated_tokens;
      const std::string piece = decoder.feed(TokenId(next));
      if (callback && callback(user_data, int32_t(next), piece.c_str(), piece.size()) != 0) {
        stats.stop_reason = TERNVK_STOP_CALLBACK;
        break;
      }
      if (stats.generated_tokens == max_tokens) break;
      if (s->cancelled) {
        stats.stop_reason = TERNVK_STOP_CANCELLED;
        break;
      }
      if (!picks.empty()) continue;  // a chain picked it already
      std::lock_guard lock(s->model->mutex);
      const int position = engine.position(s->slot);
      if (position >= engine.context()) {
        stats.stop_reason = TERNVK_STOP_CONTEXT;
        break;
      }
      if (selection_for(*s).kind == Selection::Argmax) {  // greedy: chained on the GPU
        picks.refill(engine.decode_greedy(s->slot, next, std::min(max_tokens - stats.generated_tokens,
                                                                  engine.context() - position)));
        s->last = StepOutput{.token = picks.newest()};
        s->last_kind = Selection::Argmax;
      } else {
        const uint32_t one[] = {next};
        step(*s, one);
        picks.refill({pick(*s)});
      }
    }
    if (picks.fed_ahead() > 0) {
      // Without what a chain fed past the last token handed out, whose step's pick (the token that
      // stopped the loop) is the sequence's next.
      std::lock_guard lock(s->model->mutex);
      engine.take_back(s->slot, picks);
      s->last = StepOutput{.token = next};
      s->last_kind = Selection::Argmax;
    }
    const std::string tail = decoder.flush();
    if (callback && !tail.empty()) callback(user_data, -1, tail.c_str(), tail.size());
    stats.decode_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (result) *result = stats;
  });
}

}  // extern "C"

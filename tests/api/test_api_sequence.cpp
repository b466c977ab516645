// The C API's sequences: prefill, batched decode, sampling and logits, truncation, slots, the
// context limit, the streaming generate helper with its stop and cancel paths, and misuse (busy
// sequences, freed handles, bad values) that must come back as errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "api/api_util.h"

using namespace api_test;

namespace {

std::string last_error() { return ternvk_last_error(); }

// Greedy, step by step: prefill, then sample and feed one token at a time.
std::vector<int32_t> manual_greedy(ternvk_sequence* s, const std::vector<int32_t>& prompt, int n) {
  const ternvk_sampling g = greedy();
  REQUIRE_OK(ternvk_sequence_set_sampling(s, &g));
  REQUIRE_OK(ternvk_sequence_prefill(s, prompt.data(), prompt.size()));
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    int32_t t = -1;
    REQUIRE_OK(ternvk_sequence_sample(s, &t));
    out.push_back(t);
    REQUIRE_OK(ternvk_sequence_prefill(s, &t, 1));
  }
  return out;
}

// The tokens a sequence holds.
std::vector<int32_t> held_tokens(ternvk_sequence* s) {
  std::vector<int32_t> held(256);
  size_t count = 0;
  REQUIRE_OK(ternvk_sequence_tokens(s, held.data(), held.size(), &count));
  held.resize(count);
  return held;
}

// What a sequence holds after generating `generated` from `prompt`: every generated token but the
// last, which nothing needed to feed.
std::vector<int32_t> fed(const std::vector<int32_t>& prompt, const std::vector<int32_t>& generated) {
  std::vector<int32_t> out = prompt;
  out.insert(out.end(), generated.begin(), generated.end() - 1);
  return out;
}

std::vector<float> logits_of(ternvk_sequence* s) {
  const float* data = nullptr;
  size_t count = 0;
  REQUIRE_OK(ternvk_sequence_logits(s, &data, &count));
  return std::vector<float>(data, data + count);
}

}  // namespace

TEST_CASE("generate streams the tokens and text of a step-by-step greedy loop") {
  ModelPtr m = load();
  const std::vector<int32_t> prompt = tokens(m.get(), "ROMEO:");
  SequencePtr a = sequence(m.get());
  const Generated g = generate(a.get(), prompt, 24);
  CHECK(g.result.prompt_tokens == int(prompt.size()));
  CHECK(g.result.generated_tokens == 24);
  CHECK(g.result.stop_reason == TERNVK_STOP_LENGTH);
  REQUIRE(g.tokens.size() == 24);
  // The sequence holds the prompt and every generated token but the last (never fed).
  int32_t length = 0;
  REQUIRE_OK(ternvk_sequence_length(a.get(), &length));
  CHECK(length == int(prompt.size()) + 23);
  CHECK(held_tokens(a.get()) == fed(prompt, g.tokens));

  REQUIRE_OK(ternvk_sequence_clear(a.get()));
  CHECK(manual_greedy(a.get(), prompt, 24) == g.tokens);
  std::string text(512, '\0');
  size_t text_length = 0;
  REQUIRE_OK(ternvk_detokenize(m.get(), g.tokens.data(), g.tokens.size(), 0, text.data(), text.size(), &text_length));
  CHECK(g.text == std::string(text.c_str()));
  check_clean(m.get());
}

TEST_CASE("seeded sampling repeats, and another seed or temperature changes the text") {
  ModelPtr m = load();
  const std::vector<int32_t> prompt = tokens(m.get(), "JULIET:");
  SequencePtr s = sequence(m.get());
  ternvk_sampling warm = ternvk_sampling_default();
  warm.temperature = 1.2f;
  warm.top_k = 0;  // the whole vocabulary: the logits path
  warm.seed = 7;
  const Generated first = generate(s.get(), prompt, 32, warm);
  REQUIRE_OK(ternvk_sequence_clear(s.get()));
  const Generated again = generate(s.get(), prompt, 32, warm);
  CHECK(first.tokens == again.tokens);
  REQUIRE_OK(ternvk_sequence_clear(s.get()));
  warm.seed = 8;
  const Generated other = generate(s.get(), prompt, 32, warm);
  CHECK(other.tokens != first.tokens);
  REQUIRE_OK(ternvk_sequence_clear(s.get()));
  const Generated cold = generate(s.get(), prompt, 32);
  CHECK(cold.tokens != first.tokens);
}

TEST_CASE("sampling needs a step first, and logits need keep_logits before the step") {
  ModelPtr m = load();
  const ternvk_model_info i = info(m.get());
  SequencePtr s = sequence(m.get());
  int32_t t = -1;
  CHECK_STATUS(ternvk_sequence_sample(s.get(), &t), TERNVK_ERROR_INVALID_ARGUMENT);
  CHECK(last_error().find("feed tokens first") != std::string::npos);
  const std::vector<int32_t> prompt = tokens(m.get(), "KING HENRY:");
  const ternvk_sampling g = greedy();
  REQUIRE_OK(ternvk_sequence_set_sampling(s.get(), &g));
  REQUIRE_OK(ternvk_sequence_prefill(s.get(), prompt.data(), prompt.size()));
  const float* data = nullptr;
  size_t count = 0;
  CHECK_STATUS(ternvk_sequence_logits(s.get(), &data, &count), TERNVK_ERROR_INVALID_ARGUMENT);
  CHECK(last_error().find("ternvk_sequence_keep_logits") != std::string::npos);
  int32_t argmax_token = -1;
  REQUIRE_OK(ternvk_sequence_sample(s.get(), &argmax_token));

  REQUIRE_OK(ternvk_sequence_clear(s.get()));
  REQUIRE_OK(ternvk_sequence_keep_logits(s.get(), 1));
  REQUIRE_OK(ternvk_sequence_prefill(s.get(), prompt.data(), prompt.size()));
  const std::vector<float> logits = logits_of(s.get());
  REQUIRE(int(logits.size()) == i.vocab_size);
  for (float v : logits) REQUIRE(std::isfinite(v));
  const int32_t best = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  REQUIRE_OK(ternvk_sequence_sample(s.get(), &t));
  CHECK(t == best);
  CHECK(t == argmax_token);  // the GPU's argmax and the host's pick from the row agree
  CHECK_STATUS(ternvk_sequence_sample(s.get(), nullptr), TERNVK_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("bad sampling values are refused by name") {
  ModelPtr m = load();
  SequencePtr s = sequence(m.get());
  auto refused = [&](void (*change)(ternvk_sampling&), const char* name) {
    ternvk_sampling p = ternvk_sampling_default();
    change(p);
    CHECK_STATUS(ternvk_sequence_set_sampling(s.get(), &p), TERNVK_ERROR_INVALID_ARGUMENT);
    CHECK_MESSAGE(last_error().find(name) != std::string::npos, last_error());
    const int32_t one[] = {1};
    CHECK_STATUS(ternvk_generate(s.get(), one, 1, 4, &p, nullptr, nullptr, nullptr), TERNVK_ERROR_INVALID_ARGUMENT);
  };
  refused([](ternvk_sampling& p) { p.top_p = 0; }, "top_p");
  refused([](ternvk_sampling& p) { p.top_p = 1.5f; }, "top_p");
  refused([](ternvk_sampling& p) { p.min_p = 1; }, "min_p");
  refused([](ternvk_sampling& p) { p.temperature = NAN; }, "temperature");
  refused([](ternvk_sampling& p) { p.repeat_penalty = 0; }, "repeat_penalty");
  refused([](ternvk_sampling& p) { p.repeat_last_n = -2; }, "repeat_last_n");
  REQUIRE_OK(ternvk_sequence_set_sampling(s.get(), nullptr));  // the defaults
}

TEST_CASE("batched decode gives every sequence the tokens and logits it gets alone") {
  ModelPtr m = load([](ternvk_model_params& p) { p.sequences = 3; });
  CHECK(info(m.get()).max_batch == 3);
  const std::vector<std::vector<int32_t>> prompts = {tokens(m.get(), "ROMEO:"), tokens(m.get(), "To be, or not to be"),
                                                     tokens(m.get(), "GLOUCESTER:\nNow is the winter")};
  const int steps = 10;
  // Each alone: prefill, then decode steps of one sequence.
  std::vector<std::vector<int32_t>> solo_tokens(3);
  std::vector<std::vector<std::vector<float>>> solo_logits(3);
  for (size_t k = 0; k < 3; ++k) {
    SequencePtr s = sequence(m.get());
    REQUIRE_OK(ternvk_sequence_keep_logits(s.get(), 1));
    REQUIRE_OK(ternvk_sequence_prefill(s.get(), prompts[k].data(), prompts[k].size()));
    for (int i = 0; i < steps; ++i) {
      solo_logits[k].push_back(logits_of(s.get()));
      int32_t t = int32_t(std::max_element(solo_logits[k].back().begin(), solo_logits[k].back().end()) -
                          solo_logits[k].back().begin());
      solo_tokens[k].push_back(t);
      ternvk_sequence* one[] = {s.get()};
      REQUIRE_OK(ternvk_decode(m.get(), one, &t, 1));
    }
  }
  // Together: one forward pass per step for all three.
  std::vector<SequencePtr> seqs;
  for (size_t k = 0; k < 3; ++k) {
    seqs.push_back(sequence(m.get()));
    const ternvk_sampling g = greedy();
    REQUIRE_OK(ternvk_sequence_set_sampling(seqs[k].get(), &g));
    REQUIRE_OK(ternvk_sequence_keep_logits(seqs[k].get(), 1));
    REQUIRE_OK(ternvk_sequence_prefill(seqs[k].get(), prompts[k].data(), prompts[k].size()));
  }
  ternvk_sequence* batch[] = {seqs[0].get(), seqs[1].get(), seqs[2].get()};
  for (int i = 0; i < steps; ++i) {
    int32_t next[3];
    for (size_t k = 0; k < 3; ++k) {
      CAPTURE(k);
      CAPTURE(i);
      const std::vector<float> row = logits_of(seqs[k].get());
      CHECK(std::memcmp(row.data(), solo_logits[k][size_t(i)].data(), row.size() * sizeof(float)) == 0);
      REQUIRE_OK(ternvk_sequence_sample(seqs[k].get(), &next[k]));
      CHECK(next[k] == solo_tokens[k][size_t(i)]);
    }
    REQUIRE_OK(ternvk_decode(m.get(), batch, next, 3));
  }
  check_clean(m.get());
}

TEST_CASE("decode refuses empty, repeated, foreign and freed sequences, naming which") {
  ModelPtr m = load([](ternvk_model_params& p) { p.sequences = 2; });
  ModelPtr other = load();
  SequencePtr a = sequence(m.get()), b = sequence(m.get()), c = sequence(other.get());
  const std::vector<int32_t> prompt = tokens(m.get(), "ROMEO:");
  REQUIRE_OK(ternvk_sequence_prefill(a.get(), prompt.data(), prompt.size()));
  REQUIRE_OK(ternvk_sequence_prefill(b.get(), prompt.data(), prompt.size()));
  const int32_t ids[] = {5, 6};
  ternvk_sequence* twice[] = {a.get(), a.get()};
  CHECK_STATUS(ternvk_decode(m.get(), twice, ids, 2), TERNVK_ERROR_INVALID_ARGUMENT);
  CHECK(last_error().find("sequences[1] is given twice") != std::string::npos);
  ternvk_sequence* foreign[] = {a.get(), c.get()};
  CHECK_STATUS(ternvk_decode(m.get(), foreign, ids, 2), TERNVK_ERROR_INVALID_ARGUMENT);
  CHECK(last_error().find("another model") != std::string::npos);
  ternvk_sequence* both[] = {a.get(), b.get()};
  CHECK_STATUS(ternvk_decode(m.get(), both, ids, 0), TERNVK_ERROR_INVALID_ARGUMENT);
  CHECK_STATUS(ternvk_decode(m.get(), both, nullptr, 2), TERNVK_ERROR_INVALID_ARGUMENT);
  const int32_t out_of_range[] = {5, 1 << 20};
  CHECK_STATUS(ternvk_decode(m.get(), both, out_of_range, 2), TERNVK_ERROR_INVALID_ARGUMENT);
  CHECK(last_error().find("outside the vocabulary") != std::string::npos);
  ternvk_sequence* freed[] = {a.get(), reinterpret_cast<ternvk_sequence*>(0x99)};
  CHECK_STATUS(ternvk_decode(m.get(), freed, ids, 2), TERNVK_ERROR_INVALID_HANDLE);
  // After the refusals the sequences are untouched and still work together.
  int32_t before = 0;
  REQUIRE_OK(ternvk_sequence_length(a.get(), &before));
  CHECK(before == int(prompt.size()));
  REQUIRE_OK(ternvk_decode(m.get(), both, ids, 2));
}

TEST_CASE("truncate keeps a prefix, and regenerating from it repeats the tokens") {
  ModelPtr m = load();
  SequencePtr s = sequence(m.get());
  const std::vector<int32_t> prompt = tokens(m.get(), "MACBETH:");
  const Generated first = generate(s.get(), prompt, 12);
  int32_t length = 0;
  REQUIRE_OK(ternvk_sequence_length(s.get(), &length));
  CHECK_STATUS(ternvk_sequence_truncate(s.get(), length + 1), TERNVK_ERROR_INVALID_ARGUMENT);
  CHECK_STATUS(ternvk_sequence_truncate(s.get(), -1), TERNVK_ERROR_INVALID_ARGUMENT);
  // Keep the prompt minus its last token, then feed that token again: the same continuation.
  REQUIRE_OK(ternvk_sequence_truncate(s.get(), int32_t(prompt.size()) - 1));
  REQUIRE_OK(ternvk_sequence_length(s.get(), &length));
  CHECK(length == int(prompt.size()) - 1);
  int32_t t = 0;
  CHECK_STATUS(ternvk_sequence_sample(s.get(), &t), TERNVK_ERROR_INVALID_ARGUMENT);  // truncation forgot the step
  const Generated again = generate(s.get(), {prompt.back()}, 12);
  CHECK(again.tokens == first.tokens);
  size_t count = 0;
  int32_t small[2];
  CHECK_STATUS(ternvk_sequence_tokens(s.get(), small, 2, &count), TERNVK_ERROR_BUFFER_TOO_SMALL);
  CHECK(count == prompt.size() + 11);
  CHECK(small[0] == prompt[0]);
}

TEST_CASE("a model's sequence slots run out, and freeing one makes room") {
  ModelPtr m = load([](ternvk_model_params& p) { p.sequences = 2; });
  SequencePtr a = sequence(m.get()), b = sequence(m.get());
  ternvk_sequence* c = nullptr;
  CHECK_STATUS(ternvk_sequence_create(m.get(), &c), TERNVK_ERROR_NO_SEQUENCE_SLOT);
  CHECK(c == nullptr);
  CHECK(last_error().find("all 2 sequence slots") != std::string::npos);
  // A freed sequence's slot starts empty for the next one.
  const std::vector<int32_t> prompt = tokens(m.get(), "ROMEO:");
  REQUIRE_OK(ternvk_sequence_prefill(a.get(), prompt.data(), prompt.size()));
  a.reset();
  REQUIRE_OK(ternvk_sequence_create(m.get(), &c));
  int32_t length = -1;
  REQUIRE_OK(ternvk_sequence_length(c, &length));
  CHECK(length == 0);
  REQUIRE_OK(ternvk_sequence_free(c));
}

TEST_CASE("a full context is refused before anything runs, and generate stops at it") {
  ModelPtr m = load([](ternvk_model_params& p) { p.context = 16; });
  SequencePtr s = sequence(m.get());
  std::vector<int32_t> long_prompt(17, 100);
  CHECK_STATUS(ternvk_sequence_prefill(s.get(), long_prompt.data(), long_prompt.size()), TERNVK_ERROR_CONTEXT_FULL);
  CHECK(last_error().find("context of 16") != std::string::npos);
  int32_t length = -1;
  REQUIRE_OK(ternvk_sequence_length(s.get(), &length));
  CHECK(length == 0);
  const std::vector<int32_t> prompt = tokens(m.get(), "ROMEO:");
  const Generated g = generate(s.get(), prompt, 100);
  CHECK(g.result.stop_reason == TERNVK_STOP_CONTEXT);
  CHECK(g.result.generated_tokens == 16 - int(prompt.size()) + 1);
  CHECK_STATUS(ternvk_sequence_prefill(s.get(), prompt.data(), 1), TERNVK_ERROR_CONTEXT_FULL);
}

TEST_CASE("the callback stops generation, and cancel stops it from the callback or another thread") {
  ModelPtr m = load();
  const std::vector<int32_t> prompt = tokens(m.get(), "ROMEO:");
  SequencePtr s = sequence(m.get());
  const ternvk_sampling g = greedy();
  struct Stop {
    ternvk_sequence* sequence;
    int tokens = 0;
    int mode = 0;  // 0: return nonzero, 1: cancel here, 2: cancel from another thread
    ternvk_status cancel_status = TERNVK_ERROR_INTERNAL;
  };
  auto on_piece = [](void* user, int32_t token, const char*, size_t) -> int32_t {
    auto* st = static_cast<Stop*>(user);
    if (token < 0) return 0;
    if (++st->tokens < 3) return 0;
    if (st->mode == 0) return 1;
    if (st->mode == 1) {
      st->cancel_status = ternvk_sequence_cancel(st->sequence);
    } else {
      std::thread other([st] { st->cancel_status = ternvk_sequence_cancel(st->sequence); });
      other.join();
    }
    return 0;
  };
  const Generated whole = generate(s.get(), prompt, 23);
  for (int mode : {0, 1, 2}) {
    CAPTURE(mode);
    REQUIRE_OK(ternvk_sequence_clear(s.get()));
    Stop st{s.get(), 0, mode};
    ternvk_generation r{};
    REQUIRE_OK(ternvk_generate(s.get(), prompt.data(), prompt.size(), 50, &g, on_piece, &st, &r));
    CHECK(r.generated_tokens == 3);
    CHECK(r.stop_reason == (mode == 0 ? TERNVK_STOP_CALLBACK : TERNVK_STOP_CANCELLED));
    if (mode > 0) CHECK(st.cancel_status == TERNVK_OK);
    // As if fed one token at a time, though a greedy chain may have run past the stop: the prompt
    // and the first two tokens are held, and the third (the stopping one) is what sampling gives.
    REQUIRE(held_tokens(s.get()) == fed(prompt, std::vector<int32_t>(whole.tokens.begin(), whole.tokens.begin() + 3)));
    int32_t third = -1;
    REQUIRE_OK(ternvk_sequence_sample(s.get(), &third));
    CHECK(third == whole.tokens[2]);
    // Generation goes on from there as if it had never stopped.
    const Generated rest = generate(s.get(), {third}, 20);
    CHECK(rest.tokens == std::vector<int32_t>(whole.tokens.begin() + 3, whole.tokens.end()));
  }
  // A cancel before a generate does not stop the next one.
  REQUIRE_OK(ternvk_sequence_clear(s.get()));
  REQUIRE_OK(ternvk_sequence_cancel(s.get()));
  const Generated after = generate(s.get(), prompt, 5);
  CHECK(after.result.stop_reason == TERNVK_STOP_LENGTH);
  CHECK_STATUS(ternvk_generate(s.get(), prompt.data(), prompt.size(), -1, &g, nullptr, nullptr, nullptr),
               TERNVK_ERROR_INVALID_ARGUMENT);
  CHECK_STATUS(ternvk_generate(s.get(), nullptr, 0, 5, &g, nullptr, nullptr, nullptr), TERNVK_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("a sequence used from its own callback or another thread meanwhile is BUSY, other sequences are not") {
  ModelPtr m = load([](ternvk_model_params& p) { p.sequences = 2; });
  const std::vector<int32_t> prompt = tokens(m.get(), "ROMEO:");
  SequencePtr s = sequence(m.get()), other = sequence(m.get());
  struct Probe {
    ternvk_sequence* self;
    ternvk_sequence* other;
    const std::vector<int32_t>* prompt;
    ternvk_status reentrant = TERNVK_OK, free_self = TERNVK_OK, from_thread = TERNVK_OK, other_prefill = TERNVK_ERROR_INTERNAL;
    std::string busy_message;
    bool done = false;
  } probe{s.get(), other.get(), &prompt};
  auto on_piece = [](void* user, int32_t token, const char*, size_t) -> int32_t {
    auto* p = static_cast<Probe*>(user);
    if (token < 0 || p->done) return 0;
    p->done = true;
    p->reentrant = ternvk_sequence_prefill(p->self, p->prompt->data(), 1);
    p->busy_message = ternvk_last_error();
    p->free_self = ternvk_sequence_free(p->self);
    std::thread t([p] {
      int32_t token_out = 0;
      p->from_thread = ternvk_sequence_sample(p->self, &token_out);
    });
    t.join();
    p->other_prefill = ternvk_sequence_prefill(p->other, p->prompt->data(), p->prompt->size());
    return 0;
  };
  const ternvk_sampling g = greedy();
  ternvk_generation r{};
  REQUIRE_OK(ternvk_generate(s.get(), prompt.data(), prompt.size(), 6, &g, on_piece, &probe, &r));
  CHECK(probe.reentrant == TERNVK_ERROR_BUSY);
  CHECK(probe.busy_message.find("one thread at a time") != std::string::npos);
  CHECK(probe.free_self == TERNVK_ERROR_BUSY);
  CHECK(probe.from_thread == TERNVK_ERROR_BUSY);
  CHECK(probe.other_prefill == TERNVK_OK);
  CHECK(r.generated_tokens == 6);  // the refused calls did not disturb the generation
  // The same run without the probes.
  REQUIRE_OK(ternvk_sequence_clear(other.get()));
  const Generated plain = generate(other.get(), prompt, 6);
  CHECK(held_tokens(s.get()) == fed(prompt, plain.tokens));
}

TEST_CASE("threads sharing one model, one sequence each, get their solo results") {
  ModelPtr m = load([](ternvk_model_params& p) { p.sequences = 2; });
  const std::vector<std::vector<int32_t>> prompts = {tokens(m.get(), "ROMEO:"), tokens(m.get(), "First Citizen:")};
  std::vector<std::vector<int32_t>> solo;
  for (const auto& p : prompts) {
    SequencePtr s = sequence(m.get());
    solo.push_back(generate(s.get(), p, 20).tokens);
  }
  std::vector<std::vector<int32_t>> together(2);
  std::vector<ternvk_status> status(2, TERNVK_ERROR_INTERNAL);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < 2; ++k)
    threads.emplace_back([&, k] {
      ternvk_sequence* s = nullptr;
      if ((status[k] = ternvk_sequence_create(m.get(), &s)) != TERNVK_OK) return;
      Generated g;
      const ternvk_sampling greedy_sampling = greedy();
      status[k] = ternvk_generate(s, prompts[k].data(), prompts[k].size(), 20, &greedy_sampling, collect, &g, nullptr);
      together[k] = g.tokens;
      ternvk_sequence_free(s);
    });
  for (auto& t : threads) t.join();
  for (size_t k = 0; k < 2; ++k) {
    CHECK(status[k] == TERNVK_OK);
    CHECK(together[k] == solo[k]);
  }
  check_clean(m.get());
}

TEST_CASE("sequences outlive their model's handle, and the model goes with the last of them") {
  ternvk_model* m = nullptr;
  REQUIRE_OK(ternvk_model_load(kModel.c_str(), nullptr, &m));
  const std::vector<int32_t> prompt = tokens(m, "ROMEO:");
  ternvk_sequence* s = nullptr;
  ternvk_detokenizer* d = nullptr;
  REQUIRE_OK(ternvk_sequence_create(m, &s));
  REQUIRE_OK(ternvk_detokenizer_create(m, 0, &d));
  REQUIRE_OK(ternvk_model_free(m));
  ternvk_model_info i{};
  CHECK_STATUS(ternvk_model_get_info(m, &i), TERNVK_ERROR_INVALID_HANDLE);
  const Generated g = generate(s, prompt, 8);
  CHECK(g.tokens.size() == 8);
  const char* piece = nullptr;
  size_t length = 0;
  REQUIRE_OK(ternvk_detokenizer_feed(d, g.tokens[0], &piece, &length));
  REQUIRE_OK(ternvk_sequence_free(s));
  REQUIRE_OK(ternvk_detokenizer_free(d));
  CHECK_STATUS(ternvk_generate(s, prompt.data(), prompt.size(), 4, nullptr, nullptr, nullptr, nullptr),
               TERNVK_ERROR_INVALID_HANDLE);
}

extern "C" int c99_generate_greedy(const char* model_path, const char* prompt, int n, char* out, size_t capacity);
extern "C" const char* c99_status_name(int value);

TEST_CASE("a C99 program gets the same text as the C++ caller") {
  char text[1024];
  REQUIRE(c99_generate_greedy(kModel.c_str(), "ROMEO:", 20, text, sizeof text) == 0);
  ModelPtr m = load();
  SequencePtr s = sequence(m.get());
  const Generated g = generate(s.get(), tokens(m.get(), "ROMEO:"), 20);
  CHECK(std::string(text) == g.text);
  CHECK(c99_generate_greedy("/no/such/file.gguf", "ROMEO:", 20, text, sizeof text) == int(TERNVK_ERROR_FAILED));
  CHECK(std::string(text).find("/no/such/file.gguf") != std::string::npos);
  // A status the header does not list, stored by a C caller (read as its int, not as the C++ enum).
  CHECK(std::string(c99_status_name(int(TERNVK_ERROR_BUSY))) == "TERNVK_ERROR_BUSY");
  CHECK(std::string(c99_status_name(99)) == "unknown status");
  CHECK(std::string(c99_status_name(-7)) == "unknown status");
}

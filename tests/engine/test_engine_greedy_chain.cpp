// Greedy tokens chained on the GPU (Engine::decode_greedy, Stage::run_greedy_chain): a submit runs
// several one-token steps, each step's embedding reading the previous step's argmax. The tokens,
// the sequence and what follows must be those of one step a submit, on both plans. The shipped
// model (trained) writes varied text; a random model's greedy tokens soon repeat one token, which a
// chain feeding the wrong token would repeat too.
#include <doctest/doctest.h>

#include <set>
#include <stdexcept>

#include "common/gpu.h"
#include "engine/engine_test_util.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"
#include "engine/random_model.h"
#include "runtime/engine/shipped_model.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

EngineOptions chained(ExecutionPlan plan, int chain, int sequences = 1) {
  EngineOptions o = weights_only();
  o.plan = plan;
  o.greedy_chain = chain;
  o.greedy_chain_budget_ms = 0;  // always the longest chain that fits: the lengths below are exact
  o.fold_attention = false;      // (chains also end where the attention stops running inside qkv: test_engine_fold)
  o.sequences = sequences;
  return o;
}

// `n` greedy tokens after `prompt` by decode_greedy, with the length of each chain it ran.
std::vector<uint32_t> chained_greedy(Engine& engine, std::vector<uint32_t> prompt, int n, std::vector<size_t>* lengths) {
  engine.reset();
  const auto logits = engine.eval(prompt);
  std::vector<uint32_t> out{uint32_t(argmax_index(logits))};
  while (int(out.size()) < n) {
    const auto picks = engine.decode_greedy(out.back(), n - int(out.size()));
    lengths->push_back(picks.size());
    out.insert(out.end(), picks.begin(), picks.end());
  }
  return out;
}

std::filesystem::path model_file() { return shipped_model_path(); }

Sampler greedy_sampler() {
  SamplingParams p;
  p.temperature = 0;
  return Sampler(p);
}

// Runs `run(engine, tokens_out)` on `one` (a step a submit) then on `chained`: the tokens each saw.
template <typename Run>
std::vector<std::vector<uint32_t>> on_both(Engine& one, Engine& chained, Run run, std::vector<GenerationStats>* stats = nullptr) {
  std::vector<std::vector<uint32_t>> got(2);
  for (int e = 0; e < 2; ++e) {
    const GenerationStats s = run(e ? chained : one, got[size_t(e)]);
    if (stats) stats->push_back(s);
  }
  return got;
}

}  // namespace

TEST_CASE("greedy chains give the tokens of one step a submit, on both plans and with several KV slots") {
  ValidationGuard guard;
  const std::vector<uint32_t> prompt = {1, 42, 7};
  for (const auto plan : {ExecutionPlan::Cpu, ExecutionPlan::Gpu})
    for (const int sequences : {1, 3}) {
      CAPTURE(plan_name(plan));
      CAPTURE(sequences);
      Engine one(instance(), model_file(), chained(plan, 1, sequences));
      const auto want = greedy(one, prompt, 20);  // picked on the host from every logit
      REQUIRE(std::set(want.begin(), want.end()).size() > 5);  // a wrong token fed would show
      Engine engine(instance(), model_file(), chained(plan, 8, sequences));
      std::vector<size_t> lengths;
      CHECK(chained_greedy(engine, prompt, 20, &lengths) == want);
      // 19 tokens after the prompt's: chains of 8, 8, then 3 as 2 + 1 (powers of two only).
      CHECK(lengths == std::vector<size_t>{8, 8, 2, 1});
      // Every token but the last pick was fed, at its position.
      std::vector<uint32_t> fed = prompt;
      fed.insert(fed.end(), want.begin(), want.end() - 1);
      CHECK(engine.position() == int(fed.size()));
      CHECK(engine.sequence() == fed);
      // What the chains wrote to the KV cache carries on: the next logits are those of one step a submit.
      // (`one` fed the last pick too: take it back and feed it again, as `engine` does now.)
      const uint32_t last[] = {want.back()};
      one.truncate(int(fed.size()));
      CHECK(engine.eval(last) == one.eval(last));
      if (sequences == 1) continue;
      // Another slot (the C API chains any sequence's), while slot 0 holds another text: the same
      // tokens, and slot 0's cache untouched.
      const std::vector<uint32_t> other_prompt = {9, 10, 11, 12, 13, 14, 15};
      const auto other_want = greedy(one, other_prompt, 2);
      engine.reset();
      CHECK(engine.prefill(0, other_prompt, {Selection::Argmax}).token == other_want[0]);
      const StepOutput first = engine.prefill(2, prompt, {Selection::Argmax});
      std::vector<uint32_t> in_slot_2{first.token};
      while (in_slot_2.size() < want.size()) {
        const auto picks = engine.decode_greedy(2, in_slot_2.back(), int(want.size() - in_slot_2.size()));
        in_slot_2.insert(in_slot_2.end(), picks.begin(), picks.end());
      }
      CHECK(in_slot_2 == want);
      CHECK(engine.sequence(2) == fed);
      CHECK(engine.decode_greedy(0, other_want[0], 1) == std::vector<uint32_t>{other_want[1]});
    }
}

TEST_CASE("generate() stopped in the middle of a chain keeps the sequence of one step a submit") {
  ValidationGuard guard;
  const std::vector<uint32_t> prompt = {5, 9, 300};
  Sampler sampler = greedy_sampler();
  Engine one(instance(), model_file(), chained(ExecutionPlan::Gpu, 1));
  Engine engine(instance(), model_file(), chained(ExecutionPlan::Gpu, 16));
  // (The first chain starts after the prompt's token: stopping at the 2nd token or later stops in one.)
  for (const int stop_after : {2, 5, 11})
    for (const bool by_cancel : {false, true}) {
    CAPTURE(stop_after);
    CAPTURE(by_cancel);
    std::vector<GenerationStats> stats;
    const auto got = on_both(one, engine, [&](Engine& which, std::vector<uint32_t>& out) {
      which.reset();
      return which.generate(prompt, 40, sampler, [&](uint32_t t) {
        out.push_back(t);
        const bool stop = int(out.size()) == stop_after;
        if (stop && by_cancel) which.cancel();
        return !stop || by_cancel;
      });
    }, &stats);
    CHECK(got[1] == got[0]);
    CHECK(stats[1].stop_reason == (by_cancel ? "cancelled" : "stop string"));
    CHECK(stats[1].generated_tokens == stop_after);
    // The token that stopped it was not fed; nothing a chain computed past it stays.
    CHECK(engine.position() == int(prompt.size()) + stop_after - 1);
    CHECK(engine.sequence() == one.sequence());
    // Generation goes on from there as it would have.
    const uint32_t next[] = {got[0].back()};
    const auto more = on_both(one, engine, [&](Engine& which, std::vector<uint32_t>& out) {
      return which.generate(next, 12, sampler, [&](uint32_t t) {
        out.push_back(t);
        return true;
      });
    });
    CHECK(more[1] == more[0]);
    CHECK(engine.sequence() == one.sequence());
  }
}

TEST_CASE("generate() that throws from on_token keeps only what was fed one by one") {
  ValidationGuard guard;
  Sampler sampler = greedy_sampler();
  Engine engine(instance(), model_file(), chained(ExecutionPlan::Cpu, 16));
  const std::vector<uint32_t> prompt = {5, 9, 300};
  int seen = 0;
  CHECK_THROWS_AS(engine.generate(prompt, 40, sampler, [&](uint32_t) {
    if (++seen == 4) throw std::runtime_error("the caller's own error");
    return true;
  }), std::runtime_error);
  CHECK(engine.position() == int(prompt.size()) + 3);
}

TEST_CASE("chains grow twofold within the time budget, stay single past it, and profiling times single steps") {
  ValidationGuard guard;
  auto lengths = [](EngineOptions o, int calls) {
    Engine engine(instance(), model_file(), o);
    const uint32_t prompt[] = {1, 2};
    engine.eval(prompt);
    std::vector<size_t> out;
    uint32_t next = 3;
    for (int i = 0; i < calls; ++i) {
      const auto picks = engine.decode_greedy(next, 16);
      out.push_back(picks.size());
      next = picks.back();
    }
    return out;
  };
  EngineOptions o = chained(ExecutionPlan::Cpu, 8);
  o.greedy_chain_budget_ms = 1e6;  // every chain fits: growth is the only limit
  CHECK(lengths(o, 6) == std::vector<size_t>{1, 2, 4, 8, 8, 8});
  o.greedy_chain_budget_ms = 1e-6;  // no token fits: one a submit
  CHECK(lengths(o, 3) == std::vector<size_t>{1, 1, 1});
  o.greedy_chain_budget_ms = 0;
  o.timestamps = TimestampMode::Pass;  // the profiler's times are of one-token passes
  CHECK(lengths(o, 3) == std::vector<size_t>{1, 1, 1});
}

TEST_CASE("logits of only NaN (float overflow) stop greedy decoding with an error, the fed tokens kept") {
  ValidationGuard guard;
  // Files may not hold NaN (the loader refuses them), but float overflow makes it: a final norm
  // weight near FLT_MAX turns the normed state into infinities of both signs, and every head row
  // adds some of each.
  RandomModel m = make_random_model(small_2b4t_config(), 41);
  for (size_t i = 0; i < m.output_norm.size(); ++i) m.output_norm[i] = i % 2 ? 3e38f : -3e38f;
  const auto dir = temp_dir("greedy-chain-nan");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  Sampler sampler = greedy_sampler();
  for (const auto plan : {ExecutionPlan::Cpu, ExecutionPlan::Gpu}) {
    CAPTURE(plan_name(plan));
    Engine engine(instance(), dir / "model.gguf", chained(plan, 4));
    const std::vector<uint32_t> prompt = {1, 2, 3};
    CHECK_THROWS_WITH_AS(engine.generate(prompt, 8, sampler, [](uint32_t) { return true; }),
                         doctest::Contains("every logit is NaN"), Error);
    CHECK(engine.position() == 3);
    // A chain's first step finds no token: it was fed, nothing after it is kept.
    CHECK_THROWS_WITH_AS(engine.decode_greedy(7, 4), doctest::Contains("after position 3"), Error);
    CHECK(engine.position() == 4);
    CHECK(engine.sequence().back() == 7);
  }
}

TEST_CASE("generate() runs chains up to its length and the context's end") {
  ValidationGuard guard;
  Sampler sampler = greedy_sampler();
  EngineOptions o = chained(ExecutionPlan::Gpu, 16);
  o.context = 24;
  Engine engine(instance(), model_file(), o);
  o.greedy_chain = 1;
  Engine one(instance(), model_file(), o);
  const std::vector<uint32_t> prompt = {3, 4};
  for (const int n : {7, 40}) {  // 7: the length stops it; 40: the context (24 positions)
    CAPTURE(n);
    std::vector<GenerationStats> stats;
    const auto got = on_both(one, engine, [&](Engine& which, std::vector<uint32_t>& out) {
      which.reset();
      return which.generate(prompt, n, sampler, [&](uint32_t t) {
        out.push_back(t);
        return true;
      });
    }, &stats);
    CHECK(got[1] == got[0]);
    CHECK(stats[1].stop_reason == stats[0].stop_reason);
    CHECK(stats[1].stop_reason == (n == 7 ? "length" : "context"));
    CHECK(engine.sequence() == one.sequence());
    CHECK(engine.position() <= 24);
  }
}

TEST_CASE("greedy chain settings out of range are refused by name") {
  ValidationGuard guard;
  for (const int chain : {0, 65}) {
    EngineOptions o = chained(ExecutionPlan::Cpu, chain);
    CHECK_THROWS_WITH_AS(Engine(instance(), model_file(), o), doctest::Contains("greedy chain"), Error);
  }
  EngineOptions o = chained(ExecutionPlan::Cpu, 4);
  o.greedy_chain_budget_ms = -1;
  CHECK_THROWS_WITH_AS(Engine(instance(), model_file(), o), doctest::Contains("greedy chain budget"), Error);
  Engine engine(instance(), model_file(), chained(ExecutionPlan::Cpu, 4));
  const uint32_t prompt[] = {1};
  engine.eval(prompt);
  CHECK_THROWS_WITH_AS(engine.decode_greedy(2, 0), doctest::Contains("1 or more"), Error);
  CHECK_THROWS_WITH_AS(engine.decode_greedy(uint32_t(engine.config().vocab), 4), doctest::Contains("vocabulary"), Error);
  CHECK(engine.position() == 1);
}

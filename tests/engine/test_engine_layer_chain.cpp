// Chained layers (EngineOptions::chain_layers): the GPU plan's one-token steps record their fused
// dispatches with no barrier between them, each waiting in its shader for the one before. They must
// give the unchained plan's bits one step at a time (with the attention inside qkv and, past the
// position where that stops, with the separate attention between chains), in greedy chains, and for
// the FP16 baseline; a wait that times out must redo its step with barriers, giving the same bits,
// and turn chaining off. lavapipe runs dispatches one after another, so here every wait is met at
// once (the ops test says what that can and cannot show); the forced timeout runs everywhere.
#include <doctest/doctest.h>

#include <memory>

#include "common/gpu.h"
#include "engine/engine_test_util.h"
#include "engine/random_model.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

EngineOptions gpu_plan(bool chain, bool fp16 = false) {
  EngineOptions o = weights_only();
  o.plan = ExecutionPlan::Gpu;
  o.fp16_baseline = fp16;
  o.chain_layers = chain ? LayerChain::On : LayerChain::Off;
  o.greedy_chain = 8;
  o.greedy_chain_budget_ms = 0;  // chains as long as asked
  o.attention_min_split = 16;    // the attention leaves qkv at 16 keys on every device
  return o;
}

ModelConfig two_layers() {
  ModelConfig c = small_2b4t_config();
  c.n_layers = 2;
  return c;
}

size_t last_barriers(const Engine& e) { return e.stage().last_pass()->barrier_count(); }

}  // namespace

TEST_CASE("chained layers give the GPU plan's bits, a step at a time and in greedy chains") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 61, "layer-chain");
  for (const bool fp16 : {false, true}) {
    CAPTURE(fp16);
    Engine plain(instance(), model_file, gpu_plan(false, fp16));
    Engine chained(instance(), model_file, gpu_plan(true, fp16));
    REQUIRE(chained.stage().chains_layers());
    const int keys = int(chained.stage().fold_attention_keys());
    REQUIRE(keys >= 4);
    REQUIRE(keys + 4 <= chained.context());
    // A prompt (its chunk is not chained), then one token at a time on both sides of `keys`.
    const std::vector<uint32_t> prompt = {3, 1, 4};
    REQUIRE(chained.eval(prompt) == plain.eval(prompt));
    for (int pos = int(prompt.size()); pos < keys + 4; ++pos) {
      CAPTURE(pos);
      const uint32_t token[] = {uint32_t((pos * 29 + 7) % c.vocab)};
      REQUIRE(chained.eval(token) == plain.eval(token));
      // Folded: a barrier after the embedding and before the head, none between the layers; with the
      // separate attention, also around each attention.
      CHECK(last_barriers(chained) < last_barriers(plain));
    }
    // Greedy chains (8 chained passes a submit), below and past `keys`.
    for (Engine* e : {&plain, &chained}) e->truncate(keys - 6);
    CHECK(chained.decode_greedy(5, 8) == plain.decode_greedy(5, 8));
    CHECK(chained.decode_greedy(9, 8) == plain.decode_greedy(9, 8));
    CHECK(chained.stage().chain_redos() == 0);
    CHECK(chained.stage().chains_layers());
  }
}

TEST_CASE("chained layers keep the bits of another KV slot's one-token steps and of batched steps beside them") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 65, "layer-chain-slots");
  std::vector<std::unique_ptr<Engine>> engines;
  for (const bool chain : {false, true}) {
    EngineOptions o = gpu_plan(chain);
    o.sequences = 3;
    engines.push_back(std::make_unique<Engine>(instance(), model_file, o));
  }
  Engine &plain = *engines[0], &chained = *engines[1];
  for (uint32_t step = 0; step < 4; ++step) {
    CAPTURE(step);
    // Slot 2 alone (a chained one-token step that reads its KV slot), then slots 0 and 1 together (a
    // two-token step: the separate ops, not chained).
    const int one_slot[] = {2};
    const uint32_t one_token[] = {step + 7};
    REQUIRE(chained.decode(one_slot, one_token, {Selection::Logits})[0].logits ==
            plain.decode(one_slot, one_token, {Selection::Logits})[0].logits);
    const int two_slots[] = {0, 1};
    const uint32_t two_tokens[] = {step + 1, step + 40};
    const auto want = plain.decode(two_slots, two_tokens, {Selection::Logits});
    const auto got = chained.decode(two_slots, two_tokens, {Selection::Logits});
    for (size_t i = 0; i < 2; ++i) REQUIRE(got[i].logits == want[i].logits);
  }
  CHECK(chained.chain_redos() == 0);
}

TEST_CASE("chained layers in a pipeline of two stages (no head, then no embedding) give the unchained bits") {
  ValidationGuard guard;
  ModelConfig c = two_layers();
  c.n_layers = 3;
  const auto model_file = random_model_gguf(c, 64, "layer-chain-stages");
  std::vector<std::unique_ptr<Engine>> engines;
  for (const LayerChain chain : {LayerChain::Off, LayerChain::On, LayerChain::Measure}) {
    EngineOptions o = gpu_plan(false);
    o.chain_layers = chain;
    o.settle_layer_chain_at_load = false;  // each stage's trial in the steps below
    const int dev = int(device().info().index);
    o.devices = {dev, dev};
    o.split = {2, 1};
    engines.push_back(std::make_unique<Engine>(instance(), model_file, o));
  }
  Engine &plain = *engines[0], &chained = *engines[1], &measured = *engines[2];
  REQUIRE(chained.stage_count() == 2);
  for (size_t i = 0; i < 2; ++i) REQUIRE(chained.stage(i).chains_layers());
  const std::vector<uint32_t> prompt = {5, 6};
  const auto want = plain.eval(prompt);
  REQUIRE(chained.eval(prompt) == want);
  REQUIRE(measured.eval(prompt) == want);
  // Enough one-token steps for each stage's trial (the first stage compares its hand-over) to decide.
  for (uint32_t t = 0; t < 10; ++t) {
    const uint32_t token[] = {(t * 41 + 3) % uint32_t(c.vocab)};
    const auto logits = plain.eval(token);
    REQUIRE(chained.eval(token) == logits);
    REQUIRE(measured.eval(token) == logits);
  }
  CHECK(chained.chain_redos() == 0);
  for (size_t i = 0; i < 2; ++i) CHECK_FALSE(measured.stage(i).layer_chain_trial_running());
  CHECK(measured.layer_chain_note().starts_with("stage 0: o"));
  CHECK(measured.layer_chain_note().find("; stage 1: o") != std::string::npos);
}

TEST_CASE("a chained wait that times out redoes its step with barriers and turns chaining off") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 62, "layer-chain-timeout");
  EngineOptions o = gpu_plan(true);
  o.chain_unreachable_waits = true;  // every later link waits for one workgroup more than it gets
  o.chain_spin_limit = 32;
  Engine plain(instance(), model_file, gpu_plan(false));
  {
    Engine stuck(instance(), model_file, o);
    const std::vector<uint32_t> prompt = {2, 7};
    REQUIRE(stuck.eval(prompt) == plain.eval(prompt));  // a prompt chunk: nothing chained
    CHECK(stuck.stage().chain_redos() == 0);
    const uint32_t token[] = {11};
    REQUIRE(stuck.eval(token) == plain.eval(token));  // timed out, redone with barriers
    CHECK(stuck.stage().chain_redos() == 1);
    CHECK_FALSE(stuck.stage().chains_layers());
    const uint32_t next[] = {12};
    REQUIRE(stuck.eval(next) == plain.eval(next));  // unchained from now on
    CHECK(stuck.stage().chain_redos() == 1);
  }
  {
    // The same inside a greedy chain: the whole chain is redone.
    Engine stuck(instance(), model_file, o);
    const std::vector<uint32_t> prompt = {2, 7};
    stuck.eval(prompt);
    plain.reset();
    plain.eval(prompt);
    CHECK(stuck.decode_greedy(4, 8) == plain.decode_greedy(4, 8));
    CHECK(stuck.stage().chain_redos() == 1);
    CHECK(stuck.decode_greedy(6, 4) == plain.decode_greedy(6, 4));
  }
}

TEST_CASE("chained layers are refused where they cannot run, saying why") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 63, "layer-chain-refused");
  EngineOptions o = gpu_plan(true);
  o.plan = ExecutionPlan::Cpu;
  CHECK_THROWS_WITH_AS(Engine(instance(), model_file, o), doctest::Contains("CPU plan"), Error);
  o = gpu_plan(true);
  o.timestamps = TimestampMode::Dispatch;
  CHECK_THROWS_WITH_AS(Engine(instance(), model_file, o), doctest::Contains("--timing pass"), Error);
  o = gpu_plan(true);
  o.timestamps = TimestampMode::Pass;  // whole passes: chaining allowed
  CHECK_NOTHROW(Engine(instance(), model_file, o));
  o = gpu_plan(true);
  o.max_segment_bytes = 4096;  // every matrix in several segments
  CHECK_THROWS_WITH_AS(Engine(instance(), model_file, o), doctest::Contains("segment"), Error);
}

namespace {

// A trial that runs in the first one-token steps (not while loading), so that the tests see it.
EngineOptions measured(bool fp16 = false) {
  EngineOptions o = gpu_plan(true, fp16);
  o.chain_layers = LayerChain::Measure;
  o.settle_layer_chain_at_load = false;
  return o;
}

}  // namespace

TEST_CASE("a measured chain gives the unchained bits while its trial runs both forms, then keeps one") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 66, "layer-chain-trial");
  for (const bool fp16 : {false, true}) {
    CAPTURE(fp16);
    Engine plain(instance(), model_file, gpu_plan(false, fp16));
    Engine trial(instance(), model_file, measured(fp16));
    REQUIRE(trial.stage().layer_chain_trial_running());
    CHECK_FALSE(trial.stage().chains_layers());
    CHECK(trial.layer_chain_note().find("measuring: 0 of 8") != std::string::npos);
    // The trial's steps on both sides of the position where the attention leaves qkv.
    const int keys = int(trial.stage().fold_attention_keys());
    REQUIRE(keys >= 8);
    std::vector<uint32_t> prompt(size_t(keys - 4));
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = uint32_t((i * 13 + 3) % c.vocab);
    REQUIRE(trial.eval(prompt) == plain.eval(prompt));  // a prompt chunk: no trial pair
    CHECK(trial.stage().layer_chain_trial_running());
    // One pair a one-token step: the check's pair, then the timed ones.
    int steps = 0;
    for (; trial.stage().layer_chain_trial_running(); ++steps) {
      REQUIRE(steps <= LayerChainTrial::kTimedPairs);
      const uint32_t token[] = {uint32_t((steps * 31 + 5) % c.vocab)};
      REQUIRE(trial.eval(token) == plain.eval(token));
    }
    CHECK(steps == LayerChainTrial::kTimedPairs + 1);
    // lavapipe runs dispatches in turn, so either outcome may come; the note says which and why.
    const std::string note = trial.layer_chain_note();
    CAPTURE(note);
    CHECK(note.find("median of 8 pairs") != std::string::npos);
    CHECK(note.starts_with(trial.stage().chains_layers() ? "on: chained" : "off: chained"));
    CHECK(trial.chain_redos() == 0);
    for (int i = 0; i < 3; ++i) {
      const uint32_t token[] = {uint32_t(i + 9)};
      REQUIRE(trial.eval(token) == plain.eval(token));
    }
  }
}

TEST_CASE("a trial stops after its first timed pair where the dispatches' gaps could not add up to the margin") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 69, "layer-chain-bound");
  Engine plain(instance(), model_file, gpu_plan(false));
  // A gap of 1e-12 s a dispatch: no pass is short enough for the chain to win by 2%. A gap of 1 s: any is.
  for (const double gap : {1e-12, 1.0}) {
    CAPTURE(gap);
    EngineOptions o = measured();
    o.chain_max_gap_seconds = gap;
    Engine trial(instance(), model_file, o);
    plain.reset();
    int steps = 0;
    for (; trial.stage().layer_chain_trial_running(); ++steps) {
      REQUIRE(steps <= LayerChainTrial::kTimedPairs);
      const uint32_t token[] = {uint32_t((steps * 17 + 2) % c.vocab)};
      REQUIRE(trial.eval(token) == plain.eval(token));
    }
    const std::string note = trial.layer_chain_note();
    CAPTURE(note);
    if (gap < 1) {
      CHECK(steps == 2);  // the check's pair and one timed pair
      CHECK(note.starts_with("off: a one-token step takes "));
      CHECK(note.find("under the 2% it must win by") != std::string::npos);
      CHECK_FALSE(trial.stage().chains_layers());
    } else {
      CHECK(steps == LayerChainTrial::kTimedPairs + 1);
      CHECK(note.find("median of 8 pairs") != std::string::npos);
    }
    const uint32_t token[] = {7};
    REQUIRE(trial.eval(token) == plain.eval(token));
  }
}

TEST_CASE("a measured chain's trial runs greedy chains both ways with the unchained picks") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 67, "layer-chain-trial-greedy");
  Engine plain(instance(), model_file, gpu_plan(false));
  Engine trial(instance(), model_file, measured());
  // A chain a pair, the chains on both sides of the position where the attention leaves qkv.
  const int keys = int(trial.stage().fold_attention_keys());
  REQUIRE(keys >= 8);
  std::vector<uint32_t> prompt(size_t(keys - 5), 2);
  plain.eval(prompt);
  trial.eval(prompt);
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    REQUIRE(trial.decode_greedy(i + 1, 6) == plain.decode_greedy(i + 1, 6));
    REQUIRE(trial.position() == plain.position());
  }
  CHECK(trial.layer_chain_note().find("measuring: 2 of 8") != std::string::npos);
  CHECK(trial.sequence() == plain.sequence());
}

TEST_CASE("settle_layer_chain ends the trial on an empty sequence, by default while the engine loads") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 68, "layer-chain-settle");
  Engine plain(instance(), model_file, gpu_plan(false));
  {
    EngineOptions o = measured();
    o.settle_layer_chain_at_load = true;
    Engine loaded(instance(), model_file, o);
    CHECK_FALSE(loaded.stage().layer_chain_trial_running());
    // No pair gave other bits: its steps took logits, the GPU's argmax and greedy chains of two, from
    // 4 positions before the attention leaves qkv (16 keys) to past it.
    CHECK(loaded.layer_chain_note().find("median of 8 pairs") != std::string::npos);
    CHECK(loaded.position() == 0);
    CHECK(loaded.stage().last_pass() == nullptr);  // nothing of the scratch steps to read
    const std::vector<uint32_t> prompt = {1, 2, 3};
    REQUIRE(loaded.eval(prompt) == plain.eval(prompt));
    const uint32_t token[] = {4};
    REQUIRE(loaded.eval(token) == plain.eval(token));
    plain.reset();
  }
  {
    // A mismatch in the load's third pair (a greedy chain of two): the engine loads unchained.
    EngineOptions o = measured();
    o.settle_layer_chain_at_load = true;
    o.chain_trial_mismatch_pair = 3;
    Engine loaded(instance(), model_file, o);
    CHECK_FALSE(loaded.stage().chains_layers());
    CHECK(loaded.layer_chain_note().find("other bits") != std::string::npos);
    CHECK(loaded.layer_chain_note().find("trial pair 3") != std::string::npos);
    CHECK(loaded.position() == 0);
    const std::vector<uint32_t> prompt = {6, 5};
    REQUIRE(loaded.eval(prompt) == plain.eval(prompt));
    plain.reset();
  }
  {
    Engine trial(instance(), model_file, measured());
    trial.settle_layer_chain();
    CHECK_FALSE(trial.stage().layer_chain_trial_running());
    CHECK(trial.position() == 0);
    CHECK(trial.sequence().empty());
    const std::vector<uint32_t> prompt = {4, 4, 8};
    REQUIRE(trial.eval(prompt) == plain.eval(prompt));
    plain.reset();
    trial.settle_layer_chain();  // nothing to do any more
    CHECK(trial.position() == 3);
  }
  {
    // A context shorter than the trial: it starts again from position 0.
    EngineOptions o = measured();
    o.context = 3;
    Engine trial(instance(), model_file, o);
    trial.settle_layer_chain();
    CHECK_FALSE(trial.stage().layer_chain_trial_running());
    CHECK(trial.position() == 0);
  }
  {
    Engine trial(instance(), model_file, measured());
    const uint32_t token[] = {5};
    trial.eval(token);
    CHECK_THROWS_WITH_AS(trial.settle_layer_chain(), doctest::Contains("every sequence empty"), Error);
  }
}

TEST_CASE("a trial whose chained form gives other bits turns chaining off and keeps the unchained results") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 69, "layer-chain-mismatch");
  // Pair 1 runs the unchained form first, pair 2 the chained one: the corrupted results are the last
  // ones on the device only in pair 1, and must not be what the step returns in either.
  for (const uint32_t pair : {1u, 2u}) {
    CAPTURE(pair);
    EngineOptions o = measured();
    o.chain_trial_mismatch_pair = pair;  // the chained form's residual stream and first logit corrupted
    Engine plain(instance(), model_file, gpu_plan(false));
    Engine trial(instance(), model_file, o);
    const std::vector<uint32_t> prompt = {7, 3};
    REQUIRE(trial.eval(prompt) == plain.eval(prompt));
    for (uint32_t i = 0; i < 4; ++i) {
      CAPTURE(i);
      const uint32_t token[] = {i * 5 + 1};
      REQUIRE(trial.eval(token) == plain.eval(token));
      CHECK(trial.stage().layer_chain_trial_running() == (i + 1 < pair));
    }
    CHECK_FALSE(trial.stage().chains_layers());
    CHECK(trial.layer_chain_note().find("other bits") != std::string::npos);
    CHECK(trial.layer_chain_note().find("trial pair " + std::to_string(pair)) != std::string::npos);
    CHECK(trial.chain_redos() == 0);
  }
}

TEST_CASE("a trial whose chained wait times out redoes the step with barriers and stays unchained") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 70, "layer-chain-trial-timeout");
  EngineOptions o = measured();
  o.chain_unreachable_waits = true;
  o.chain_spin_limit = 32;
  Engine plain(instance(), model_file, gpu_plan(false));
  Engine trial(instance(), model_file, o);
  for (int i = 0; i < 3; ++i) {
    const uint32_t token[] = {uint32_t(i + 2)};
    REQUIRE(trial.eval(token) == plain.eval(token));
  }
  CHECK(trial.chain_redos() == 1);
  CHECK_FALSE(trial.stage().layer_chain_trial_running());
  CHECK(trial.layer_chain_note().find("timed out") != std::string::npos);
  // In a greedy chain, too.
  Engine greedy(instance(), model_file, o);
  plain.reset();
  CHECK(greedy.decode_greedy(1, 4) == plain.decode_greedy(1, 4));
  CHECK(greedy.chain_redos() == 1);
}

TEST_CASE("auto chains layers only where a trial can run: never on CPU devices, and asks nothing of the CPU plan") {
  ValidationGuard guard;
  const ModelConfig c = two_layers();
  const auto model_file = random_model_gguf(c, 71, "layer-chain-auto");
  EngineOptions o = gpu_plan(false);
  o.chain_layers = LayerChain::Auto;
  Engine engine(instance(), model_file, o);
  if (device().info().is_cpu()) {
    CHECK_FALSE(engine.stage().layer_chain_trial_running());
    CHECK(engine.layer_chain_note().find("CPU device") != std::string::npos);
  } else {  // a GPU: the trial ran while the engine loaded
    CHECK_FALSE(engine.stage().layer_chain_trial_running());
    CHECK(engine.layer_chain_note().find("chained") != std::string::npos);
  }
  o.plan = ExecutionPlan::Cpu;  // no fused layers: auto says why, measure refuses
  Engine cpu_plan(instance(), model_file, o);
  CHECK_FALSE(cpu_plan.stage().layer_chain_trial_running());
  CHECK(cpu_plan.layer_chain_note().starts_with("off"));
  o.chain_layers = LayerChain::Measure;
  CHECK_THROWS_WITH_AS(Engine(instance(), model_file, o), doctest::Contains("CPU plan"), Error);
}

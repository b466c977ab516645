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
  o.chain_layers = chain;
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
  for (const bool chain : {false, true}) {
    EngineOptions o = gpu_plan(chain);
    const int dev = int(device().info().index);
    o.devices = {dev, dev};
    o.split = {2, 1};
    engines.push_back(std::make_unique<Engine>(instance(), model_file, o));
  }
  Engine &plain = *engines[0], &chained = *engines[1];
  REQUIRE(chained.stage_count() == 2);
  for (size_t i = 0; i < 2; ++i) REQUIRE(chained.stage(i).chains_layers());
  const std::vector<uint32_t> prompt = {5, 6};
  REQUIRE(chained.eval(prompt) == plain.eval(prompt));
  for (uint32_t t = 0; t < 6; ++t) {
    const uint32_t token[] = {(t * 41 + 3) % uint32_t(c.vocab)};
    REQUIRE(chained.eval(token) == plain.eval(token));
  }
  CHECK(chained.chain_redos() == 0);
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

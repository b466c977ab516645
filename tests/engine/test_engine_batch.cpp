// Several sequences in one engine (KV cache slots): prefill into any slot, batched decode of many
// slots in one forward pass. A sequence's logits and tokens must not depend on which other
// sequences share its steps, and must match the CPU reference.
#include <doctest/doctest.h>

#include "common/gpu.h"
#include "engine/engine_test_util.h"
#include "engine/random_model.h"
#include "engine/reference_forward.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"

#include <cmath>

using namespace ternvk;
using namespace ternvk::test;

namespace {

EngineOptions batch_options(int sequences, int chunk = 8, ExecutionPlan plan = ExecutionPlan::Auto) {
  EngineOptions o = weights_only(chunk);
  o.plan = plan;
  o.context = 128;
  o.sequences = sequences;
  // Splits of a fixed size on every device, so the long prompt below is split whatever the device's
  // own plan (a GPU's would run 128 keys of this model as one split): the lane-split kernel's
  // default on CPU devices (64 keys), and 16 for the GPU plan's flash-decode.
  if (plan != ExecutionPlan::Auto) o.attention_min_split = plan == ExecutionPlan::Gpu ? 16 : 64;
  return o;
}

// A long prompt: more live keys than one attention split takes (64 at most), so the context is
// split and the split count must not depend on the batch.
std::vector<uint32_t> long_prompt() {
  std::vector<uint32_t> p = {1};
  for (uint32_t i = 1; i < 100; ++i) p.push_back((i * 37 + 11) % 320);
  return p;
}

const std::vector<std::vector<uint32_t>> kPrompts = {
    long_prompt(),
    {1, 9},
    {1, 200, 100, 50, 25},
    {1, 77, 77, 77},
};

struct Run {
  std::vector<uint32_t> tokens;               // greedy continuation
  std::vector<std::vector<float>> logits;     // logits of each decode step (including after prefill)
};

// One sequence alone in slot `slot` of `engine`: prefill, then `n` decode steps of batch 1.
Run solo(Engine& engine, int slot, const std::vector<uint32_t>& prompt, int n) {
  Run r;
  auto out = engine.prefill(slot, prompt, {Selection::Logits});
  for (int i = 0; i < n; ++i) {
    r.logits.push_back(out.logits);
    const uint32_t next = uint32_t(argmax_index(out.logits));
    r.tokens.push_back(next);
    const int slots[] = {slot};
    const uint32_t one[] = {next};
    out = engine.decode(slots, one, {Selection::Logits})[0];
  }
  return r;
}

}  // namespace

namespace {

// Every prompt alone, then all of them batched in the slots `slot_of` (a permutation): each step's
// logits bit-identical.
void check_batch_invariance(ExecutionPlan plan, const std::string& name, int steps,
                            const std::vector<std::vector<uint32_t>>& prompts, const std::vector<int>& slot_of) {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 41);
  const auto dir = temp_dir(name);
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);

  std::vector<Run> alone;
  {
    Engine engine(instance(), dir / "model.gguf", batch_options(1, 8, plan));
    for (const auto& p : prompts) {
      engine.truncate(0, 0);
      alone.push_back(solo(engine, 0, p, steps));
    }
  }
  // The solo runs are right: the CPU reference gives the same logits for prompt + continuation.
  ReferenceForward reference(*open_model(dir / "model.gguf"));
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<uint32_t> all = prompts[i];
    all.insert(all.end(), alone[i].tokens.begin(), alone[i].tokens.end() - 1);
    const auto want = reference.logits(all);
    for (int s = 0; s < steps; ++s) {
      CAPTURE(i);
      CAPTURE(s);
      CHECK(cosine(alone[i].logits[size_t(s)], want[prompts[i].size() - 1 + size_t(s)]) >= 0.999);
    }
  }

  // All together, batched: every step's logits are bit-identical to the solo run's.
  const int n = int(prompts.size());
  Engine engine(instance(), dir / "model.gguf", batch_options(n, 8, plan));
  CHECK(engine.sequences() == n);
  std::vector<std::vector<float>> last(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i)
    last[i] = engine.prefill(slot_of[i], prompts[i], {Selection::Logits}).logits;
  for (int s = 0; s < steps; ++s) {
    std::vector<int> slots;
    std::vector<uint32_t> tokens;
    for (size_t i = 0; i < prompts.size(); ++i) {
      CAPTURE(i);
      CAPTURE(s);
      REQUIRE(last[i] == alone[i].logits[size_t(s)]);
      slots.push_back(slot_of[i]);
      tokens.push_back(alone[i].tokens[size_t(s)]);
    }
    if (s + 1 == steps) break;
    const auto outs = engine.decode(slots, tokens, {Selection::Logits});
    REQUIRE(outs.size() == prompts.size());
    for (size_t i = 0; i < outs.size(); ++i) last[i] = outs[i].logits;
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    CHECK(engine.position(slot_of[i]) == int(prompts[i].size()) + steps - 1);
    CHECK(engine.sequence(slot_of[i]).front() == prompts[i].front());
  }
}

}  // namespace

TEST_CASE("batched decode of several slots gives each sequence its solo logits and tokens") {
  // Four in slots 3, 0, 2, 1 (reverse-ish order).
  check_batch_invariance(ExecutionPlan::Cpu, "engine-batch", 6, kPrompts, {3, 0, 2, 1});
}

TEST_CASE("the GPU plan's batched decode gives each sequence its solo logits and tokens") {
  // Six: a step of more tokens than Stage::kFusedMaxTokens runs the separate ops, and must give
  // the bits of the fused one-token steps.
  auto prompts = kPrompts;
  prompts.push_back({1, 5, 300, 7});
  prompts.push_back({1, 8});
  REQUIRE(prompts.size() > Stage::kFusedMaxTokens);
  check_batch_invariance(ExecutionPlan::Gpu, "engine-batch-gpu-plan", 4, prompts, {5, 0, 3, 1, 4, 2});
}

// Argmax and top-k picked on the GPU per row of a batched step, against each sequence decoded alone,
// with every slot reused after a truncate.
void check_batched_selection(const std::filesystem::path& model_file, ExecutionPlan plan) {
  Engine engine(instance(), model_file, batch_options(3, 8, plan));
  std::vector<Run> alone;
  for (int i = 0; i < 3; ++i) alone.push_back(solo(engine, i, kPrompts[size_t(i)], 4));

  // Reuse every slot for a different prompt, then decode the three together with argmax and top-k.
  for (int i = 0; i < 3; ++i) engine.truncate(i, 0);
  std::vector<uint32_t> next;
  for (int i = 0; i < 3; ++i) next.push_back(engine.prefill(i, kPrompts[size_t(i)], {Selection::Argmax}).token);
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 3; ++i) REQUIRE(next[size_t(i)] == alone[size_t(i)].tokens[size_t(s)]);
    const int slots[] = {0, 1, 2};
    const auto argmax = engine.decode(slots, next, {Selection::Argmax});
    for (int i = 0; i < 3; ++i) {
      const auto& want = alone[size_t(i)].logits[size_t(s) + 1];
      CHECK(argmax[size_t(i)].token == uint32_t(argmax_index(want)));
      next[size_t(i)] = argmax[size_t(i)].token;
    }
  }
  // Top-k on the GPU per row: the candidates are the k largest logits of that sequence's row.
  for (int i = 0; i < 3; ++i) engine.truncate(i, int(kPrompts[size_t(i)].size()));
  const int slots[] = {2, 0};
  const uint32_t tokens[] = {alone[2].tokens[0], alone[0].tokens[0]};
  const auto top = engine.decode(slots, tokens, {Selection::TopK, 5});
  for (int i = 0; i < 3; ++i) engine.truncate(i, int(kPrompts[size_t(i)].size()));
  const auto full = engine.decode(slots, tokens, {Selection::Logits});
  for (int j = 0; j < 2; ++j) {
    CAPTURE(j);
    const auto& want = alone[size_t(slots[j])].logits[1];
    CHECK(full[size_t(j)].logits == want);
  }
  for (int j = 0; j < 2; ++j) {
    CAPTURE(j);
    const auto& want = alone[size_t(slots[j])].logits[1];
    REQUIRE(top[size_t(j)].candidates.size() == 5);
    CHECK(top[size_t(j)].candidates[0].id == uint32_t(argmax_index(want)));
    CHECK(top[size_t(j)].candidates[0].logit == doctest::Approx(want[top[size_t(j)].candidates[0].id]));
  }
}

TEST_CASE("batched decode picks tokens on the GPU per sequence, and slots are reused after truncate") {
  ValidationGuard guard;
  const auto model_file = random_model_gguf(small_2b4t_config(), 43, "engine-batch-select", GgmlType::TQ2_0);
  for (const auto plan : {ExecutionPlan::Cpu, ExecutionPlan::Gpu}) {
    CAPTURE(int(plan));
    check_batched_selection(model_file, plan);
  }
}

TEST_CASE("several sequences on a pipeline of logical devices (staggered decode) give the one-device tokens") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  c.n_layers = 3;
  const auto model_file = random_model_gguf(c, 47, "engine-batch-stages");
  auto prefill_three = [](Engine& e) {
    for (const auto& [slot, prompt] : {std::pair{0, 0}, std::pair{1, 2}, std::pair{2, 3}})
      e.prefill(slot, kPrompts[size_t(prompt)], {Selection::Argmax});
  };
  // Both plans, each against itself on one device (the GPU plan's staged steps fuse as its solo ones).
  for (const auto plan : {ExecutionPlan::Cpu, ExecutionPlan::Gpu}) {
    CAPTURE(int(plan));
    EngineOptions o = batch_options(3, 8, plan);
    Engine one(instance(), model_file, o);
    const int dev = int(device().info().index);
    std::vector<std::vector<uint32_t>> want;
    {
      prefill_three(one);
      std::vector<uint32_t> next = {5, 6, 7};
      for (int s = 0; s < 4; ++s) {
        const int slots[] = {0, 1, 2};
        const auto x = one.decode(slots, next, {Selection::Logits});
        for (size_t i = 0; i < 3; ++i) next[i] = uint32_t(argmax_index(x[i].logits));
        want.push_back(next);
      }
    }
    // Two stages cut the batch of 3 into groups of 2 and 1; three stages into three groups of 1.
    for (auto split : std::vector<std::vector<int>>{{1, 2}, {1, 1, 1}}) {
      CAPTURE(split.size());
      o.devices = std::vector<int>(split.size(), dev);
      o.split = split;
      Engine staged(instance(), model_file, o);
      prefill_three(staged);
      std::vector<uint32_t> next = {5, 6, 7};
      for (int s = 0; s < 4; ++s) {
        const int slots[] = {0, 1, 2};
        const auto y = staged.decode(slots, next, {Selection::Argmax});
        for (size_t i = 0; i < 3; ++i) next[i] = y[i].token;
        CHECK(next == want[size_t(s)]);
      }
      CHECK(staged.position(2) == int(kPrompts[3].size()) + 4);
    }
  }
}

TEST_CASE("bad batched requests are clear errors and change nothing") {
  ValidationGuard guard;
  const auto model_file = random_model_gguf(small_2b4t_config(), 53, "engine-batch-errors");
  Engine engine(instance(), model_file, batch_options(2));
  engine.prefill(0, kPrompts[1], {Selection::Argmax});
  const uint32_t two[] = {3, 4};
  const int dup[] = {0, 0};
  CHECK_THROWS_WITH_AS(engine.decode(dup, two, {Selection::Argmax}), doctest::Contains("given twice"), Error);
  const int outside[] = {0, 2};
  CHECK_THROWS_WITH_AS(engine.decode(outside, two, {Selection::Argmax}), doctest::Contains("slot 2"), Error);
  const int one_slot[] = {0};
  CHECK_THROWS_WITH_AS(engine.decode(one_slot, two, {Selection::Argmax}), doctest::Contains("1 slots but 2 tokens"),
                       Error);
  CHECK_THROWS_AS(engine.prefill(5, kPrompts[0], {Selection::Argmax}), Error);
  // A sequence at the end of its context cannot take another token; the other slot still can.
  std::vector<uint32_t> fill(size_t(engine.context() - engine.position(0)), 7);
  engine.prefill(0, fill, {Selection::Argmax});
  const int full[] = {0};
  const uint32_t t[] = {1};
  CHECK_THROWS_WITH_AS(engine.decode(full, t, {Selection::Argmax}), doctest::Contains("context"), Error);
  CHECK(engine.position(0) == engine.context());
  CHECK(engine.position(1) == 0);
  const int other[] = {1};
  CHECK_NOTHROW(engine.decode(other, t, {Selection::Argmax}));
  CHECK(engine.position(1) == 1);
  EngineOptions bad = batch_options(0);
  CHECK_THROWS_WITH_AS(Engine(instance(), model_file, bad), doctest::Contains("sequences"), Error);
}

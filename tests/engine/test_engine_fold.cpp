// The attention inside the qkv dispatch (StageOptions::fold_attention): the GPU plan's one-token
// steps at positions below Stage::fold_attention_keys() record four dispatches a layer, and give the
// bits of the separate attention (five a layer), which runs those contexts as one split. Checked one
// step at a time on both sides of that position, for sequence 0 and for another KV slot, for greedy
// chains (which end where folding stops, then go on unfolded), and for the FP16 baseline.
#include <doctest/doctest.h>

#include "common/gpu.h"
#include "engine/engine_test_util.h"
#include "engine/random_model.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/shipped_model.h"
#include "runtime/ops/attention.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

// Splits of 16 keys: the folded attention ends at 16 keys on every device, within these tests'
// contexts (a GPU's own plan would run this small model's whole context as one split).
constexpr uint32_t kMinSplit = 16;

EngineOptions gpu_plan(bool fold, bool fp16) {
  EngineOptions o = weights_only();
  o.plan = ExecutionPlan::Gpu;
  o.fold_attention = fold;
  o.fp16_baseline = fp16;
  o.sequences = 3;
  o.greedy_chain = 8;
  o.greedy_chain_budget_ms = 0;  // chains as long as asked
  o.attention_min_split = kMinSplit;
  return o;
}

size_t last_dispatches(const Engine& e) { return e.stage().last_pass()->dispatch_count(); }

}  // namespace

TEST_CASE("the attention inside qkv gives the separate attention's bits below and past the position where it stops") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  const auto model_file = random_model_gguf(c, 51, "fold-attention");
  const size_t L = size_t(c.n_layers);
  for (const bool fp16 : {false, true}) {
    CAPTURE(fp16);
    Engine folded(instance(), model_file, gpu_plan(true, fp16));
    Engine apart(instance(), model_file, gpu_plan(false, fp16));
    const int keys = int(folded.stage().fold_attention_keys());
    REQUIRE(keys >= 4);
    REQUIRE(keys + 6 <= folded.context());
    // Sequence 0, a token at a time: positions 0 .. keys + 5.
    for (int pos = 0; pos < keys + 6; ++pos) {
      CAPTURE(pos);
      const uint32_t token[] = {uint32_t((pos * 37 + 11) % c.vocab)};
      const auto want = apart.eval(token);
      const size_t separate = last_dispatches(apart);
      REQUIRE(folded.eval(token) == want);
      CHECK(last_dispatches(folded) == (pos < keys ? separate - L : separate));
    }
    // Another slot while sequence 0 holds its text (decode() of one sequence: the same kind of step).
    for (int pos = 0; pos < 3; ++pos) {
      const int slot[] = {2};
      const uint32_t token[] = {uint32_t(pos + 5)};
      const auto want = apart.decode(slot, token, {Selection::Logits});
      REQUIRE(folded.decode(slot, token, {Selection::Logits})[0].logits == want[0].logits);
    }
    // Greedy chains: wholly below `keys` (folded: one dispatch fewer a layer and step), then up to it
    // and past it.
    for (Engine* e : {&folded, &apart}) e->truncate(keys - 12);
    std::vector<std::vector<uint32_t>> picks(2);
    std::vector<size_t> dispatches(2);
    for (int i = 0; i < 2; ++i) {
      Engine& e = i ? apart : folded;
      picks[size_t(i)] = e.decode_greedy(7, 8);  // positions keys - 12 .. keys - 5
      dispatches[size_t(i)] = last_dispatches(e);
    }
    CHECK(picks[0].size() == 8);
    CHECK(picks[0] == picks[1]);
    CHECK(dispatches[0] == dispatches[1] - 8 * L);
    // From keys - 4: the folded engine's chain ends where folding stops (4 steps, folded), the other's
    // runs 8; then on past it, the same recordings.
    const auto near_end = folded.decode_greedy(picks[0].back(), 8);
    CHECK(near_end.size() == 4);
    CHECK(last_dispatches(folded) == 4 * (dispatches[1] / 8 - L));
    const auto past = folded.decode_greedy(near_end.back(), 8);
    CHECK(past.size() == 8);
    CHECK(last_dispatches(folded) == dispatches[1]);
    picks[1] = apart.decode_greedy(picks[1].back(), 12);
    const auto more = apart.decode_greedy(picks[1].back(), 4);
    picks[1].insert(picks[1].end(), more.begin(), more.end());
    std::vector<uint32_t> chained = near_end;
    chained.insert(chained.end(), past.begin(), past.end());
    CHECK(chained == picks[1]);
    CHECK(folded.sequence() == apart.sequence());
  }
}

TEST_CASE("the attention inside qkv follows the fused layers' workgroup, and is refused by name where it cannot run") {
  ValidationGuard guard;
  const auto model_file = random_model_gguf(small_2b4t_config(), 52, "fold-attention-options");
  // The GPU rule's 128-lane workgroups (16 subgroups here): the attention is planned with them too,
  // so it folds, with the bits of the separate attention.
  EngineOptions o = gpu_plan(true, false);
  o.fused_shape = widest_gpu_split();
  // Subgroups so narrow that 128 lanes hold more attention states than the device's shared memory
  // (lavapipe at 4 lanes: 32 subgroups' states in 32 KiB) leave no flash-decode plan at that
  // workgroup, so nothing to fold into: there the required fold must be refused with that reason.
  const ModelConfig c = small_2b4t_config();
  std::string no_flash;
  try {
    ops::plan_attention(device().info(), {uint32_t(c.n_heads), uint32_t(c.n_kv_heads), uint32_t(c.head_dim)}, 1,
                        uint32_t(o.context),
                        {.workgroup = 128, .min_split = kMinSplit, .flash_decode = true,
                         .subgroup_size = o.fused_shape->required_subgroup_size});
  } catch (const Error& e) {
    no_flash = e.what();
  }
  if (!no_flash.empty()) {
    MESSAGE("128-lane flash-decode cannot run on device '" << device().info().name << "' (" << no_flash
                                                          << "): only the refusal is checked");
    CHECK_THROWS_WITH_AS(Engine(instance(), model_file, o), doctest::Contains("the attention plan is not flash-decode"),
                         Error);
  } else {
    Engine wide(instance(), model_file, o);
    REQUIRE(wide.stage().fold_attention_keys() > 3);
    o.fold_attention = false;
    Engine wide_apart(instance(), model_file, o);
    for (uint32_t token : {1u, 2u, 3u}) {
      const uint32_t one[] = {token};
      CHECK(wide.eval(one) == wide_apart.eval(one));
    }
    CHECK(last_dispatches(wide) + size_t(c.n_layers) == last_dispatches(wide_apart));
  }
  // Required on the CPU plan, which has no fused qkv dispatch: refused by name; unset there: off.
  o = gpu_plan(true, false);
  o.plan = ExecutionPlan::Cpu;
  CHECK_THROWS_WITH_AS(Engine(instance(), model_file, o), doctest::Contains("attention inside the qkv dispatch"),
                       Error);
  o.fold_attention.reset();
  Engine cpu(instance(), model_file, o);
  CHECK(cpu.stage().fold_attention_keys() == 0);
}

TEST_CASE("generate() with the attention inside qkv writes one step a submit's text, stopped before, at or past the boundary") {
  ValidationGuard guard;
  // The shipped model (trained: varied text, so a wrong token fed would show).
  EngineOptions o = weights_only();
  o.plan = ExecutionPlan::Gpu;
  o.greedy_chain_budget_ms = 0;
  o.greedy_chain = 1;
  o.fold_attention = false;
  o.attention_min_split = kMinSplit;
  Engine one(instance(), shipped_model_path(), o);
  o.greedy_chain = 16;
  o.fold_attention = true;
  Engine folded(instance(), shipped_model_path(), o);
  const int keys = int(folded.stage().fold_attention_keys());
  const std::vector<uint32_t> prompt = {5, 9, 300};
  REQUIRE(keys > int(prompt.size()) + 6);
  REQUIRE(keys + 12 < folded.context());
  SamplingParams greedy_params;
  greedy_params.temperature = 0;
  Sampler sampler(greedy_params);
  // Stopping at the n-th token feeds positions up to prompt + n - 2: well below the last folded
  // position (keys - 1), exactly it, and past it.
  for (const int stop_after : {keys - 4 - int(prompt.size()), keys + 1 - int(prompt.size()), keys + 5 - int(prompt.size())}) {
    CAPTURE(stop_after);
    std::vector<std::vector<uint32_t>> got(2);
    for (int e = 0; e < 2; ++e) {
      Engine& which = e ? folded : one;
      which.reset();
      which.generate(prompt, 40, sampler, [&](uint32_t t) {
        got[size_t(e)].push_back(t);
        return int(got[size_t(e)].size()) < stop_after;
      });
    }
    CHECK(got[1] == got[0]);
    CHECK(folded.sequence() == one.sequence());
    // ... and goes on from there alike.
    std::vector<std::vector<uint32_t>> more(2);
    for (int e = 0; e < 2; ++e) {
      Engine& which = e ? folded : one;
      const uint32_t next[] = {got[0].back()};
      which.generate(next, 6, sampler, [&](uint32_t t) {
        more[size_t(e)].push_back(t);
        return true;
      });
    }
    CHECK(more[1] == more[0]);
    CHECK(folded.sequence() == one.sequence());
  }
}

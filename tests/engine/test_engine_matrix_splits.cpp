// The split trial (EngineOptions::matrix_splits): as the engine loads, each stage times its one-token
// pass under the split rules that split its matrices differently and keeps the fastest. Every rule
// must give the argued rule's bits, whichever the trial keeps (a rule is forced here, since lavapipe's
// times would pick one by chance), for the ternary model and the FP16 baseline, in a pipeline, with
// the chained layers' trial after it; a rule whose bits differ on the device is never kept; and the
// trial runs only where the fused layers fit their splits to the device.
#include <doctest/doctest.h>

#include <memory>

#include "common/gpu.h"
#include "engine/engine_test_util.h"
#include "engine/random_model.h"
#include "runtime/engine/engine.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

// The GPU's rule at a target this small model's matrices straddle: half, the argued and twice the
// workgroups give each matrix another split. Float rows 8 lanes wide on every subgroup width this runs
// at (lavapipe_widths.sh runs it at 16), so that the counts of distinct rules below hold there too.
ops::FusedLinearShape fitted_shape() {
  ops::FusedLinearShape s = widest_gpu_split();
  s.float_lanes = 8;
  s.target_workgroups = 8;
  s.loads_in_flight = 8;
  return s;
}

// The ternary model, the FP16 baseline, and the ternary model with an int8 head, two KV slots and its
// step inputs copied to device memory first (the other forms a pass can take).
enum class Variant { Ternary, Fp16, Int8HeadSlots };

EngineOptions gpu_plan(MatrixSplits splits, Variant variant = Variant::Ternary) {
  EngineOptions o = weights_only();
  o.plan = ExecutionPlan::Gpu;
  o.fp16_baseline = variant == Variant::Fp16;
  if (variant == Variant::Int8HeadSlots) {
    o.head = HeadPrecision::Int8;
    o.sequences = 2;
    o.step_inputs_on_device = true;
  }
  o.fused_shape = fitted_shape();
  o.matrix_splits = splits;
  o.greedy_chain = 4;
  o.greedy_chain_budget_ms = 0;
  o.attention_min_split = 16;  // the attention leaves qkv at 16 keys on every device
  return o;
}

// Logits of a prompt, then of one token at a time past where the attention leaves qkv, then greedy picks.
std::vector<std::vector<float>> outputs(Engine& e, uint32_t vocab) {
  std::vector<std::vector<float>> out;
  const std::vector<uint32_t> prompt = {3, 1, 4, 1, 5};
  out.push_back(e.eval(prompt));
  for (uint32_t i = 0; i < 16; ++i) {
    const uint32_t token[] = {(i * 37 + 11) % vocab};
    out.push_back(e.eval(token));
  }
  std::vector<float> picks;
  for (uint32_t p : e.decode_greedy(7, 4)) picks.push_back(float(p));
  out.push_back(picks);
  return out;
}

}  // namespace

TEST_CASE("the split trial keeps the argued rule's bits whichever rule it keeps") {
  ValidationGuard guard;
  const ModelConfig c = small_2b4t_config();
  const auto model_file = random_model_gguf(c, 71, "matrix-splits");
  for (const Variant variant : {Variant::Ternary, Variant::Fp16, Variant::Int8HeadSlots}) {
    CAPTURE(int(variant));
    Engine argued(instance(), model_file, gpu_plan(MatrixSplits::Rule, variant));
    CHECK(argued.matrix_split_note().starts_with("rule (--matrix-splits rule): 8 workgroups a dispatch"));
    const auto want = outputs(argued, uint32_t(c.vocab));
    // Of the six candidate rules, those that split this model's matrices differently (ternary: four,
    // since twice the loads in flight changes nothing at the argued and at twice the workgroups; FP16:
    // five, its rows keeping their 8 lanes; with the int8 head: three). 0: what the trial measured; then
    // each weighed rule forced (the argued rule is the first).
    REQUIRE(fitted_shape().rule_candidates().size() == 6);
    const size_t candidates = variant == Variant::Fp16 ? 5 : variant == Variant::Ternary ? 4 : 3;
    for (uint32_t keep = 0; keep <= candidates; ++keep) {
      CAPTURE(keep);
      EngineOptions o = gpu_plan(MatrixSplits::Measure, variant);
      o.split_trial_keep = keep;
      Engine measured(instance(), model_file, o);
      const std::string note = measured.matrix_split_note();
      CAPTURE(note);
      const auto& weighed = measured.stage().matrix_split_candidates();
      REQUIRE(weighed.size() == candidates);
      CHECK(weighed[0] == fitted_shape().rule());
      CHECK(note.starts_with("measured: "));
      // the kept rule, then each candidate with its time
      size_t rules = 0;
      for (size_t at = note.find(" a lane"); at != std::string::npos; at = note.find(" a lane", at + 1)) ++rules;
      CHECK(rules == candidates + 1);
      CHECK(note.find(" one-token passes against the argued rule's") != std::string::npos);
      CHECK(note.find("same bits") != std::string::npos);
      CHECK(note.find("other bits") == std::string::npos);
      // Forced to a rule: the passes then split by it (another than the argued one from 2 on).
      if (keep >= 1) CHECK(measured.stage().matrix_split_rule() == weighed[keep - 1]);
      if (keep >= 2) CHECK(note.starts_with("measured: kept "));
      CHECK(outputs(measured, uint32_t(c.vocab)) == want);
    }
  }
}

TEST_CASE("a rule whose pass gives other bits on the device is never kept") {
  ValidationGuard guard;
  const ModelConfig c = small_2b4t_config();
  const auto model_file = random_model_gguf(c, 72, "matrix-splits-mismatch");
  EngineOptions o = gpu_plan(MatrixSplits::Measure);
  o.split_trial_mismatch = 2;  // candidate 2's residual stream comes back changed
  o.split_trial_keep = 2;      // and the trial is told to keep it
  Engine measured(instance(), model_file, o);
  const std::string note = measured.matrix_split_note();
  CAPTURE(note);
  CHECK(note.find("other bits") != std::string::npos);
  CHECK(note.starts_with("measured: "));
  // The forced pick was dropped: the fastest of the rest, or the argued rule, stands.
  CHECK(measured.stage().matrix_split_rule() != measured.stage().matrix_split_candidates().at(1));
  Engine argued(instance(), model_file, gpu_plan(MatrixSplits::Rule));
  CHECK(outputs(measured, uint32_t(c.vocab)) == outputs(argued, uint32_t(c.vocab)));
}

TEST_CASE("the split trial runs in each stage of a pipeline, before the chained layers' trial") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  c.n_layers = 3;
  const auto model_file = random_model_gguf(c, 73, "matrix-splits-stages");
  auto pipeline = [&](MatrixSplits splits) {
    EngineOptions o = gpu_plan(splits);
    o.chain_layers = LayerChain::Measure;
    o.split_trial_keep = splits == MatrixSplits::Measure ? 3 : 0;
    const int dev = int(device().info().index);
    o.devices = {dev, dev};
    o.split = {2, 1};
    return std::make_unique<Engine>(instance(), model_file, o);
  };
  const auto argued = pipeline(MatrixSplits::Rule);
  const auto measured = pipeline(MatrixSplits::Measure);
  REQUIRE(measured->stage_count() == 2);
  const std::string note = measured->matrix_split_note();
  CAPTURE(note);
  CHECK(note.starts_with("stage 0: measured: kept "));
  CHECK(note.find("; stage 1: measured: kept ") != std::string::npos);
  for (size_t s = 0; s < 2; ++s)
    CHECK(measured->stage(s).matrix_split_rule() == measured->stage(s).matrix_split_candidates().at(2));
  // The chained layers' trial ran after, on the kept rule's passes.
  CHECK(measured->layer_chain_note().find("median of 8 pairs") != std::string::npos);
  CHECK(outputs(*measured, uint32_t(c.vocab)) == outputs(*argued, uint32_t(c.vocab)));
}

TEST_CASE("the split trial runs only where the fused layers fit their splits to the device, as asked") {
  ValidationGuard guard;
  const ModelConfig c = small_2b4t_config();
  const auto model_file = random_model_gguf(c, 74, "matrix-splits-where");
  // Auto on a CPU device keeps the argued rule (its times say little about a GPU's).
  Engine fitted_auto(instance(), model_file, gpu_plan(MatrixSplits::Auto));
  CHECK(fitted_auto.matrix_split_note().starts_with("rule: 8 workgroups a dispatch"));
  CHECK(fitted_auto.matrix_split_note().find("a CPU device") != std::string::npos);
  CHECK(fitted_auto.stage().matrix_split_rule() == fitted_shape().rule());
  // The device's own pick on a CPU device is a fixed split: nothing to measure, whatever is asked.
  EngineOptions o = gpu_plan(MatrixSplits::Measure);
  o.fused_shape.reset();
  Engine fixed(instance(), model_file, o);
  CHECK(fixed.matrix_split_note().starts_with("fixed: device '"));
  // The CPU plan has no fused layers.
  o.plan = ExecutionPlan::Cpu;
  Engine cpu_plan(instance(), model_file, o);
  CHECK(cpu_plan.matrix_split_note().starts_with("none: the CPU plan"));
  CHECK_FALSE(cpu_plan.stage().matrix_split_rule().has_value());
}

// The two forward passes (ExecutionPlan): the GPU plan (five dispatches per decode layer, norms in
// the matmuls' prologues) forced on this device gives the CPU reference's logits and the CPU plan's
// tokens, for every model form the engine takes: ternary and FP16 baseline, f16 and int8 heads,
// tied and untied, NeoX and adjacent-pair RoPE (llama.cpp's tiny LLaMA-arch model), batched decode,
// pipeline stages, and tensors split into segments.
#include <doctest/doctest.h>

#include <cmath>

#include "common/gpu.h"
#include "engine/engine_test_util.h"
#include "engine/random_model.h"
#include "engine/reference_forward.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/stage_memory.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

const std::filesystem::path kShared = TERNVK_SHARED_DIR;

EngineOptions with_plan(ExecutionPlan plan, int chunk = 64) {
  EngineOptions o = weights_only(chunk);
  o.plan = plan;
  return o;
}

// Dispatches of the last decode step's recording (one token).
size_t decode_dispatches(Engine& engine) {
  engine.reset();
  const uint32_t one[] = {1};
  engine.eval(one);
  const uint32_t next[] = {2};
  engine.eval(next);
  return engine.stage().last_pass()->dispatch_count();
}

}  // namespace

TEST_CASE("the GPU plan gives the reference logits and the CPU plan's tokens") {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 21);
  const auto dir = temp_dir("plans-2b4t");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  const std::vector<uint32_t> tokens = {1, 42, 7, 300, 299, 5, 64, 128, 3, 17, 250};
  const auto want = ReferenceForward(*open_model(dir / "model.gguf")).logits(tokens);
  Engine cpu(instance(), dir / "model.gguf", with_plan(ExecutionPlan::Cpu));
  REQUIRE(cpu.stage().plan() == ExecutionPlan::Cpu);
  const auto cpu_tokens = greedy(cpu, {1, 2, 3}, 16);
  // 1-token steps (decode) run the fused layers; the 11-token chunk the separate ops with the
  // fused prologue's norm.
  Engine gpu(instance(), dir / "model.gguf", with_plan(ExecutionPlan::Gpu));
  REQUIRE(gpu.stage().plan() == ExecutionPlan::Gpu);
  check_against_reference(rows(gpu.eval(tokens, true), m.config.vocab), want);
  gpu.reset();
  gpu.eval(std::span(tokens).first(5));
  for (size_t t = 5; t < tokens.size(); ++t) {
    const uint32_t one[] = {tokens[t]};
    const auto step = gpu.eval(one);
    CHECK(cosine(step, want[t]) >= 0.999);
    CHECK(argmax_index(step) == argmax_index(want[t]));
  }
  CHECK(greedy(gpu, {1, 2, 3}, 16) == cpu_tokens);
  // A prefill chunk longer than Stage::kFusedMaxTokens runs the separate ops in the GPU plan too.
  std::vector<uint32_t> long_prompt;
  for (uint32_t i = 0; i < Stage::kFusedMaxTokens + 5; ++i) long_prompt.push_back((i * 31 + 1) % 320);
  gpu.reset();
  check_against_reference(rows(gpu.eval(long_prompt, true), m.config.vocab),
                          ReferenceForward(*open_model(dir / "model.gguf")).logits(long_prompt));
}

TEST_CASE("the GPU plan with the GPU's split of each matrix gives the CPU plan's tokens") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  c.n_layers = 2;
  const auto model_file = random_model_gguf(c, 23, "plans-gpu-split");
  Engine cpu(instance(), model_file, with_plan(ExecutionPlan::Cpu));
  EngineOptions o = with_plan(ExecutionPlan::Gpu);
  o.fused_shape = widest_gpu_split();
  Engine gpu(instance(), model_file, o);
  CHECK(greedy(gpu, {1, 2, 3}, 12) == greedy(cpu, {1, 2, 3}, 12));
}

TEST_CASE("a GPU-plan decode step is five dispatches a layer plus embedding and head (with its argmax)") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  c.n_layers = 3;
  const auto model_file = random_model_gguf(c, 22, "plans-dispatches");
  EngineOptions o = with_plan(ExecutionPlan::Gpu);
  o.step_inputs_on_device = false;  // (a discrete GPU's copies of the step inputs: their own test below)
  {
    // At short contexts the attention runs inside qkv: four a layer (its own test: test_engine_fold).
    Engine folded(instance(), model_file, o);
    REQUIRE(folded.stage().fold_attention_keys() > 1);
    CHECK(decode_dispatches(folded) == 1 + 4 * size_t(c.n_layers) + 1);
  }
  o.fold_attention = false;
  Engine gpu(instance(), model_file, o);
  CHECK(gpu.stage().fold_attention_keys() == 0);
  // eval() reads the logits back (no selection): embedding + 5 per layer + the head with the final norm.
  CHECK(decode_dispatches(gpu) == 1 + 5 * size_t(c.n_layers) + 1);
  // ... and nothing else: no fill or copy between them (the attention's counters reset themselves).
  CHECK(gpu.stage().last_pass()->commands().size() == gpu.stage().last_pass()->dispatch_count());
  // With the GPU's pick of the next token: the head picks it in the same dispatch (its last workgroup).
  Sampler greedy_sampler({.temperature = 0});
  gpu.reset();
  const uint32_t prompt[] = {1, 2};
  gpu.next_token(prompt, greedy_sampler, prompt);
  const uint32_t one[] = {3};
  gpu.next_token(one, greedy_sampler, {});
  const size_t with_argmax = gpu.stage().last_pass()->dispatch_count();
  CHECK(with_argmax == 1 + 5 * size_t(c.n_layers) + 1);
  o.plan = ExecutionPlan::Cpu;
  Engine cpu(instance(), model_file, o);
  CHECK(decode_dispatches(cpu) > decode_dispatches(gpu) + size_t(c.n_layers));
  // The CPU plan's decode attention resets its counters itself too: no fill between the dispatches.
  CHECK(cpu.stage().last_pass()->commands().size() == cpu.stage().last_pass()->dispatch_count());
}

TEST_CASE("step inputs read from device-local copies give the same bits, in steps, batches and greedy chains") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  c.n_layers = 2;
  const auto model_file = random_model_gguf(c, 24, "plans-step-inputs");
  const std::vector<uint32_t> prompt = {1, 42, 7, 300, 5};
  for (const auto plan : {ExecutionPlan::Cpu, ExecutionPlan::Gpu}) {
    CAPTURE(plan_name(plan));
    struct Seen {
      std::vector<float> logits, step;
      std::vector<uint32_t> chained;
      std::vector<StepOutput> batch;
      size_t copies = 0, dispatches = 0;
    };
    Seen seen[2];
    for (const bool on_device : {false, true}) {
      EngineOptions o = with_plan(plan);
      o.sequences = 3;
      o.greedy_chain = 4;
      o.greedy_chain_budget_ms = 0;
      o.step_inputs_on_device = on_device;
      Engine e(instance(), model_file, o);
      Seen& s = seen[on_device];
      s.logits = e.eval(prompt, true);
      const uint32_t next[] = {9};
      s.step = e.eval(next);
      for (const auto& cmd : e.stage().last_pass()->commands()) s.copies += cmd.kind == RecordedCommand::Copy;
      s.dispatches = e.stage().last_pass()->dispatch_count();
      s.chained = e.decode_greedy(11, 6);  // a chain of 4
      e.prefill(1, prompt, {Selection::Argmax});
      e.prefill(2, std::span(prompt).first(3), {Selection::Argmax});
      const int slots[] = {2, 1};
      const uint32_t tokens[] = {5, 6};
      s.batch = e.decode(slots, tokens, {Selection::TopK, 3});
    }
    CHECK(seen[1].logits == seen[0].logits);
    CHECK(seen[1].step == seen[0].step);
    CHECK(seen[1].chained == seen[0].chained);
    REQUIRE(seen[1].batch.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
      CHECK(seen[1].batch[i].candidates.size() == seen[0].batch[i].candidates.size());
      for (size_t k = 0; k < seen[0].batch[i].candidates.size(); ++k) {
        CHECK(seen[1].batch[i].candidates[k].id == seen[0].batch[i].candidates[k].id);
        CHECK(seen[1].batch[i].candidates[k].logit == seen[0].batch[i].candidates[k].logit);
      }
    }
    // The same dispatches; the copies (ids, positions, slots) come first, and only with copies asked for.
    CHECK(seen[1].dispatches == seen[0].dispatches);
    CHECK(seen[0].copies == 0);
    CHECK(seen[1].copies == 3);
  }
}

TEST_CASE("the GPU plan of the FP16 baseline and of the int8 head (tied, untied) match their references") {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 13);
  const auto dir = temp_dir("plans-variants");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  const std::vector<uint32_t> tokens = {1, 9, 8, 7, 6, 5};
  // FP16 baseline: the two plans differ by float rounding only.
  {
    EngineOptions o = with_plan(ExecutionPlan::Cpu, 4);
    o.fp16_baseline = true;
    Engine cpu(instance(), dir / "model.gguf", o);
    o.plan = ExecutionPlan::Gpu;
    Engine gpu(instance(), dir / "model.gguf", o);
    const auto a = rows(cpu.eval(tokens, true), m.config.vocab), b = rows(gpu.eval(tokens, true), m.config.vocab);
    for (size_t t = 0; t < a.size(); ++t) {
      CHECK(cosine(a[t], b[t]) >= 0.99999);
      CHECK(argmax_index(a[t]) == argmax_index(b[t]));
    }
    CHECK(greedy(cpu, {1, 2}, 12) == greedy(gpu, {1, 2}, 12));
  }
  // Int8 head, tied and untied.
  RandomModel untied = m;
  untied.output.resize(untied.embedding.size());
  for (size_t i = 0; i < untied.output.size(); ++i) untied.output[i] = untied.embedding[(i * 7919) % untied.embedding.size()];
  write_gguf(untied, dir / "untied.gguf", GgmlType::I2_S);
  for (const char* name : {"model.gguf", "untied.gguf"}) {
    CAPTURE(name);
    EngineOptions o = with_plan(ExecutionPlan::Gpu, 4);
    o.head = HeadPrecision::Int8;
    Engine gpu(instance(), dir / name, o);
    check_against_reference(rows(gpu.eval(tokens, true), m.config.vocab),
                            ReferenceForward(*open_model(dir / name), true).logits(tokens));
  }
}

TEST_CASE("the GPU plan on llama.cpp's tiny model (SiLU, adjacent-pair RoPE) matches the reference") {
  ValidationGuard guard;
  const auto path = kShared / "data/models/tiny-random-tq2_0.gguf";
  const std::vector<uint32_t> tokens = {1, 450, 4996, 17354, 1701, 29871, 13, 31999};
  const auto want = ReferenceForward(*open_model(path)).logits(tokens);
  Engine engine(instance(), path, with_plan(ExecutionPlan::Gpu, 3));
  check_against_reference(rows(engine.eval(tokens, true), 32000), want);
}

TEST_CASE("the GPU plan split into stages, and with tensors in segments, gives the one-device logits") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  c.n_layers = 3;
  const auto model_file = random_model_gguf(c, 31, "plans-stages");
  const std::vector<uint32_t> tokens = {1, 11, 22, 33, 44, 55, 66};
  const auto want = ReferenceForward(*open_model(model_file)).logits(tokens);
  Engine one(instance(), model_file, with_plan(ExecutionPlan::Gpu, 4));
  const auto one_logits = one.eval(tokens, true);
  const auto one_tokens = greedy(one, {1, 2, 3}, 8);
  EngineOptions o = with_plan(ExecutionPlan::Gpu, 4);
  const int dev = int(device().info().index);
  o.devices = {dev, dev};
  o.split = {2, 1};
  Engine staged(instance(), model_file, o);
  const auto got = staged.eval(tokens, true);
  for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::fabs(got[i] - one_logits[i]) <= 1e-4f * (1 + std::fabs(one_logits[i])));
  CHECK(greedy(staged, {1, 2, 3}, 8) == one_tokens);
  // Segments: q|k|v and gate|up in several segments cannot take the paired epilogues, so those
  // layers record the separate ops; o, down and the head are fused over their segments.
  EngineOptions seg = with_plan(ExecutionPlan::Gpu, 4);
  seg.max_segment_bytes = 4096;
  Engine segmented(instance(), model_file, seg);
  check_against_reference(rows(segmented.eval(tokens, true), c.vocab), want);
}

TEST_CASE("every stage allocates exactly its memory plan, which the footprint estimates sum") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  c.n_layers = 3;
  const RandomModel m = make_random_model(c, 33);
  RandomModel untied = m;
  untied.output = untied.embedding;
  const auto dir = temp_dir("plans-memory");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  write_gguf(untied, dir / "untied.gguf", GgmlType::I2_S);
  const int dev = int(device().info().index);
  struct Case {
    const char* name;
    ExecutionPlan plan;
    bool fp16, int8_head, split;
    int sequences;
    bool inputs_on_device;  // the step inputs' device-local copies and the greedy chain's picks
    LayerChain chain_layers = LayerChain::Off;  // On, Measure: the chained layers' counters and flag
  };
  for (const Case& k : {Case{"model.gguf", ExecutionPlan::Cpu, false, false, false, 1, false},
                        Case{"model.gguf", ExecutionPlan::Gpu, false, false, false, 3, true, LayerChain::On},
                        Case{"model.gguf", ExecutionPlan::Gpu, true, false, false, 1, false},
                        Case{"untied.gguf", ExecutionPlan::Cpu, false, true, true, 2, true},
                        Case{"untied.gguf", ExecutionPlan::Gpu, true, false, true, 1, false, LayerChain::Measure},
                        // Auto: held only where a trial may run (not on CPU devices)
                        Case{"model.gguf", ExecutionPlan::Gpu, false, false, false, 1, false, LayerChain::Auto}}) {
    CAPTURE(k.name);
    CAPTURE(int(k.plan));
    CAPTURE(k.fp16);
    CAPTURE(k.split);
    EngineOptions o = with_plan(k.plan, 5);
    o.fp16_baseline = k.fp16;
    o.head = k.int8_head ? HeadPrecision::Int8 : HeadPrecision::F16;
    o.sequences = k.sequences;
    o.step_inputs_on_device = k.inputs_on_device;
    o.chain_layers = k.chain_layers;
    if (k.split) {
      o.devices = {dev, dev};
      o.split = {2, 1};
    }
    Engine engine(instance(), dir / k.name, o);
    for (size_t i = 0; i < engine.stage_count(); ++i) {
      CAPTURE(i);
      const Stage& st = engine.stage(i);
      const StageMemory plan = StageMemory::plan(engine.config(), st.spec(), st.options(), st.device().info());
      const GpuFootprint f = plan.footprint();
      // Every buffer the stage holds is in its plan, at the planned size; nothing else is held.
      CHECK(st.device().memory().bytes_requested() == f.total());
      CHECK(st.weight_bytes() == f.weights);
      CHECK(st.kv_bytes() == f.kv_cache);
      CHECK(f.ternary_weights == (k.fp16 ? 0 : f.ternary_weights));
    }
  }
}

// The engine's prefill on matrix units, run everywhere: an Instance that emulates them
// (InstanceOptions::emulate_matrix_units) gives this device the matrix-unit GEMMs with their matrix
// operations on the shader cores, so what routes a step to them runs here as on a GPU with units.
// The ternary prefill on them keeps the shader cores' bits; the FP16 baseline's prompt chunks take
// them (other bits: activations rounded to fp16) while its steps of several sequences keep the
// bits each sequence has alone.
#include <doctest/doctest.h>

#include "common/gpu.h"
#include "engine/engine_test_util.h"
#include "engine/random_model.h"
#include "engine/reference_forward.h"
#include "runtime/engine/engine.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {

Instance& emulating_instance() {
  static Instance the_instance(InstanceOptions{.emulate_matrix_units = true});
  return the_instance;
}

EngineOptions unit_options(ops::GemmUnits units, ExecutionPlan plan, bool fp16, int sequences = 1) {
  EngineOptions o = weights_only(64);
  o.gemm_units = units;
  o.plan = plan;
  o.fp16_baseline = fp16;
  o.sequences = sequences;
  o.context = 128;
  return o;
}

// A prompt of n tokens below the vocabulary of small_2b4t_config.
std::vector<uint32_t> prompt(uint32_t n, uint32_t salt) {
  std::vector<uint32_t> p = {1};
  for (uint32_t i = 1; i < n; ++i) p.push_back((i * 37 + salt * 11) % 300 + 2);
  return p;
}

}  // namespace

TEST_CASE("on matrix units (emulated) the ternary prefill gives the shader cores' bits, in both plans") {
  ValidationGuard guard(emulating_instance());
  REQUIRE(emulating_instance().select().has_int8_matrix_unit());
  const auto file = random_model_gguf(small_2b4t_config(), 71, "engine-matrix-units");
  // 70 tokens in chunks of 64: one chunk on the GEMM (>= 32 tokens), a tail of 6 on the GEMV.
  const std::vector<uint32_t> tokens = prompt(70, 1);
  for (const ExecutionPlan plan : {ExecutionPlan::Cpu, ExecutionPlan::Gpu}) {
    CAPTURE(int(plan));
    Engine tiled(emulating_instance(), file, unit_options(ops::GemmUnits::Vector, plan, false));
    Engine units(emulating_instance(), file, unit_options(ops::GemmUnits::MatrixUnits, plan, false));
    CHECK_FALSE(tiled.stage().prefill_on_matrix_units());
    // True only where a 64-token chunk is recorded as a GEMM on the units (the GEMV, the tiled GEMM and
    // the units give the same integer sums, so the bits alone cannot show which ran).
    REQUIRE(units.stage().prefill_on_matrix_units());
    CHECK(units.eval(tokens, true) == tiled.eval(tokens, true));
  }
}

TEST_CASE("the FP16 baseline's prompt chunks take matrix units (emulated); its batched steps keep each sequence's bits") {
  ValidationGuard guard(emulating_instance());
  REQUIRE(emulating_instance().select().has_fp16_matrix_unit());
  ModelConfig c = small_2b4t_config();
  const auto file = random_model_gguf(c, 72, "engine-matrix-units-fp16");
  // 33 sequences: one decode step of all of them is a 33-token step of mixed sequences, which a GEMM
  // would run (>= 32 tokens), on the shader cores so that each row has its solo bits.
  const int n = 33;
  REQUIRE(uint32_t(n) >= ops::kGemmMinTokens);
  for (const ExecutionPlan plan : {ExecutionPlan::Cpu, ExecutionPlan::Gpu}) {
    CAPTURE(int(plan));
    Engine tiled(emulating_instance(), file, unit_options(ops::GemmUnits::Vector, plan, true));
    Engine units(emulating_instance(), file, unit_options(ops::GemmUnits::MatrixUnits, plan, true, n));
    REQUIRE(units.stage().prefill_on_matrix_units());

    // A 40-token prompt is one chunk on the units: the same model to float rounding, other bits.
    const std::vector<uint32_t> long_prompt = prompt(40, 2);
    const auto want = rows(tiled.eval(long_prompt, true), size_t(c.vocab));
    const auto got = rows(units.eval(long_prompt, true), size_t(c.vocab));
    REQUIRE(got.size() == want.size());
    bool all_equal = true;
    for (size_t t = 0; t < got.size(); ++t) {
      CAPTURE(t);
      CHECK(cosine(got[t], want[t]) >= 0.9999);
      CHECK(argmax_index(got[t]) == argmax_index(want[t]));
      all_equal = all_equal && got[t] == want[t];
    }
    CHECK_FALSE(all_equal);  // the units ran: fp16 activations change some bits

    // Each sequence alone: a 3-token prompt (GEMV), then one decode step of batch 1.
    units.reset();
    std::vector<std::vector<float>> alone;
    std::vector<uint32_t> next;
    for (int s = 0; s < n; ++s) {
      units.truncate(0, 0);
      const auto p = prompt(3, uint32_t(s) + 3);
      next.push_back(units.prefill(0, p, {Selection::Argmax}).token);
      const int slot[] = {0};
      const uint32_t token[] = {next.back()};
      alone.push_back(units.decode(slot, token, {Selection::Logits})[0].logits);
    }
    // All of them in their own slots, then one step of all 33 tokens together.
    units.truncate(0, 0);
    std::vector<int> slots;
    for (int s = 0; s < n; ++s) {
      REQUIRE(units.prefill(s, prompt(3, uint32_t(s) + 3), {Selection::Argmax}).token == next[size_t(s)]);
      slots.push_back(s);
    }
    const auto together = units.decode(slots, next, {Selection::Logits});
    REQUIRE(together.size() == size_t(n));
    for (int s = 0; s < n; ++s) {
      CAPTURE(s);
      CHECK(together[size_t(s)].logits == alone[size_t(s)]);
    }
  }
}

// The GPU engine against the CPU reference forward pass: every position's logits (cosine >= 0.999,
// same argmax), prefill in chunks vs token by token, every file format, both ternary dot paths and
// tensors forced to split into segments.
#include <doctest/doctest.h>

#include "common/gpu.h"
#include "engine/engine_test_util.h"
#include "engine/random_model.h"
#include "engine/reference_forward.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/stage_memory.h"
#include "runtime/engine/placement.h"

#include <cmath>

using namespace ternvk;
using namespace ternvk::test;

namespace {

const std::filesystem::path kShared = TERNVK_SHARED_DIR;

}  // namespace

TEST_CASE("GPU forward of a random 2B4T model matches the CPU reference at every position") {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 21);
  const auto dir = temp_dir("engine-2b4t");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  const std::vector<uint32_t> tokens = {1, 42, 7, 300, 299, 5, 64, 128, 3, 17, 250};
  const auto want = ReferenceForward(*open_model(dir / "model.gguf")).logits(tokens);
  for (int chunk : {64, 4, 1}) {
    CAPTURE(chunk);
    Engine engine(instance(), dir / "model.gguf", weights_only(chunk));
    check_against_reference(rows(engine.eval(tokens, true), m.config.vocab), want);
    // Token by token after a prefill: the last logits of each step.
    engine.reset();
    engine.eval(std::span(tokens).first(5));
    for (size_t t = 5; t < tokens.size(); ++t) {
      const uint32_t one[] = {tokens[t]};
      auto step = engine.eval(one);
      CHECK(cosine(step, want[t]) >= 0.999);
      CHECK(argmax_index(step) == argmax_index(want[t]));
    }
  }
}

TEST_CASE("GPU forward of llama.cpp's tiny TQ2_0 model (SiLU graph) matches the CPU reference") {
  ValidationGuard guard;
  const auto path = kShared / "data/models/tiny-random-tq2_0.gguf";
  const std::vector<uint32_t> tokens = {1, 450, 4996, 17354, 1701, 29871, 13, 31999};
  const auto want = ReferenceForward(*open_model(path)).logits(tokens);
  Engine engine(instance(), path, weights_only(3));
  check_against_reference(rows(engine.eval(tokens, true), 32000), want);
}

TEST_CASE("the same weights in TQ2_0, TQ1_0, I2_S and safetensors give the same greedy tokens") {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 5);
  const auto dir = temp_dir("engine-formats");
  write_gguf(m, dir / "tq2.gguf", GgmlType::TQ2_0);
  write_gguf(m, dir / "tq1.gguf", GgmlType::TQ1_0);
  write_gguf(m, dir / "i2s.gguf", GgmlType::I2_S);
  write_hf_folder(m, dir / "hf");
  const std::vector<uint32_t> prompt = {1, 100, 200, 31};
  Engine first(instance(), dir / "i2s.gguf", weights_only());
  const auto expected = greedy(first, prompt, 20);
  for (auto name : {"tq2.gguf", "tq1.gguf", "hf"}) {
    CAPTURE(name);
    Engine engine(instance(), dir / name, weights_only());
    CHECK(greedy(engine, prompt, 20) == expected);
  }
}

TEST_CASE("both ternary inner-product paths and split tensors give the reference logits") {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 8);
  const auto dir = temp_dir("engine-variants");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  const std::vector<uint32_t> tokens = {1, 2, 3, 4, 5, 6, 7};
  const auto want = ReferenceForward(*open_model(dir / "model.gguf")).logits(tokens);
  for (auto dot : {ops::TernaryDot::Swar, ops::TernaryDot::PackedInt8}) {
    if (dot == ops::TernaryDot::PackedInt8 && !device().info().integer_dot_product) continue;
    EngineOptions o = weights_only(4);
    o.dot = dot;
    o.max_segment_bytes = 4096;  // every matrix and the embedding split into many segments
    Engine engine(instance(), dir / "model.gguf", o);
    check_against_reference(rows(engine.eval(tokens, true), m.config.vocab), want);
  }
}

TEST_CASE("the int8 head (tied and untied, split into segments) gives the int8-head reference logits") {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 17);
  const auto dir = temp_dir("engine-int8-head");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  const std::vector<uint32_t> tokens = {1, 9, 8, 7, 6, 5, 300};
  const auto source = open_model(dir / "model.gguf");
  const auto want = ReferenceForward(*source, true).logits(tokens);
  uint64_t f16_bytes = 0;
  {
    Engine engine(instance(), dir / "model.gguf", weights_only(4));
    f16_bytes = engine.stage(0).weight_bytes();
  }
  for (uint64_t segment : {uint64_t(0), uint64_t(4096)}) {
    CAPTURE(segment);
    EngineOptions o = weights_only(4);
    o.head = HeadPrecision::Int8;
    o.max_segment_bytes = segment;
    Engine engine(instance(), dir / "model.gguf", o);
    check_against_reference(rows(engine.eval(tokens, true), m.config.vocab), want);
    // The tied table: vocab x dim fp16 became vocab x (dim int8 + one float scale).
    const uint64_t V = m.config.vocab, D = m.config.dim;
    CHECK(f16_bytes - engine.stage(0).weight_bytes() == V * ((D + 7) / 8 * 8) * 2 - V * ((D + 15) / 16 * 16 + 4));
  }
  // llama.cpp's tiny model (tied, SiLU graph).
  const auto tiny = kShared / "data/models/tiny-random-tq2_0.gguf";
  const std::vector<uint32_t> tiny_tokens = {1, 450, 4996, 17354, 1701};
  EngineOptions o = weights_only(3);
  o.head = HeadPrecision::Int8;
  {
    Engine engine(instance(), tiny, o);
    check_against_reference(rows(engine.eval(tiny_tokens, true), 32000),
                            ReferenceForward(*open_model(tiny), true).logits(tiny_tokens));
  }
  // An untied head: int8 head rows beside the FP16 embedding table (the reference rounds only the head).
  RandomModel untied = m;
  untied.output.resize(untied.embedding.size());
  for (size_t i = 0; i < untied.output.size(); ++i) untied.output[i] = untied.embedding[(i * 7919) % untied.embedding.size()];
  write_gguf(untied, dir / "untied.gguf", GgmlType::I2_S);
  const auto untied_source = open_model(dir / "untied.gguf");
  REQUIRE(untied_source->output_f16());
  CHECK(!untied_source->config().tied_head);
  Engine engine(instance(), dir / "untied.gguf", o);
  const auto got = engine.eval(tokens, true);
  const auto untied_want = ReferenceForward(*untied_source, true).logits(tokens);
  check_against_reference(rows(got, m.config.vocab), untied_want);
  {
    // The logits are the int8 head's, not the FP16 one's (cosine alone would accept either): with the
    // embedding untouched the layers are the same, so the GPU's change of logits from the f16 to the
    // int8 head must follow the reference's change, (W8 - W16) h, in direction and size.
    Engine f16(instance(), dir / "untied.gguf", weights_only(3));
    const auto got_f16 = f16.eval(tokens, true);
    const auto want_f16 = ReferenceForward(*untied_source).logits(tokens);
    std::vector<float> d_gpu, d_ref;
    for (size_t i = 0; i < got.size(); ++i) d_gpu.push_back(got[i] - got_f16[i]);
    for (size_t t = 0; t < tokens.size(); ++t)
      for (size_t v = 0; v < untied_want[t].size(); ++v) d_ref.push_back(untied_want[t][v] - want_f16[t][v]);
    double n_gpu = 0, n_ref = 0;
    for (size_t i = 0; i < d_gpu.size(); ++i) n_gpu += double(d_gpu[i]) * d_gpu[i], n_ref += double(d_ref[i]) * d_ref[i];
    CAPTURE(n_gpu);
    CAPTURE(n_ref);
    CHECK(n_ref > 0);
    CHECK(cosine(d_gpu, d_ref) >= 0.9);
    CHECK(std::sqrt(n_gpu / n_ref) == doctest::Approx(1.0).epsilon(0.2));
  }
  // Weights: FP16 table + int8 head, as the stage's memory plan says.
  const GpuFootprint f = estimate_footprint(untied_source->config(),
                                            {.context = 64, .max_tokens = 3, .head = HeadPrecision::Int8}, device().info());
  CHECK(engine.stage(0).weight_bytes() == f.weights);
  // Split over two logical devices: the first stage keeps the FP16 embedding table of the untied
  // model, the last holds the int8 head; the logits are the one-device ones.
  EngineOptions split = o;
  const int dev = int(device().info().index);
  split.devices = {dev, dev};
  split.split = {1, 1};
  Engine staged(instance(), dir / "untied.gguf", split);
  REQUIRE(staged.stage_count() == 2);
  const auto got_staged = staged.eval(tokens, true);
  for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::fabs(got_staged[i] - got[i]) <= 1e-4f * (1 + std::fabs(got[i])));
}

TEST_CASE("the FP16 baseline of the same model gives the reference logits") {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 13);
  const auto dir = temp_dir("engine-fp16");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  const std::vector<uint32_t> tokens = {1, 9, 8, 7, 6, 5};
  const auto want = ReferenceForward(*open_model(dir / "model.gguf")).logits(tokens);
  EngineOptions o = weights_only(4);
  o.fp16_baseline = true;
  Engine engine(instance(), dir / "model.gguf", o);
  // Float activations instead of int8: close to the BitNet reference, not identical.
  const auto got = rows(engine.eval(tokens, true), m.config.vocab);
  for (size_t t = 0; t < tokens.size(); ++t) CHECK(cosine(got[t], want[t]) >= 0.99);
}

TEST_CASE("generation picks tokens on the GPU: argmax equals the full row's, top-k samples only from the top") {
  ValidationGuard guard;
  const auto model_file = random_model_gguf(small_2b4t_config(), 17, "engine-select");
  Engine engine(instance(), model_file, weights_only());
  const std::vector<uint32_t> prompt = {1, 50, 60, 70};
  const auto expected = greedy(engine, prompt, 12);  // from full logits read back
  engine.reset();
  Sampler greedy_sampler({.temperature = 0});
  std::vector<uint32_t> got;
  auto stats = engine.generate(prompt, 12, greedy_sampler, [&](uint32_t t) { got.push_back(t); return true; });
  CHECK(got == expected);
  CHECK(stats.generated_tokens == 12);
  CHECK(engine.position() == int(prompt.size()) + 11);  // the last token is sampled, not fed

  // top-k 3: every sampled token is among the 3 largest logits of its step.
  engine.reset();
  Sampler top3({.temperature = 1.5f, .top_k = 3, .top_p = 1.0f, .min_p = 0.0f, .seed = 4});
  std::vector<uint32_t> history(prompt);
  auto logits = engine.eval(prompt);
  for (int i = 0; i < 10; ++i) {
    engine.truncate(engine.position() - int(i == 0 ? prompt.size() : 1));
    const uint32_t next = engine.next_token(i == 0 ? std::span<const uint32_t>(prompt)
                                                   : std::span<const uint32_t>(&history.back(), 1),
                                            top3, history);
    std::vector<float> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    CHECK(logits[next] >= sorted[2]);
    history.push_back(next);
    const uint32_t one[] = {next};
    logits = engine.eval(one);
  }
}

TEST_CASE("a model split into stages on several logical devices gives the one-device logits and tokens") {
  ValidationGuard guard;
  ModelConfig c = small_2b4t_config();
  c.n_layers = 3;
  const auto model_file = random_model_gguf(c, 31, "engine-stages");
  const std::vector<uint32_t> tokens = {1, 11, 22, 33, 44, 55, 66};
  const auto want = ReferenceForward(*open_model(model_file)).logits(tokens);
  Engine one(instance(), model_file, weights_only(4));
  const auto one_logits = one.eval(tokens, true);
  const auto one_tokens = greedy(one, {1, 2, 3}, 10);
  const int dev = int(device().info().index);
  for (auto split : std::vector<std::vector<int>>{{1, 2}, {2, 1}, {1, 1, 1}}) {
    CAPTURE(split.size());
    EngineOptions o = weights_only(4);
    o.devices = std::vector<int>(split.size(), dev);  // the same physical device, one logical device per stage
    o.split = split;
    Engine staged(instance(), model_file, o);
    REQUIRE(staged.stage_count() == split.size());
    CHECK(staged.describe_plan().find("stage " + std::to_string(split.size() - 1)) != std::string::npos);
    const auto got = staged.eval(tokens, true);
    check_against_reference(rows(got, c.vocab), want);
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::fabs(got[i] - one_logits[i]) <= 1e-4f * (1 + std::fabs(one_logits[i])));
    CHECK(greedy(staged, {1, 2, 3}, 10) == one_tokens);
  }
}

TEST_CASE("impossible splits are clear errors") {
  ModelConfig c = small_2b4t_config();
  CHECK_THROWS_WITH_AS(plan_stages(c, 2, {1, 2}), doctest::Contains("sums to 3"), Error);
  CHECK_THROWS_WITH_AS(plan_stages(c, 2, {2, 0}), doctest::Contains("empty"), Error);
  CHECK_THROWS_WITH_AS(plan_stages(c, 3, {}), doctest::Contains("at least one"), Error);
  CHECK_THROWS_WITH_AS(plan_stages(c, 2, {2}), doctest::Contains("2 devices"), Error);
  CHECK(plan_stages(c, 2, {}).size() == 2);
  CHECK(split_by_speed(30, {1.0, 1.0}) == std::vector<int>{15, 15});
  CHECK(split_by_speed(30, {3.0, 1.0}) == std::vector<int>{22, 8});
  CHECK(split_by_speed(3, {100.0, 1.0, 1.0}) == std::vector<int>{1, 1, 1});
  CHECK(split_by_speed(7, {1.0, 1.0, 1.0}) == std::vector<int>{3, 2, 2});
  CHECK_THROWS_AS(split_by_speed(2, {1.0, 1.0, 1.0}), Error);
}

TEST_CASE("an automatic split measures each device and covers every layer") {
  ValidationGuard guard;
  const RandomModel m = make_random_model(small_2b4t_config(), 4);
  const auto dir = temp_dir("engine-auto-split");
  write_gguf(m, dir / "model.gguf", GgmlType::I2_S);
  EngineOptions o = weights_only();
  o.devices = {int(device().info().index), int(device().info().index)};
  Engine engine(instance(), dir / "model.gguf", o);
  REQUIRE(engine.stage_count() == 2);
  CHECK(engine.stage(0).spec().end_layer == engine.stage(1).spec().first_layer);
  CHECK(engine.stage(1).spec().end_layer == m.config.n_layers);
}

TEST_CASE("bad requests to the engine are clear errors") {
  const auto model_file = random_model_gguf(small_2b4t_config(), 2, "engine-errors");
  Engine engine(instance(), model_file, weights_only());
  CHECK_THROWS_WITH_AS(engine.eval({}), doctest::Contains("empty"), Error);
  std::vector<uint32_t> too_long(65, 1);
  CHECK_THROWS_WITH_AS(engine.eval(too_long), doctest::Contains("context"), Error);
  const uint32_t bad[] = {5000};
  CHECK_THROWS_WITH_AS(engine.eval(bad), doctest::Contains("outside the vocabulary"), Error);
  EngineOptions big = weights_only();
  big.context = 100000;
  CHECK_THROWS_WITH_AS(Engine(instance(), model_file, big), doctest::Contains("maximum"), Error);
}

// Model files of every format describe the same model: configs, tensors and the CPU reference's
// logits agree across GGUF (TQ2_0, TQ1_0, I2_S, F32) and the Hugging Face safetensors folder.
#include <doctest/doctest.h>

#include <fstream>
#include <limits>

#include "engine/random_model.h"
#include "engine/reference_forward.h"
#include "common/gpu.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"
#include "runtime/formats/gguf_writer.h"

using namespace ternvk;
using namespace ternvk::test;

namespace {
const std::filesystem::path kShared = TERNVK_SHARED_DIR;
}

TEST_CASE("every format of one random 2B4T model loads the same weights and logits") {
  const RandomModel m = make_random_model(small_2b4t_config(), 11);
  const auto dir = temp_dir("formats-agree");
  write_gguf(m, dir / "tq2.gguf", GgmlType::TQ2_0);
  write_gguf(m, dir / "tq1.gguf", GgmlType::TQ1_0);
  write_gguf(m, dir / "i2s.gguf", GgmlType::I2_S);
  write_gguf(m, dir / "f32.gguf", GgmlType::F32);
  write_hf_folder(m, dir / "hf");

  const std::vector<uint32_t> tokens = {1, 17, 300, 5, 99, 7};
  auto base = open_model(dir / "f32.gguf");
  CHECK(base->config().arch == Architecture::BitNet2B4T);
  CHECK(base->config().head_dim == 64);
  const auto expected = ReferenceForward(*base).logits(tokens);
  for (auto name : {"tq2.gguf", "tq1.gguf", "i2s.gguf", "hf"}) {
    CAPTURE(name);
    auto src = open_model(dir / name);
    CHECK(src->config().dim == 256);
    CHECK(src->config().n_kv_heads == 1);
    for (auto w : {Linear::Q, Linear::K, Linear::Down}) {
      auto a = src->linear(1, w), b = base->linear(1, w);
      CHECK(a.values == b.values);
      CHECK(a.scale == b.scale);
    }
    CHECK(src->norm(0, Norm::FfnSub) == base->norm(0, Norm::FfnSub));
    CHECK(src->embedding_f16() == base->embedding_f16());
    const auto got = ReferenceForward(*src).logits(tokens);
    for (size_t t = 0; t < tokens.size(); ++t) CHECK(got[t] == expected[t]);
  }
}

TEST_CASE("llama.cpp's TQ2_0 and TQ1_0 tiny models give the F32 model's logits") {
  auto f32 = open_model(kShared / "data/models/tiny-random-f32.gguf");
  CHECK(f32->config().arch == Architecture::BitNetLlama);
  CHECK(f32->config().n_kv_heads == 2);
  const std::vector<uint32_t> tokens = {1, 450, 4996, 17354, 1701};
  const auto expected = ReferenceForward(*f32).logits(tokens);
  for (auto name : {"tiny-random-tq2_0.gguf", "tiny-random-tq1_0.gguf"}) {
    CAPTURE(name);
    auto src = open_model(kShared / "data/models" / name);
    const auto got = ReferenceForward(*src).logits(tokens);
    for (size_t t = 0; t < tokens.size(); ++t) {
      CHECK(cosine(got[t], expected[t]) > 0.999);
      CHECK(argmax_index(got[t]) == argmax_index(expected[t]));
    }
  }
}

TEST_CASE("unknown architectures, missing files and truncated files are clear errors") {
  const auto dir = temp_dir("bad-models");
  RandomModel m = make_random_model(small_2b4t_config(), 3);
  m.config.arch_name = "gpt-neox";
  write_gguf(m, dir / "arch.gguf", GgmlType::I2_S);
  CHECK_THROWS_WITH_AS(open_model(dir / "arch.gguf"), doctest::Contains("unsupported architecture 'gpt-neox'"), Error);
  CHECK_THROWS_WITH_AS(open_model(dir / "nothing.gguf"), doctest::Contains("no such file"), Error);
  write_hf_folder(make_random_model(small_2b4t_config(), 3), dir / "hf");
  std::filesystem::remove(dir / "hf" / "model.safetensors");
  CHECK_THROWS_AS(open_model(dir / "hf"), Error);
  std::ofstream(dir / "empty.gguf") << "GGUF";
  CHECK_THROWS_AS(open_model(dir / "empty.gguf"), Error);
}

TEST_CASE("a file without the graph's tensors names every missing one") {
  const ModelConfig c = small_2b4t_config();
  GgufWriter w;
  const std::string a = c.arch_name;
  w.set_string("general.architecture", a);
  w.set_u32(a + ".context_length", c.context);
  w.set_u32(a + ".embedding_length", c.dim);
  w.set_u32(a + ".block_count", c.n_layers);
  w.set_u32(a + ".feed_forward_length", c.ffn_dim);
  w.set_u32(a + ".attention.head_count", c.n_heads);
  w.set_u32(a + ".attention.head_count_kv", c.n_kv_heads);
  std::vector<float> embedding(size_t(c.vocab) * c.dim, 0.25f);
  w.add_float_tensor("token_embd.weight", {c.dim, c.vocab}, GgmlType::F16, embedding);
  const auto path = temp_dir("missing-tensors") / "partial.gguf";
  w.write(path);
  CHECK_THROWS_WITH_AS(open_model(path),
                       doctest::Contains("missing tensors: output_norm.weight, blk.0.attn_norm.weight"), Error);
  CHECK_THROWS_WITH_AS(open_model(path), doctest::Contains("blk.1.ffn_down.weight"), Error);
}

TEST_CASE("NaN or infinity in a norm or the embedding stops the load, naming the tensor") {
  const auto dir = temp_dir("non-finite");
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  RandomModel norm_nan = make_random_model(small_2b4t_config(), 5);
  norm_nan.layers[1].ffn_norm[7] = nan;
  write_gguf(norm_nan, dir / "norm.gguf", GgmlType::I2_S);
  CHECK_THROWS_WITH_AS(open_model(dir / "norm.gguf")->norm(1, Norm::Ffn),
                       doctest::Contains("tensor 'blk.1.ffn_norm.weight': value 7 (row 0, col 7) is NaN"), Error);
  RandomModel embedding_inf = make_random_model(small_2b4t_config(), 5);
  embedding_inf.embedding[3 * size_t(embedding_inf.config.dim) + 2] = inf;
  write_gguf(embedding_inf, dir / "embd.gguf", GgmlType::I2_S);
  const std::string where = "tensor 'token_embd.weight': value " + std::to_string(3 * embedding_inf.config.dim + 2) +
                            " (row 3, col 2) is +inf";
  CHECK_THROWS_WITH_AS(open_model(dir / "embd.gguf")->embedding_f16(), doctest::Contains(where.c_str()), Error);
  // The same in a Hugging Face folder (BF16 norms).
  write_hf_folder(norm_nan, dir / "hf");
  CHECK_THROWS_WITH_AS(open_model(dir / "hf")->norm(1, Norm::Ffn),
                       doctest::Contains("model.layers.1.post_attention_layernorm.weight"), Error);
  // An engine loading either file refuses it before running anything.
  EngineOptions o;
  o.load_tokenizer = false;
  o.context = 16;
  CHECK_THROWS_WITH_AS(Engine(test::instance(), dir / "norm.gguf", o), doctest::Contains("is NaN"), Error);
}

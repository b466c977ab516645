// Model files of every format describe the same model: configs, tensors and the CPU reference's
// logits agree across GGUF (TQ2_0, TQ1_0, I2_S, F32) and the Hugging Face safetensors folder.
#include <doctest/doctest.h>

#include <fstream>

#include "engine/random_model.h"
#include "engine/reference_forward.h"
#include "runtime/core/error.h"
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

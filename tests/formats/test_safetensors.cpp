// safetensors reader/writer, model folders (single and sharded), config.json, and the HF BitNet
// weight path (packed U8 + weight_scale under both scale conventions).
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>

#include "runtime/core/half.h"
#include "runtime/formats/hf_config.h"
#include "runtime/formats/hf_tensor_decode.h"
#include "runtime/formats/safetensors.h"
#include "runtime/formats/safetensors_writer.h"
#include "runtime/formats/ternary_encode.h"
#include "sample_files.h"
#include "ternary_test_data.h"
#include "test_util.h"

using namespace ternvk;

namespace {

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

const char* const kConfig2B4T = test::kSampleConfigJson;

// A packed ternary weight plus its BF16 scalar scale, the way 2B4T stores a BitLinear.
void add_bitlinear(SafetensorsWriter& w, const std::string& prefix, const TernaryMatrix& m,
                   float stored_scale) {
  w.add(prefix + ".weight", SafetensorsDtype::U8, {m.rows / 4, m.cols}, pack_hf_ternary(m));
  const float s[] = {stored_scale};
  w.add_floats(prefix + ".weight_scale", SafetensorsDtype::BF16, {1}, s);
}

}  // namespace

TEST_CASE("safetensors writer and reader agree on dtypes, shapes and bytes") {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  const std::vector<float> f = {1.0f, -2.5f, 0.125f, 3.0f, 4.0f, 5.0f};
  w.add_floats("f32", SafetensorsDtype::F32, {2, 3}, f);
  w.add_floats("f16", SafetensorsDtype::F16, {6}, f);
  w.add_floats("bf16", SafetensorsDtype::BF16, {3, 2}, f);
  w.add("u8", SafetensorsDtype::U8, {2, 2}, {1, 2, 3, 4});
  w.add("i64", SafetensorsDtype::I64, {1}, std::vector<uint8_t>(8, 0xff));
  w.add("empty", SafetensorsDtype::F32, {0, 4}, {});
  const auto bytes = w.to_bytes();
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  CHECK(header_len % 8 == 0);
  const auto file = SafetensorsFile::from_bytes(bytes, "mem.safetensors");
  CHECK(file.tensors().size() == 6);
  CHECK(file.find("__metadata__") == nullptr);
  const auto& t = file.tensor("bf16");
  CHECK(t.dtype == SafetensorsDtype::BF16);
  CHECK(t.shape == std::vector<int64_t>{3, 2});
  CHECK(t.n_elements == 6);
  CHECK(file.tensor_bytes(file.tensor("u8")).size() == 4);
  CHECK(file.tensor_bytes(file.tensor("u8"))[3] == 4);
  CHECK(file.tensor("empty").n_elements == 0);
  test::require_error([&] { (void)file.tensor("nope"); }, "mem.safetensors", "'nope'", "missing");
}

TEST_CASE("HF model folder: single file, HF packed weights with both scale conventions") {
  const auto dir = test::scratch_dir("hf_single");
  write_text(dir / "config.json", kConfig2B4T);
  const auto q = test::random_ternary(16, 24, 0.0f, 11);
  SafetensorsWriter w;
  add_bitlinear(w, "model.layers.0.self_attn.q_proj", q, 0.75f);
  const std::vector<float> norm(24, 1.5f);
  w.add_floats("model.norm.weight", SafetensorsDtype::BF16, {24}, norm);
  w.write(dir / "model.safetensors");

  const HfBitnetConfig c = load_hf_config(dir);
  REQUIRE(c.weight_scale_convention.has_value());
  const auto model = SafetensorsModel::open(dir);
  const auto m = read_hf_ternary(model, "model.layers.0.self_attn.q_proj.weight",
                                 *c.weight_scale_convention);
  CHECK(m.rows == 16);
  CHECK(m.cols == 24);
  CHECK(m.values == q.values);
  CHECK(m.scale == 0.75f);  // autobitlinear multiplies
  const auto inverse = read_hf_ternary(model, "model.layers.0.self_attn.q_proj.weight",
                                       WeightScaleConvention::Divide);
  CHECK(inverse.scale == doctest::Approx(1.0f / 0.75f));  // bitlinear divides
  CHECK(read_hf_f32(model, "model.norm.weight") == norm);
  CHECK(read_hf_f16_bits(model, "model.norm.weight")[0] == float_to_half(1.5f));
  test::require_error([&] { read_hf_ternary(model, "model.norm.weight", WeightScaleConvention::Multiply); },
                      "model.norm.weight", "2-D");
}

TEST_CASE("HF model folder: sharded via model.safetensors.index.json") {
  const auto dir = test::scratch_dir("hf_sharded");
  const auto a = test::random_ternary(8, 8, 0.0f, 1);
  const auto b = test::random_ternary(4, 12, 0.0f, 2);
  SafetensorsWriter s1, s2;
  add_bitlinear(s1, "model.layers.0.mlp.up_proj", a, 2.0f);
  add_bitlinear(s2, "model.layers.0.mlp.down_proj", b, 0.5f);
  s1.write(dir / "model-00001-of-00002.safetensors");
  s2.write(dir / "model-00002-of-00002.safetensors");
  write_text(dir / "model.safetensors.index.json", R"({"metadata": {"total_size": 1}, "weight_map": {
    "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.mlp.up_proj.weight_scale": "model-00001-of-00002.safetensors",
    "model.layers.0.mlp.down_proj.weight": "model-00002-of-00002.safetensors",
    "model.layers.0.mlp.down_proj.weight_scale": "model-00002-of-00002.safetensors"}})");
  const auto model = SafetensorsModel::open(dir);
  CHECK(model.shards().size() == 2);
  CHECK(model.tensor_names().size() == 4);
  const auto ma = read_hf_ternary(model, "model.layers.0.mlp.up_proj.weight", WeightScaleConvention::Multiply);
  const auto mb = read_hf_ternary(model, "model.layers.0.mlp.down_proj.weight", WeightScaleConvention::Multiply);
  CHECK(ma.values == a.values);
  CHECK(mb.values == b.values);
  CHECK(mb.scale == 0.5f);

  write_text(dir / "model.safetensors.index.json",
             R"({"weight_map": {"ghost.weight": "model-00001-of-00002.safetensors"}})");
  test::require_error([&] { (void)SafetensorsModel::open(dir); }, "ghost.weight", "does not contain it");
  write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"x": "../escape.safetensors"}})");
  test::require_error([&] { (void)SafetensorsModel::open(dir); }, "plain file name");
  write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"x": "missing.safetensors"}})");
  test::require_error([&] { (void)SafetensorsModel::open(dir); }, "missing.safetensors", "cannot open");
  const auto empty = test::scratch_dir("hf_empty");
  test::require_error([&] { (void)SafetensorsModel::open(empty); }, "hf_empty", "neither");
}

TEST_CASE("HF packed weight without its weight_scale, or with a bad one, is an error") {
  SafetensorsWriter w;
  const auto m = test::random_ternary(4, 4, 0.0f, 5);
  w.add("a.weight", SafetensorsDtype::U8, {1, 4}, pack_hf_ternary(m));
  const float two[] = {1.0f, 2.0f};
  w.add("b.weight", SafetensorsDtype::U8, {1, 4}, pack_hf_ternary(m));
  w.add_floats("b.weight_scale", SafetensorsDtype::F32, {2}, two);
  const float zero[] = {0.0f};
  w.add("c.weight", SafetensorsDtype::U8, {1, 4}, pack_hf_ternary(m));
  w.add_floats("c.weight_scale", SafetensorsDtype::F16, {1}, zero);
  const auto dir = test::scratch_dir("hf_bad_scale");
  w.write(dir / "model.safetensors");
  const auto model = SafetensorsModel::open(dir);
  test::require_error([&] { read_hf_ternary(model, "a.weight", WeightScaleConvention::Multiply); },
                      "a.weight_scale", "missing");
  test::require_error([&] { read_hf_ternary(model, "b.weight", WeightScaleConvention::Multiply); },
                      "b.weight_scale", "2 elements");
  test::require_error([&] { read_hf_ternary(model, "c.weight", WeightScaleConvention::Multiply); },
                      "c.weight_scale", "> 0");
}

TEST_CASE("config.json of 2B4T parses, and scale conventions other than the two known fail") {
  const HfBitnetConfig c = parse_hf_config_json(kConfig2B4T, "config.json");
  CHECK(c.architecture == "BitNetForCausalLM");
  CHECK(c.hidden_size == 2560);
  CHECK(c.num_hidden_layers == 30);
  CHECK(c.num_attention_heads == 20);
  CHECK(c.num_key_value_heads == 5);
  CHECK(c.intermediate_size == 6912);
  CHECK(c.vocab_size == 128256);
  CHECK(c.rms_norm_eps == doctest::Approx(1e-5));
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.max_position_embeddings == 4096);
  CHECK(c.tie_word_embeddings);
  CHECK(c.hidden_act == "relu2");
  CHECK(c.bos_token_id == 128000);
  CHECK(c.eos_token_ids == std::vector<int64_t>{128001});
  CHECK(c.weight_scale_convention == WeightScaleConvention::Multiply);
  CHECK(c.quantization_mode == "offline");

  auto with = [](const std::string& from, const std::string& to) {
    std::string s = kConfig2B4T;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  CHECK(parse_hf_config_json(with("\"autobitlinear\"", "\"bitlinear\""), "c").weight_scale_convention ==
        WeightScaleConvention::Divide);
  test::require_error([&] { parse_hf_config_json(with("\"autobitlinear\"", "\"fancylinear\""), "cfg.json"); },
                      "cfg.json", "linear_class", "fancylinear", "autobitlinear", "bitlinear");
  test::require_error([&] { parse_hf_config_json(with("\"quant_method\": \"bitnet\"", "\"quant_method\": \"gptq\""), "c"); },
                      "quant_method", "gptq");
  test::require_error([&] { parse_hf_config_json(with("\"hidden_size\": 2560", "\"hidden_size\": -1"), "c"); },
                      "hidden_size", "positive integer");
  test::require_error([&] { parse_hf_config_json(with("\"hidden_size\": 2560,", ""), "c"); },
                      "hidden_size", "missing");
  CHECK(parse_hf_config_json(with("\"eos_token_id\": 128001", "\"eos_token_id\": [128001, 128009]"), "c")
            .eos_token_ids == std::vector<int64_t>{128001, 128009});
  test::require_error([&] { parse_hf_config_json("{not json", "broken.json"); }, "broken.json", "JSON");
  test::require_error([&] { (void)load_hf_config(test::scratch_dir("no_config")); }, "config.json");
}

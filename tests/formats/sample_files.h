// Small valid GGUF and safetensors files with a bit of everything, the seeds of the bad-input
// tests and of the fuzzer; plus helpers to find and patch fields inside their bytes.
#pragma once
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/formats/ggml_types.h"
#include "runtime/formats/gguf_writer.h"
#include "runtime/formats/safetensors_writer.h"
#include "runtime/formats/ternary_encode.h"
#include "ternary_test_data.h"

namespace ternvk::test {

inline std::vector<uint8_t> sample_gguf(uint32_t version = 3) {
  GgufWriter w(version);
  w.set_string("general.architecture", "bitnet");
  w.set_u32("bitnet.block_count", 2);
  w.set_f32("bitnet.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set("tokenizer.ggml.tokens", GgufValue::string_array({"<unk>", "<s>", "</s>", "a", "bc"}));
  w.set("tokenizer.ggml.scores", GgufValue::f32_array({0, 0, 0, -1.5f, -2.5f}));
  w.set("tokenizer.ggml.token_type", GgufValue::i32_array({2, 3, 3, 1, 1}));
  GgufArray inner;
  inner.element_type = GgufType::U16;
  inner.unsigned_values = {1, 2};
  GgufArray outer;
  outer.element_type = GgufType::ARRAY;
  outer.arrays = {inner, inner};
  w.set("test.nested", GgufValue::of_array(outer));
  w.set("test.i64", GgufValue::i64(-5));
  w.set("test.f64", GgufValue::f64(2.5));
  const std::vector<float> norm = {1, 2, 3, 4, 5, 6, 7, 8};
  w.add_float_tensor("output_norm.weight", {8}, GgmlType::F32, norm);
  const auto m = random_ternary(2, 256, 0.5f, 42);
  w.add_tensor("blk.0.attn_q.weight", {256, 2}, GgmlType::TQ2_0, encode_tq2_0(m));
  w.add_tensor("blk.0.attn_k.weight", {256, 2}, GgmlType::TQ1_0, encode_tq1_0(m));
  w.add_tensor("blk.0.attn_v.weight", {256, 2}, GgmlType::I2_S, encode_i2_s(m));
  std::vector<uint8_t> q8(34, 0);
  const uint16_t d = 0x3c00;  // fp16 1.0
  std::memcpy(q8.data(), &d, 2);
  for (int i = 0; i < 32; ++i) q8[2 + i] = static_cast<uint8_t>(i - 16);
  w.add_tensor("token_embd.weight", {32, 1}, GgmlType::Q8_0, q8);
  w.add_float_tensor("blk.0.ffn_norm.weight", {8}, GgmlType::BF16, norm);
  return w.to_bytes();
}

inline std::vector<uint8_t> sample_safetensors() {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  const auto m = random_ternary(8, 16, 0.0f, 7);
  w.add("model.layers.0.mlp.up_proj.weight", SafetensorsDtype::U8, {2, 16}, pack_hf_ternary(m));
  const float scale[] = {0.25f};
  w.add_floats("model.layers.0.mlp.up_proj.weight_scale", SafetensorsDtype::BF16, {1}, scale);
  const std::vector<float> norm(16, 1.0f);
  w.add_floats("model.norm.weight", SafetensorsDtype::F16, {16}, norm);
  return w.to_bytes();
}

// config.json of BitNet b1.58 2B4T.
inline const char* const kSampleConfigJson = R"({
  "architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
  "hidden_size": 2560, "num_hidden_layers": 30, "num_attention_heads": 20,
  "num_key_value_heads": 5, "intermediate_size": 6912, "vocab_size": 128256,
  "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "max_position_embeddings": 4096,
  "tie_word_embeddings": true, "hidden_act": "relu2", "bos_token_id": 128000,
  "eos_token_id": 128001, "torch_dtype": "bfloat16",
  "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                          "quantization_mode": "offline"}
})";

// Byte position of the first occurrence of `text` in `bytes` (requires it to be there).
inline size_t find_bytes(const std::vector<uint8_t>& bytes, const std::string& text) {
  auto it = std::search(bytes.begin(), bytes.end(), text.begin(), text.end());
  REQUIRE(it != bytes.end());
  return static_cast<size_t>(it - bytes.begin());
}

// Where a tensor info's fields start in a GGUF: right after its name.
struct TensorInfoFields {
  size_t n_dims, dims, type, offset;
};
inline TensorInfoFields gguf_tensor_fields(const std::vector<uint8_t>& bytes, const std::string& name) {
  // The tensor info is the LAST occurrence (the name may also appear inside metadata strings).
  size_t at = std::string::npos;
  for (size_t p = 0; p + name.size() <= bytes.size(); ++p) {
    if (std::memcmp(bytes.data() + p, name.data(), name.size()) == 0) at = p;
  }
  REQUIRE(at != std::string::npos);
  TensorInfoFields f;
  f.n_dims = at + name.size();
  uint32_t n_dims;
  std::memcpy(&n_dims, bytes.data() + f.n_dims, 4);
  f.dims = f.n_dims + 4;
  f.type = f.dims + 8 * n_dims;
  f.offset = f.type + 4;
  return f;
}

template <typename T>
void poke(std::vector<uint8_t>& bytes, size_t at, T value) {
  REQUIRE(at + sizeof(T) <= bytes.size());
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

}  // namespace ternvk::test

#include "engine/random_model.h"

#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>

#include "runtime/core/half.h"
#include "runtime/formats/gguf_writer.h"
#include "runtime/formats/safetensors_writer.h"
#include "runtime/formats/ternary_encode.h"

namespace ternvk::test {
namespace {

// Random values on a coarse grid (multiples of 1/64 in a small range): exact in fp16 and bf16.
float grid_value(std::mt19937_64& rng, float lo, float hi) {
  std::uniform_int_distribution<int> d(int(lo * 64), int(hi * 64));
  return float(d(rng)) / 64.0f;
}

TernaryMatrix random_ternary(std::mt19937_64& rng, int64_t rows, int64_t cols) {
  TernaryMatrix m{rows, cols, std::vector<int8_t>(size_t(rows * cols)), 0};
  std::uniform_int_distribution<int> d(-1, 1);
  for (auto& v : m.values) v = int8_t(d(rng));
  // Scales around the size a trained layer would have: keeps activations in a sane range.
  m.scale = float(std::uniform_int_distribution<int>(16, 40)(rng)) / 1024.0f;
  return m;
}

std::vector<float> random_norm(std::mt19937_64& rng, int64_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = grid_value(rng, 0.5f, 1.5f);
  return v;
}

std::vector<float> dequant_rows(const TernaryMatrix& m) { return dequantize(m); }

std::vector<uint8_t> floats_to_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace

ModelConfig small_2b4t_config() {
  ModelConfig c;
  c.arch = Architecture::BitNet2B4T;
  c.arch_name = "bitnet-b1.58";
  c.dim = 256;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 1;
  c.head_dim = 64;
  c.ffn_dim = 512;
  c.vocab = 320;
  c.context = 128;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  return c;
}

RandomModel make_random_model(const ModelConfig& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  RandomModel m;
  m.config = c;
  for (int l = 0; l < c.n_layers; ++l) {
    RandomModel::Layer L;
    L.q = random_ternary(rng, c.q_dim(), c.dim);
    L.k = random_ternary(rng, c.kv_dim(), c.dim);
    L.v = random_ternary(rng, c.kv_dim(), c.dim);
    L.o = random_ternary(rng, c.dim, c.q_dim());
    L.gate = random_ternary(rng, c.ffn_dim, c.dim);
    L.up = random_ternary(rng, c.ffn_dim, c.dim);
    L.down = random_ternary(rng, c.dim, c.ffn_dim);
    L.attn_norm = random_norm(rng, c.dim);
    L.attn_sub_norm = random_norm(rng, c.q_dim());
    L.ffn_norm = random_norm(rng, c.dim);
    L.ffn_sub_norm = random_norm(rng, c.ffn_dim);
    m.layers.push_back(std::move(L));
  }
  m.embedding.resize(size_t(c.vocab) * c.dim);
  for (auto& x : m.embedding) x = grid_value(rng, -1.0f, 1.0f);
  m.output_norm = random_norm(rng, c.dim);
  return m;
}

void write_gguf(const RandomModel& m, const std::filesystem::path& path, GgmlType weight_type) {
  const ModelConfig& c = m.config;
  GgufWriter w;
  const std::string a = c.arch_name;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "ternvk-test-random");
  w.set_u32(a + ".context_length", c.context);
  w.set_u32(a + ".embedding_length", c.dim);
  w.set_u32(a + ".block_count", c.n_layers);
  w.set_u32(a + ".feed_forward_length", c.ffn_dim);
  w.set_u32(a + ".attention.head_count", c.n_heads);
  w.set_u32(a + ".attention.head_count_kv", c.n_kv_heads);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  w.set_f32(a + ".rope.freq_base", c.rope_theta);
  w.set_u32(a + ".rope.dimension_count", c.head_dim);
  w.set_u32(a + ".vocab_size", c.vocab);
  w.add_float_tensor("token_embd.weight", {c.dim, c.vocab}, GgmlType::F16, m.embedding);
  w.add_float_tensor("output_norm.weight", {c.dim}, GgmlType::F32, m.output_norm);
  if (!m.output.empty()) w.add_float_tensor("output.weight", {c.dim, c.vocab}, GgmlType::F16, m.output);
  auto add_linear = [&](const std::string& name, const TernaryMatrix& t) {
    std::vector<int64_t> ne = {t.cols, t.rows};
    switch (weight_type) {
      case GgmlType::TQ2_0: w.add_tensor(name, ne, GgmlType::TQ2_0, encode_tq2_0(t)); break;
      case GgmlType::TQ1_0: w.add_tensor(name, ne, GgmlType::TQ1_0, encode_tq1_0(t)); break;
      case GgmlType::I2_S: w.add_tensor(name, ne, GgmlType::I2_S, encode_i2_s(t)); break;
      default: w.add_float_tensor(name, ne, GgmlType::F32, dequant_rows(t)); break;
    }
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& L = m.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    w.add_float_tensor(p + "attn_norm.weight", {c.dim}, GgmlType::F32, L.attn_norm);
    w.add_float_tensor(p + "attn_sub_norm.weight", {c.q_dim()}, GgmlType::F32, L.attn_sub_norm);
    w.add_float_tensor(p + "ffn_norm.weight", {c.dim}, GgmlType::F32, L.ffn_norm);
    w.add_float_tensor(p + "ffn_sub_norm.weight", {c.ffn_dim}, GgmlType::F32, L.ffn_sub_norm);
    add_linear(p + "attn_q.weight", L.q);
    add_linear(p + "attn_k.weight", L.k);
    add_linear(p + "attn_v.weight", L.v);
    add_linear(p + "attn_output.weight", L.o);
    add_linear(p + "ffn_gate.weight", L.gate);
    add_linear(p + "ffn_up.weight", L.up);
    add_linear(p + "ffn_down.weight", L.down);
  }
  w.write(path);
}

void write_hf_folder(const RandomModel& m, const std::filesystem::path& dir) {
  const ModelConfig& c = m.config;
  if (!m.output.empty()) throw std::runtime_error("write_hf_folder: untied heads are written to GGUF only");
  std::filesystem::create_directories(dir);
  {
    std::ofstream cfg(dir / "config.json");
    cfg << "{\n  \"architectures\": [\"BitNetForCausalLM\"],\n  \"model_type\": \"bitnet\",\n"
        << "  \"hidden_size\": " << c.dim << ",\n  \"intermediate_size\": " << c.ffn_dim << ",\n"
        << "  \"num_hidden_layers\": " << c.n_layers << ",\n  \"num_attention_heads\": " << c.n_heads << ",\n"
        << "  \"num_key_value_heads\": " << c.n_kv_heads << ",\n  \"vocab_size\": " << c.vocab << ",\n"
        << "  \"max_position_embeddings\": " << c.context << ",\n  \"rms_norm_eps\": " << c.rms_eps << ",\n"
        << "  \"rope_theta\": " << c.rope_theta << ",\n  \"hidden_act\": \""
        << (c.squared_relu() ? "relu2" : "silu") << "\",\n  \"tie_word_embeddings\": true,\n"
        << "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
        << "  \"quantization_config\": {\"quant_method\": \"bitnet\", \"linear_class\": \"autobitlinear\", "
           "\"quantization_mode\": \"offline\"}\n}\n";
  }
  SafetensorsWriter w;
  w.add_floats("model.embed_tokens.weight", SafetensorsDtype::BF16, {c.vocab, c.dim}, m.embedding);
  w.add_floats("model.norm.weight", SafetensorsDtype::BF16, {c.dim}, m.output_norm);
  auto add_linear = [&](const std::string& name, const TernaryMatrix& t) {
    w.add(name + ".weight", SafetensorsDtype::U8, {t.rows / 4, t.cols}, pack_hf_ternary(t));
    std::vector<float> s = {t.scale};
    w.add_floats(name + ".weight_scale", SafetensorsDtype::BF16, {1}, s);
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& L = m.layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.add_floats(p + "input_layernorm.weight", SafetensorsDtype::BF16, {c.dim}, L.attn_norm);
    w.add_floats(p + "self_attn.attn_sub_norm.weight", SafetensorsDtype::BF16, {c.q_dim()}, L.attn_sub_norm);
    w.add_floats(p + "post_attention_layernorm.weight", SafetensorsDtype::BF16, {c.dim}, L.ffn_norm);
    w.add_floats(p + "mlp.ffn_sub_norm.weight", SafetensorsDtype::BF16, {c.ffn_dim}, L.ffn_sub_norm);
    add_linear(p + "self_attn.q_proj", L.q);
    add_linear(p + "self_attn.k_proj", L.k);
    add_linear(p + "self_attn.v_proj", L.v);
    add_linear(p + "self_attn.o_proj", L.o);
    add_linear(p + "mlp.gate_proj", L.gate);
    add_linear(p + "mlp.up_proj", L.up);
    add_linear(p + "mlp.down_proj", L.down);
  }
  w.write(dir / "model.safetensors");
}

std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::path(TERNVK_BINARY_DIR) / "test-tmp" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::filesystem::path random_model_gguf(const ModelConfig& config, uint64_t seed, const std::string& name,
                                        GgmlType weight_type) {
  const auto path = temp_dir(name) / "model.gguf";
  write_gguf(make_random_model(config, seed), path, weight_type);
  return path;
}

}  // namespace ternvk::test

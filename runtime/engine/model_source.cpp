#include "runtime/engine/model_source.h"

#include <cmath>

#include "runtime/core/error.h"
#include "runtime/formats/ggml_types.h"
#include "runtime/formats/gguf.h"
#include "runtime/formats/hf_config.h"
#include "runtime/formats/hf_tensor_decode.h"
#include "runtime/formats/json_input.h"
#include "runtime/formats/safetensors.h"
#include "runtime/formats/tensor_decode.h"

namespace ternvk {

const char* linear_name(Linear l) {
  switch (l) {
    case Linear::Q: return "q";
    case Linear::K: return "k";
    case Linear::V: return "v";
    case Linear::O: return "o";
    case Linear::Gate: return "gate";
    case Linear::Up: return "up";
    case Linear::Down: return "down";
  }
  return "?";
}

const char* norm_name(Norm n) {
  switch (n) {
    case Norm::Attn: return "attn_norm";
    case Norm::AttnSub: return "attn_sub_norm";
    case Norm::Ffn: return "ffn_norm";
    case Norm::FfnSub: return "ffn_sub_norm";
  }
  return "?";
}

namespace {

// [out, in] of each linear layer, from the config.
std::pair<int64_t, int64_t> linear_shape(const ModelConfig& c, Linear l) {
  switch (l) {
    case Linear::Q: return {c.q_dim(), c.dim};
    case Linear::K:
    case Linear::V: return {c.kv_dim(), c.dim};
    case Linear::O: return {c.dim, c.q_dim()};
    case Linear::Gate:
    case Linear::Up: return {c.ffn_dim, c.dim};
    case Linear::Down: return {c.dim, c.ffn_dim};
  }
  return {0, 0};
}

int64_t norm_size(const ModelConfig& c, Norm n) {
  switch (n) {
    case Norm::Attn:
    case Norm::Ffn: return c.dim;
    case Norm::AttnSub: return c.q_dim();
    case Norm::FfnSub: return c.ffn_dim;
  }
  return 0;
}

void check_linear(const TernaryMatrix& m, const ModelConfig& c, Linear l, const std::string& where) {
  auto [rows, cols] = linear_shape(c, l);
  if (m.rows != rows || m.cols != cols)
    throw Error(where + ": shape [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "] but the model " +
                "config implies [" + std::to_string(rows) + ", " + std::to_string(cols) + "] (out, in)");
}

void check_size(size_t got, int64_t want, const std::string& where) {
  if (static_cast<int64_t>(got) != want)
    throw Error(where + ": " + std::to_string(got) + " elements, expected " + std::to_string(want));
}

// Names every tensor the graph needs that the file lacks, at once, before any upload starts.
template <class Has, class LinearName, class NormName>
void require_tensors(const std::string& path, const ModelConfig& c, std::initializer_list<std::string> globals,
                     Has has, LinearName linear_tensor, NormName norm_tensor) {
  std::string missing;
  auto need = [&](const std::string& name) {
    if (!has(name)) missing += (missing.empty() ? "" : ", ") + name;
  };
  for (const auto& g : globals) need(g);
  for (int l = 0; l < c.n_layers; ++l) {
    for (auto n : {Norm::Attn, Norm::AttnSub, Norm::Ffn, Norm::FfnSub}) need(norm_tensor(l, n));
    for (auto w : {Linear::Q, Linear::K, Linear::V, Linear::O, Linear::Gate, Linear::Up, Linear::Down})
      need(linear_tensor(l, w));
  }
  if (!missing.empty()) throw Error(path + ": missing tensors: " + missing);
}

// ---------------------------------------------------------------------------------------------
class GgufModelSource final : public ModelSource {
 public:
  explicit GgufModelSource(const std::filesystem::path& path) : file_(GgufFile::open(path)) {
    path_ = path.string();
    const std::string arch = file_.get_string("general.architecture");
    ModelConfig& c = config_;
    c.arch_name = arch;
    if (arch == "bitnet-b1.58" || arch == "bitnet-25") c.arch = Architecture::BitNet2B4T;
    else if (arch == "bitnet") c.arch = Architecture::BitNetLlama;
    else
      throw Error(path_ + ": unsupported architecture '" + arch +
                  "'; ternvk runs bitnet-b1.58 / bitnet-25 (BitNet b1.58 2B4T) and bitnet (1bitLLM)");
    auto key = [&](const char* k) { return arch + "." + k; };
    c.tied_head = file_.find_tensor("output.weight") == nullptr;
    c.dim = static_cast<int>(file_.get_u32(key("embedding_length")));
    c.n_layers = static_cast<int>(file_.get_u32(key("block_count")));
    c.n_heads = static_cast<int>(file_.get_u32(key("attention.head_count")));
    c.n_kv_heads = static_cast<int>(file_.get_u32(key("attention.head_count_kv"), c.n_heads));
    c.ffn_dim = static_cast<int>(file_.get_u32(key("feed_forward_length")));
    c.context = static_cast<int>(file_.get_u32(key("context_length")));
    c.rms_eps = file_.get_f32(key("attention.layer_norm_rms_epsilon"), 1e-5f);
    c.rope_theta = file_.get_f32(key("rope.freq_base"), 10000.0f);
    c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
    if (const GgufTensorInfo* q = file_.find_tensor("blk.0.attn_q.weight"); q && c.n_heads > 0)
      c.head_dim = static_cast<int>(q->rows() / c.n_heads);
    const GgufTensorInfo& embd = file_.tensor("token_embd.weight");
    c.vocab = static_cast<int>(file_.get_u32(key("vocab_size"), static_cast<uint32_t>(embd.rows())));
    c.validate(path_);
    if (embd.cols() != c.dim || embd.rows() != c.vocab)
      throw Error(path_ + ": token_embd.weight is [" + std::to_string(embd.rows()) + ", " + std::to_string(embd.cols()) +
                  "], expected [vocab " + std::to_string(c.vocab) + ", hidden " + std::to_string(c.dim) + "]");
    require_tensors(
        path_, c, {"output_norm.weight"}, [&](const std::string& n) { return file_.find_tensor(n) != nullptr; },
        linear_tensor, norm_tensor);
  }

  std::string format() const override { return "GGUF v" + std::to_string(file_.version()); }

  TernaryMatrix linear(int layer, Linear which) const override {
    const std::string name = linear_tensor(layer, which);
    TernaryMatrix m = read_ternary(file_, file_.tensor(name));
    // llama.cpp's `bitnet` graph multiplies by an optional per-tensor `<name>.scale`.
    std::string scale_name = name.substr(0, name.size() - 6) + "scale";
    if (const GgufTensorInfo* s = file_.find_tensor(scale_name)) {
      auto v = read_f32(file_, *s);
      if (v.size() != 1 || !std::isfinite(v[0]) || v[0] <= 0)
        throw Error(path_ + ": tensor '" + scale_name + "' must hold one finite positive scale");
      m.scale *= v[0];
    }
    check_linear(m, config_, which, path_ + ": tensor '" + name + "'");
    return m;
  }
  std::vector<float> norm(int layer, Norm which) const override {
    const std::string name = norm_tensor(layer, which);
    auto v = read_f32(file_, file_.tensor(name));
    check_size(v.size(), norm_size(config_, which), path_ + ": tensor '" + name + "'");
    return v;
  }
  std::vector<float> output_norm() const override {
    auto v = read_f32(file_, file_.tensor("output_norm.weight"));
    check_size(v.size(), config_.dim, path_ + ": tensor 'output_norm.weight'");
    return v;
  }
  std::vector<uint16_t> embedding_f16() const override {
    return read_f16_bits(file_, file_.tensor("token_embd.weight"));
  }
  std::optional<std::vector<uint16_t>> output_f16() const override {
    const GgufTensorInfo* out = file_.find_tensor("output.weight");
    if (!out) return std::nullopt;
    if (out->cols() != config_.dim || out->rows() != config_.vocab)
      throw Error(path_ + ": output.weight is not [vocab, hidden]");
    return read_f16_bits(file_, *out);
  }
  std::unique_ptr<Tokenizer> tokenizer() const override { return load_tokenizer_from_gguf(file_); }
  std::vector<TensorSummary> tensor_summaries() const override {
    std::vector<TensorSummary> out;
    for (const auto& t : file_.tensors()) {
      TensorSummary s{t.name, ggml_type_label(t.type), {}, t.byte_size.value_or(0)};
      for (int d = static_cast<int>(t.n_dims) - 1; d >= 0; --d) s.shape.push_back(t.ne[d]);
      out.push_back(std::move(s));
    }
    return out;
  }

 private:
  static std::string linear_tensor(int l, Linear w) {
    static const char* names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    return "blk." + std::to_string(l) + "." + names[static_cast<int>(w)] + ".weight";
  }
  static std::string norm_tensor(int l, Norm n) {
    return "blk." + std::to_string(l) + "." + norm_name(n) + ".weight";
  }
  GgufFile file_;
};

// ---------------------------------------------------------------------------------------------
class HfModelSource final : public ModelSource {
 public:
  explicit HfModelSource(const std::filesystem::path& dir)
      : dir_(dir), hf_(load_hf_config(dir)), model_(SafetensorsModel::open(dir)) {
    path_ = dir.string();
    ModelConfig& c = config_;
    c.arch_name = hf_.architecture.empty() ? hf_.model_type : hf_.architecture;
    c.tied_head = hf_.tie_word_embeddings || !model_.find("lm_head.weight");
    if (hf_.hidden_act == "relu2") c.arch = Architecture::BitNet2B4T;
    else if (hf_.hidden_act == "silu") c.arch = Architecture::BitNetLlama;
    else
      throw Error(path_ + "/config.json: hidden_act " + json_preview(hf_.hidden_act) +
                  " is not a BitNet FFN (expected relu2 for 2B4T or silu for 1bitLLM)");
    if (!hf_.weight_scale_convention)
      throw Error(path_ + "/config.json: no bitnet quantization_config; ternvk runs packed BitNet b1.58 weights");
    auto narrow = [&](int64_t v, const char* what) {
      if (v <= 0 || v > (1 << 24)) throw Error(path_ + "/config.json: " + what + " is " + std::to_string(v));
      return static_cast<int>(v);
    };
    c.dim = narrow(hf_.hidden_size, "hidden_size");
    c.n_layers = narrow(hf_.num_hidden_layers, "num_hidden_layers");
    c.n_heads = narrow(hf_.num_attention_heads, "num_attention_heads");
    c.n_kv_heads = narrow(hf_.num_key_value_heads, "num_key_value_heads");
    c.ffn_dim = narrow(hf_.intermediate_size, "intermediate_size");
    c.vocab = narrow(hf_.vocab_size, "vocab_size");
    c.context = narrow(hf_.max_position_embeddings, "max_position_embeddings");
    c.head_dim = c.dim / c.n_heads;
    c.rms_eps = static_cast<float>(hf_.rms_norm_eps);
    c.rope_theta = static_cast<float>(hf_.rope_theta);
    c.validate(path_);
    require_tensors(
        path_, c, {"model.embed_tokens.weight", "model.norm.weight"},
        [&](const std::string& n) { return model_.find(n) != nullptr; }, linear_tensor, norm_tensor);
  }

  std::string format() const override { return "safetensors (Hugging Face)"; }
  TernaryMatrix linear(int layer, Linear which) const override {
    const std::string name = linear_tensor(layer, which);
    TernaryMatrix m = read_hf_ternary(model_, name, *hf_.weight_scale_convention);
    check_linear(m, config_, which, path_ + ": tensor '" + name + "'");
    return m;
  }
  std::vector<float> norm(int layer, Norm which) const override {
    const std::string name = norm_tensor(layer, which);
    auto v = read_hf_f32(model_, name);
    check_size(v.size(), norm_size(config_, which), path_ + ": tensor '" + name + "'");
    return v;
  }
  std::vector<float> output_norm() const override {
    auto v = read_hf_f32(model_, "model.norm.weight");
    check_size(v.size(), config_.dim, path_ + ": tensor 'model.norm.weight'");
    return v;
  }
  std::vector<uint16_t> embedding_f16() const override {
    auto v = read_hf_f16_bits(model_, "model.embed_tokens.weight");
    check_size(v.size(), int64_t{config_.vocab} * config_.dim, path_ + ": tensor 'model.embed_tokens.weight'");
    return v;
  }
  std::optional<std::vector<uint16_t>> output_f16() const override {
    if (hf_.tie_word_embeddings || !model_.find("lm_head.weight")) return std::nullopt;
    auto v = read_hf_f16_bits(model_, "lm_head.weight");
    check_size(v.size(), int64_t{config_.vocab} * config_.dim, path_ + ": tensor 'lm_head.weight'");
    return v;
  }
  std::unique_ptr<Tokenizer> tokenizer() const override { return load_tokenizer_from_files(dir_); }
  std::vector<TensorSummary> tensor_summaries() const override {
    std::vector<TensorSummary> out;
    for (const auto& name : model_.tensor_names()) {
      const auto& t = model_.tensor(name);
      out.push_back({name, t.dtype_name, t.shape, model_.tensor_bytes(t).size()});
    }
    return out;
  }

 private:
  static std::string linear_tensor(int l, Linear w) {
    static const char* names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                  "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    return "model.layers." + std::to_string(l) + "." + names[static_cast<int>(w)] + ".weight";
  }
  static std::string norm_tensor(int l, Norm n) {
    static const char* names[] = {"input_layernorm", "self_attn.attn_sub_norm", "post_attention_layernorm",
                                  "mlp.ffn_sub_norm"};
    return "model.layers." + std::to_string(l) + "." + names[static_cast<int>(n)] + ".weight";
  }
  std::filesystem::path dir_;
  HfBitnetConfig hf_;
  SafetensorsModel model_;
};

}  // namespace

std::unique_ptr<ModelSource> open_model(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return std::make_unique<HfModelSource>(path);
  if (!std::filesystem::exists(path, ec)) throw Error(path.string() + ": no such file or folder");
  return std::make_unique<GgufModelSource>(path);
}

}  // namespace ternvk

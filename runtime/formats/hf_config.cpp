#include "runtime/formats/hf_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/formats/json_input.h"

namespace ternvk {

namespace {

using nlohmann::json;

class ConfigReader {
 public:
  // `prefix` names the object in errors ("quantization_config.").
  ConfigReader(const json& j, const std::string& source, std::string prefix = "")
      : j_(j), source_(source), prefix_(std::move(prefix)) {}

  const json* find(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t positive_int(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) fail(key, "is missing");
    if (!v->is_number_integer() || v->get<int64_t>() <= 0) fail(key, "must be a positive integer, found " + json_preview(*v));
    return v->get<int64_t>();
  }

  double positive_number(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) fail(key, "is missing");
    if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>())) {
      fail(key, "must be a positive number, found " + json_preview(*v));
    }
    return v->get<double>();
  }

  std::string string(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) fail(key, "is missing");
    if (!v->is_string()) fail(key, "must be a string, found " + json_preview(*v));
    return v->get<std::string>();
  }

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw Error(source_ + ": \"" + prefix_ + key + "\" " + problem);
  }

 private:
  const json& j_;
  const std::string& source_;
  std::string prefix_;
};

// Token ids are checked against the vocabulary here, so nothing later indexes with a wild one.
std::vector<int64_t> token_ids(const ConfigReader& r, const char* key, int64_t vocab_size) {
  const json* v = r.find(key);
  if (v == nullptr) return {};
  if (!v->is_number_integer() && !v->is_array()) {
    r.fail(key, "must be a token id or a list of them, found " + json_preview(*v));
  }
  std::vector<int64_t> ids;
  const auto add = [&](const json& e) {
    if (!e.is_number_integer()) r.fail(key, "must hold integer token ids, found " + json_preview(e));
    const bool huge = e.is_number_unsigned() && e.get<uint64_t>() > uint64_t(vocab_size);
    const int64_t id = huge ? -1 : e.get<int64_t>();
    if (id < 0 || id >= vocab_size) {
      r.fail(key, "holds token id " + json_preview(e) + ", outside the vocabulary of " + std::to_string(vocab_size) +
                      " tokens (vocab_size)");
    }
    ids.push_back(id);
  };
  if (v->is_array()) {
    for (const json& e : *v) add(e);
  } else {
    add(*v);
  }
  return ids;
}

std::optional<WeightScaleConvention> read_quantization(const json& root, const std::string& source) {
  auto it = root.find("quantization_config");
  if (it == root.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) throw Error(source + ": \"quantization_config\" must be an object");
  ConfigReader q(*it, source, "quantization_config.");
  const std::string method = q.find("quant_method") ? q.string("quant_method") : "";
  if (method != "bitnet") {
    q.fail("quant_method", "is " + json_preview(method) + "; ternvk reads only BitNet (\"bitnet\") quantized models");
  }
  // transformers' BitNet integration defaults linear_class to "bitlinear" when absent; the
  // convention matters too much to guess, so require it.
  const std::string linear_class = q.string("linear_class");
  if (linear_class == "autobitlinear") return WeightScaleConvention::Multiply;
  if (linear_class == "bitlinear") return WeightScaleConvention::Divide;
  q.fail("linear_class", "is " + json_preview(linear_class) +
                             "; expected \"autobitlinear\" (weight_scale multiplies) or \"bitlinear\" (weight_scale divides)");
}

}  // namespace

float effective_multiplier(float stored_weight_scale, WeightScaleConvention convention) {
  return convention == WeightScaleConvention::Multiply ? stored_weight_scale
                                                       : 1.0f / stored_weight_scale;
}

namespace {

HfBitnetConfig config_from_json(const json& root, const std::string& source_name) {
  if (!root.is_object()) throw Error(source_name + ": expected a JSON object");
  ConfigReader r(root, source_name);
  HfBitnetConfig c;
  if (const json* a = r.find("architectures"); a && a->is_array() && !a->empty() && (*a)[0].is_string()) {
    c.architecture = (*a)[0].get<std::string>();
  }
  if (r.find("model_type")) c.model_type = r.string("model_type");
  c.hidden_size = r.positive_int("hidden_size");
  c.num_hidden_layers = r.positive_int("num_hidden_layers");
  c.num_attention_heads = r.positive_int("num_attention_heads");
  c.num_key_value_heads =
      r.find("num_key_value_heads") ? r.positive_int("num_key_value_heads") : c.num_attention_heads;
  c.intermediate_size = r.positive_int("intermediate_size");
  c.vocab_size = r.positive_int("vocab_size");
  c.rms_norm_eps = r.positive_number("rms_norm_eps");
  c.rope_theta = r.positive_number("rope_theta");
  c.max_position_embeddings = r.positive_int("max_position_embeddings");
  if (const json* t = r.find("tie_word_embeddings")) {
    if (!t->is_boolean()) r.fail("tie_word_embeddings", "must be true or false, found " + json_preview(*t));
    c.tie_word_embeddings = t->get<bool>();
  }
  c.hidden_act = r.string("hidden_act");
  if (auto bos = token_ids(r, "bos_token_id", c.vocab_size); !bos.empty()) c.bos_token_id = bos.front();
  c.eos_token_ids = token_ids(r, "eos_token_id", c.vocab_size);
  c.weight_scale_convention = read_quantization(root, source_name);
  if (c.weight_scale_convention) {
    ConfigReader q(root["quantization_config"], source_name, "quantization_config.");
    if (q.find("quantization_mode") && q.find("quantization_mode")->is_string()) {
      c.quantization_mode = q.string("quantization_mode");
    }
  }
  if (c.hidden_size % c.num_attention_heads != 0 || c.num_attention_heads % c.num_key_value_heads != 0) {
    throw Error(source_name + ": hidden_size " + std::to_string(c.hidden_size) + ", " +
                std::to_string(c.num_attention_heads) + " heads and " +
                std::to_string(c.num_key_value_heads) +
                " KV heads do not divide evenly into attention heads / groups");
  }
  return c;
}

}  // namespace

HfBitnetConfig parse_hf_config_json(const std::string& json_text, const std::string& source_name) {
  return config_from_json(parse_json_text(json_text, source_name), source_name);
}

HfBitnetConfig load_hf_config(const std::filesystem::path& path) {
  std::error_code ec;
  const auto file = std::filesystem::is_directory(path, ec) ? path / "config.json" : path;
  if (!std::filesystem::exists(file, ec)) {
    throw Error("cannot open '" + file.string() + "' (a Hugging Face model's config.json)");
  }
  // A config.json is a few KiB; a huge one is not a config.
  const json root = read_json_file(file, uint64_t{16} << 20);
  return config_from_json(root, file.string());
}

}  // namespace ternvk

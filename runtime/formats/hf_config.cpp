#include "runtime/formats/hf_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/core/error.h"

namespace ternvk {

namespace {

using nlohmann::json;

class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& source) : j_(j), source_(source) {}

  const json* find(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t positive_int(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) fail(key, "is missing");
    if (!v->is_number_integer() || v->get<int64_t>() <= 0) fail(key, "must be a positive integer, found " + v->dump());
    return v->get<int64_t>();
  }

  double positive_number(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) fail(key, "is missing");
    if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>())) {
      fail(key, "must be a positive number, found " + v->dump());
    }
    return v->get<double>();
  }

  std::string string(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) fail(key, "is missing");
    if (!v->is_string()) fail(key, "must be a string, found " + v->dump());
    return v->get<std::string>();
  }

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw Error(source_ + ": \"" + key + "\" " + problem);
  }

 private:
  const json& j_;
  const std::string& source_;
};

std::vector<int64_t> token_ids(const ConfigReader& r, const char* key) {
  const json* v = r.find(key);
  if (v == nullptr) return {};
  if (v->is_number_integer()) return {v->get<int64_t>()};
  std::vector<int64_t> ids;
  if (v->is_array()) {
    for (const json& e : *v) {
      if (!e.is_number_integer()) r.fail(key, "must hold integer token ids, found " + v->dump());
      ids.push_back(e.get<int64_t>());
    }
    return ids;
  }
  r.fail(key, "must be a token id or a list of them, found " + v->dump());
}

std::optional<WeightScaleConvention> read_quantization(const json& root, const std::string& source) {
  auto it = root.find("quantization_config");
  if (it == root.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) throw Error(source + ": \"quantization_config\" must be an object");
  ConfigReader q(*it, source);
  const std::string method = q.find("quant_method") ? q.string("quant_method") : "";
  if (method != "bitnet") {
    q.fail("quantization_config.quant_method",
           "is \"" + method + "\"; ternvk reads only BitNet (\"bitnet\") quantized models");
  }
  // transformers' BitNet integration defaults linear_class to "bitlinear" when absent; the
  // convention matters too much to guess, so require it.
  const std::string linear_class = q.string("linear_class");
  if (linear_class == "autobitlinear") return WeightScaleConvention::Multiply;
  if (linear_class == "bitlinear") return WeightScaleConvention::Divide;
  q.fail("quantization_config.linear_class",
         "is \"" + linear_class + "\"; expected \"autobitlinear\" (weight_scale multiplies) or "
         "\"bitlinear\" (weight_scale divides)");
}

}  // namespace

float effective_multiplier(float stored_weight_scale, WeightScaleConvention convention) {
  return convention == WeightScaleConvention::Multiply ? stored_weight_scale
                                                       : 1.0f / stored_weight_scale;
}

HfBitnetConfig parse_hf_config_json(const std::string& json_text, const std::string& source_name) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(source_name + ": not valid JSON: " + e.what());
  }
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
    if (!t->is_boolean()) r.fail("tie_word_embeddings", "must be true or false, found " + t->dump());
    c.tie_word_embeddings = t->get<bool>();
  }
  c.hidden_act = r.string("hidden_act");
  if (auto bos = token_ids(r, "bos_token_id"); !bos.empty()) c.bos_token_id = bos.front();
  c.eos_token_ids = token_ids(r, "eos_token_id");
  c.weight_scale_convention = read_quantization(root, source_name);
  if (c.weight_scale_convention) {
    ConfigReader q(root["quantization_config"], source_name);
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

HfBitnetConfig load_hf_config(const std::filesystem::path& path) {
  std::error_code ec;
  const auto file = std::filesystem::is_directory(path, ec) ? path / "config.json" : path;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error("cannot open '" + file.string() + "' (a Hugging Face model's config.json)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_hf_config_json(ss.str(), file.string());
}

}  // namespace ternvk

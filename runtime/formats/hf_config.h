// config.json of a Hugging Face BitNet model folder (BitNetForCausalLM), with the weight-scale
// convention from quantization_config resolved, since getting it backwards garbles the model.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ternvk {

// How a stored weight_scale relates to the effective weight (formats.md, transformers bitnet.py).
enum class WeightScaleConvention {
  Multiply,  // linear_class "autobitlinear" (2B4T): effective weight = q * weight_scale
  Divide,    // linear_class "bitlinear": effective weight = q / weight_scale
};

struct HfBitnetConfig {
  std::string architecture;  // architectures[0] if present, e.g. "BitNetForCausalLM"
  std::string model_type;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads when absent
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  double rms_norm_eps = 0;
  double rope_theta = 0;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;  // transformers' default when absent
  std::string hidden_act;            // "relu2" for 2B4T, "silu" for 1bitLLM
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // config may give one id or a list
  // Present when the linear weights are packed ternary (quant_method "bitnet").
  std::optional<WeightScaleConvention> weight_scale_convention;
  std::string quantization_mode;  // e.g. "offline"
};

// The multiplier to use for a stored weight_scale under `convention` (1/s for Divide).
float effective_multiplier(float stored_weight_scale, WeightScaleConvention convention);

HfBitnetConfig parse_hf_config_json(const std::string& json_text, const std::string& source_name);
// `path`: config.json itself or the model folder holding it.
HfBitnetConfig load_hf_config(const std::filesystem::path& path);

}  // namespace ternvk

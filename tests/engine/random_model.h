// Small random-weight BitNet models written by the tests themselves, the same weights in every
// supported format (GGUF TQ2_0 / TQ1_0 / I2_S / F32-ternary, and the Hugging Face safetensors
// folder), so the engine can be checked to give the same tokens from each.
#pragma once
#include <cstdint>
#include <filesystem>
#include <vector>

#include "runtime/engine/model_config.h"
#include "runtime/formats/ggml_types.h"
#include "runtime/formats/ternary_matrix.h"

namespace ternvk::test {

struct RandomModel {
  ModelConfig config;
  struct Layer {
    TernaryMatrix q, k, v, o, gate, up, down;
    std::vector<float> attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm;
  };
  std::vector<Layer> layers;
  std::vector<float> embedding;  // [vocab, dim], values exactly representable in bf16 and fp16
  std::vector<float> output_norm;
  std::vector<float> output;     // [vocab, dim] untied output head (GGUF only); empty: tied to the embedding
};

// A model of `config`'s shape with seeded random weights. Scales and norm weights are chosen
// exactly representable in fp16 and bf16 so every format stores identical values.
RandomModel make_random_model(const ModelConfig& config, uint64_t seed);

// `weight_type`: TQ2_0, TQ1_0, I2_S or F32 (ternary x scale as floats). Embedding in F16.
void write_gguf(const RandomModel& m, const std::filesystem::path& path, GgmlType weight_type);
// config.json + model.safetensors with the 2B4T packing (U8 + BF16 weight_scale, "autobitlinear").
void write_hf_folder(const RandomModel& m, const std::filesystem::path& dir);

// A small 2B4T-shaped config: every dimension a multiple of 256 so TQ1_0/TQ2_0 can store it.
ModelConfig small_2b4t_config();

// A fresh temporary folder under the build tree, removed by nobody (ctest runs are short-lived).
std::filesystem::path temp_dir(const std::string& name);

// The tests' usual start: a random model of `config` written as `<temp_dir(name)>/model.gguf`;
// returns the file's path. Tests that also need the weights call the three pieces themselves.
std::filesystem::path random_model_gguf(const ModelConfig& config, uint64_t seed, const std::string& name,
                                        GgmlType weight_type = GgmlType::I2_S);

}  // namespace ternvk::test

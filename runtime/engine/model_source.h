// Where a model's weights come from: a GGUF file or a Hugging Face safetensors folder. Tensors are
// decoded on demand, one at a time, so loading a large model never holds more than one expanded
// tensor in host memory.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine/model_config.h"
#include "runtime/formats/ternary_matrix.h"
#include "runtime/tokenizer/tokenizer.h"

namespace ternvk {

enum class Linear { Q, K, V, O, Gate, Up, Down };
enum class Norm { Attn, AttnSub, Ffn, FfnSub };
const char* linear_name(Linear l);
const char* norm_name(Norm n);

struct TensorSummary {
  std::string name;
  std::string type;
  std::vector<int64_t> shape;  // outermost first
  uint64_t bytes = 0;          // in the file
};

class ModelSource {
 public:
  virtual ~ModelSource() = default;
  const ModelConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  virtual std::string format() const = 0;  // "GGUF v3", "safetensors"

  virtual TernaryMatrix linear(int layer, Linear which) const = 0;  // [out, in]
  virtual std::vector<float> norm(int layer, Norm which) const = 0;
  virtual std::vector<float> output_norm() const = 0;
  virtual std::vector<uint16_t> embedding_f16() const = 0;          // [vocab, dim] fp16 bits
  // An untied output head [vocab, dim], when the file has one; nullopt means tied to the embedding.
  virtual std::optional<std::vector<uint16_t>> output_f16() const = 0;
  virtual std::unique_ptr<Tokenizer> tokenizer() const = 0;
  virtual std::vector<TensorSummary> tensor_summaries() const = 0;

 protected:
  ModelConfig config_;
  std::string path_;
};

// A .gguf file or a folder holding config.json + model.safetensors (or its index). Throws
// ternvk::Error naming the file and what is wrong or missing.
std::unique_ptr<ModelSource> open_model(const std::filesystem::path& path);

}  // namespace ternvk

// The shape and conventions of a BitNet b1.58 model, whatever file it came from.
#pragma once
#include <cstdint>
#include <string>

namespace ternvk {

enum class Architecture {
  BitNet2B4T,   // microsoft/bitnet-b1.58-2B-4T: squared-ReLU gated FFN, sub-norms
  BitNetLlama,  // 1bitLLM bitnet_b1_58 (llama.cpp arch `bitnet`): SiLU gated FFN, same sub-norms
};

struct ModelConfig {
  Architecture arch = Architecture::BitNet2B4T;
  std::string arch_name;    // as the file names it
  int dim = 0;              // hidden size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int ffn_dim = 0;
  int vocab = 0;
  int context = 0;          // maximum positions
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool rope_neox = true;    // both BitNet archs use the NeoX (rotate_half) form
  bool tied_head = true;    // the output head is the embedding table (no separate output tensor)

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  bool squared_relu() const { return arch == Architecture::BitNet2B4T; }
  // Throws ternvk::Error naming `source` when the shape is impossible or absurd.
  void validate(const std::string& source) const;
  std::string describe() const;
};

}  // namespace ternvk

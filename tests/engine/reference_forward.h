// A plain C++ float forward pass of both BitNet b1.58 graphs, written from the paper's and
// formats.md's definitions and independent of the GPU code: the oracle for the engine tests.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/engine/model_source.h"

namespace ternvk::test {

class ReferenceForward {
 public:
  // `int8_head`: the head (and the embedding when tied) rounded to int8 per row, w ~ q * max|w_row| / 127,
  // as the engine's --head int8 holds it.
  explicit ReferenceForward(const ModelSource& source, bool int8_head = false);
  // Logits [T][vocab] for every position of `tokens` (causal, positions 0..T-1).
  std::vector<std::vector<float>> logits(const std::vector<uint32_t>& tokens) const;
  const ModelConfig& config() const { return c_; }

 private:
  struct Layer {
    TernaryMatrix q, k, v, o, gate, up, down;
    std::vector<float> attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm;
  };
  ModelConfig c_;
  std::vector<Layer> layers_;
  std::vector<float> embedding_;  // [vocab, dim]
  std::vector<float> head_;       // [vocab, dim]
  std::vector<float> output_norm_;
};

// BitLinear on one token: int8 absmax activation quantization, ternary matmul, rescale.
std::vector<float> bitlinear(const TernaryMatrix& w, const std::vector<float>& x);
std::vector<float> rmsnorm(const std::vector<float>& x, const std::vector<float>& weight, float eps);
double cosine(const std::vector<float>& a, const std::vector<float>& b);
size_t argmax_index(const std::vector<float>& v);

}  // namespace ternvk::test

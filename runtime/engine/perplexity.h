// Perplexity over a text: tokenized once, scored in windows of `window` tokens moved by `stride`;
// within a window only the tokens not already scored by the previous window count, so each token
// is scored once with at least (window - stride) tokens of context (all of them in the first).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "runtime/engine/engine.h"

namespace ternvk {

struct PerplexityOptions {
  int window = 0;  // 0: the engine's context
  int stride = 0;  // 0: the window (no overlap)
  bool bos = true; // begin each window with BOS (not scored)
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  int64_t scored_tokens = 0;
  int window = 0;
  int stride = 0;
};

PerplexityResult compute_perplexity(Engine& engine, std::string_view text, const PerplexityOptions& options,
                                    const std::function<void(int, int, double)>& progress = {});
// The same over tokens already encoded (no BOS in `tokens`).
PerplexityResult compute_perplexity(Engine& engine, std::span<const uint32_t> tokens, const PerplexityOptions& options,
                                    const std::function<void(int, int, double)>& progress = {});

}  // namespace ternvk

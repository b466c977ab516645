#include "runtime/engine/perplexity.h"

#include <algorithm>
#include <cmath>

#include "runtime/core/error.h"

namespace ternvk {

PerplexityResult compute_perplexity(Engine& engine, std::string_view text, const PerplexityOptions& o,
                                    const std::function<void(int, int, double)>& progress) {
  const auto tokens = Engine::ids(engine.tokenizer().encode(text, false));
  return compute_perplexity(engine, tokens, o, progress);
}

PerplexityResult compute_perplexity(Engine& engine, std::span<const uint32_t> tokens, const PerplexityOptions& o,
                                    const std::function<void(int, int, double)>& progress) {
  Tokenizer& tok = engine.tokenizer();
  const bool bos = o.bos && tok.bos().has_value();
  PerplexityResult r;
  r.window = o.window > 0 ? o.window : engine.context() - (bos ? 1 : 0);
  r.stride = o.stride > 0 ? o.stride : r.window;
  if (r.window + (bos ? 1 : 0) > engine.context())
    throw Error("--window " + std::to_string(r.window) + " does not fit the context of " +
                std::to_string(engine.context()) + " tokens");
  if (r.stride > r.window) throw Error("--stride must not exceed the window");
  if (tokens.size() < 2) throw Error("the text has fewer than two tokens: nothing to score");

  double nll = 0;
  // Tokens [0, scored_until) are already scored; without BOS the first token has no context.
  int64_t scored_until = bos ? 0 : 1;
  const int n_windows = int((std::max<int64_t>(int64_t(tokens.size()) - r.window, 0) + r.stride - 1) / r.stride) + 1;
  int done = 0;
  for (int64_t start = 0;; start += r.stride) {
    const int64_t end = std::min<int64_t>(start + r.window, int64_t(tokens.size()));
    std::vector<uint32_t> input;
    if (bos) input.push_back(*tok.bos());
    input.insert(input.end(), tokens.begin() + start, tokens.begin() + end);
    engine.reset();
    const auto logits = engine.eval(input, true);
    const int offset = bos ? 1 : 0;  // row i of logits predicts input[i + 1]
    const int vocab = engine.config().vocab;
    for (int64_t j = std::max(start, scored_until); j < end; ++j) {
      // Token j sits at input index (j - start + offset); it is predicted by the row before it.
      const int64_t row = j - start + offset - 1;
      if (row < 0) continue;  // without BOS the window's first token has no context
      const float* l = &logits[size_t(row) * vocab];
      const float max_l = *std::max_element(l, l + vocab);
      double sum = 0;
      for (int v = 0; v < vocab; ++v) sum += std::exp(double(l[v]) - max_l);
      nll += -(double(l[tokens[j]]) - max_l - std::log(sum));
      ++r.scored_tokens;
    }
    scored_until = end;
    ++done;
    if (progress) progress(done, n_windows, std::exp(nll / std::max<int64_t>(r.scored_tokens, 1)));
    if (end == int64_t(tokens.size())) break;
  }
  r.mean_nll = nll / double(r.scored_tokens);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace ternvk

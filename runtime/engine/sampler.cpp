#include "runtime/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdio>
#include <unordered_map>

#include "runtime/core/error.h"

namespace ternvk {

namespace {

// A NaN logit (a model gone wrong) would break the ordering std::sort relies on: it ranks last.
float rank_of(float logit) { return std::isnan(logit) ? -std::numeric_limits<float>::infinity() : logit; }

[[noreturn]] void fail_no_usable_logit() {
  throw Error("every logit is NaN or -inf: the model produced no usable scores (non-finite weights or activations)");
}

}  // namespace

uint32_t argmax(std::span<const float> logits) {
  if (logits.empty()) throw Error("argmax of an empty row of logits");
  uint32_t best = 0;
  for (uint32_t i = 1; i < logits.size(); ++i)
    if (rank_of(logits[i]) > rank_of(logits[best])) best = i;
  if (rank_of(logits[best]) == -std::numeric_limits<float>::infinity()) fail_no_usable_logit();
  return best;
}

std::optional<SamplingParamError> invalid_sampling_param(const SamplingParams& p) {
  // Written so that NaN fails every range.
  const auto check = [](const char* field, const char* flag, float value, bool ok,
                        const char* range) -> std::optional<SamplingParamError> {
    if (ok) return std::nullopt;
    char got[32];
    std::snprintf(got, sizeof got, "%g", static_cast<double>(value));
    return SamplingParamError{field, flag, std::string("must be ") + range + " (got " + got + ")"};
  };
  const auto finite = [](float x) { return std::isfinite(x); };
  if (auto e = check("temperature", "--temp", p.temperature, finite(p.temperature), "a finite number")) return e;
  if (auto e = check("top_p", "--top-p", p.top_p, p.top_p > 0.0f && p.top_p <= 1.0f, "in (0, 1]")) return e;
  if (auto e = check("min_p", "--min-p", p.min_p, p.min_p >= 0.0f && p.min_p < 1.0f, "in [0, 1)")) return e;
  if (auto e = check("repeat_penalty", "--repeat-penalty", p.repeat_penalty,
                     p.repeat_penalty > 0.0f && finite(p.repeat_penalty), "a finite number > 0"))
    return e;
  if (auto e = check("frequency_penalty", "--frequency-penalty", p.frequency_penalty, finite(p.frequency_penalty),
                     "a finite number"))
    return e;
  if (auto e = check("presence_penalty", "--presence-penalty", p.presence_penalty, finite(p.presence_penalty),
                     "a finite number"))
    return e;
  return std::nullopt;
}

Sampler::Sampler(SamplingParams params) : params_(params), rng_(params.seed) {
  if (auto e = invalid_sampling_param(params_)) throw Error(e->flag + " " + e->rule);
}

uint32_t Sampler::sample(std::span<const float> logits, std::span<const uint32_t> history) {
  if (logits.empty()) throw Error("sampling from an empty row of logits");
  std::vector<Candidate> candidates(logits.size());
  for (uint32_t i = 0; i < logits.size(); ++i) candidates[i] = {i, logits[i]};

  // Penalties over the recent window, as llama.cpp applies them.
  const size_t window = params_.repeat_last_n < 0 ? history.size()
                                                  : std::min<size_t>(history.size(), params_.repeat_last_n);
  std::unordered_map<uint32_t, int> counts;
  for (size_t i = history.size() - window; i < history.size(); ++i) counts[history[i]]++;
  for (auto [id, n] : counts) {
    if (id >= candidates.size()) continue;
    float& l = candidates[id].logit;
    if (params_.repeat_penalty != 1.0f) l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    l -= n * params_.frequency_penalty + params_.presence_penalty;
  }
  return sample_candidates(std::move(candidates));
}

uint32_t Sampler::sample_candidates(std::vector<Candidate> c) {
  if (c.empty()) throw Error("sampling from no candidates");
  constexpr float kInf = std::numeric_limits<float>::infinity();
  for (Candidate& x : c) x.logit = rank_of(x.logit);
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (params_.greedy()) {
    const Candidate& best = *std::min_element(c.begin(), c.end(), by_logit);
    if (best.logit == -kInf) fail_no_usable_logit();
    return best.id;
  }

  size_t keep = c.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = params_.top_k;
    std::partial_sort(c.begin(), c.begin() + keep, c.end(), by_logit);
    c.resize(keep);
  } else {
    std::sort(c.begin(), c.end(), by_logit);
  }
  // Softmax with temperature. +inf logits share all the mass; -inf ones get none.
  const double max_logit = c[0].logit;
  if (max_logit == -kInf) fail_no_usable_logit();
  std::vector<double> p(c.size());
  double sum = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    p[i] = max_logit == kInf ? (c[i].logit == kInf ? 1.0 : 0.0)
                             : std::exp((static_cast<double>(c[i].logit) - max_logit) / params_.temperature);
    sum += p[i];
  }
  for (auto& v : p) v /= sum;
  // min-p: drop tokens less likely than min_p times the most likely one.
  size_t n = p.size();
  if (params_.min_p > 0.0f)
    while (n > 1 && p[n - 1] < params_.min_p * p[0]) --n;
  // top-p: the smallest prefix whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double mass = 0;
    for (size_t i = 0; i < n; ++i) {
      mass += p[i];
      if (mass >= params_.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += p[i];
  std::uniform_real_distribution<double> uniform(0.0, total);
  double r = uniform(rng_);
  for (size_t i = 0; i < n; ++i) {
    r -= p[i];
    if (r <= 0) return c[i].id;
  }
  return c[n - 1].id;
}

}  // namespace ternvk

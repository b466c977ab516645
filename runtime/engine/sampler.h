// Picks the next token from logits: greedy, or temperature with top-k, top-p, min-p, repetition /
// frequency / presence penalties, seeded. The same settings llama.cpp users know.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace ternvk {

struct SamplingParams {
  float temperature = 0.8f;      // <= 0: greedy
  int top_k = 40;                // <= 0: all tokens
  float top_p = 0.95f;           // 1: off
  float min_p = 0.05f;           // 0: off
  float repeat_penalty = 1.0f;   // 1: off (llama.cpp semantics: divide positive logits, multiply negative)
  int repeat_last_n = 64;        // how many recent tokens the penalties look at
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  uint64_t seed = 0xC0FFEE;

  bool greedy() const { return temperature <= 0.0f; }
  // Whether sampling needs every logit (penalties or sampling over the whole vocabulary), rather
  // than the top candidates the GPU can select.
  bool has_penalties() const {
    return repeat_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f;
  }
  bool needs_all_logits() const { return has_penalties() || (!greedy() && top_k <= 0); }
};

struct Candidate {
  uint32_t id;
  float logit;
};

// The one definition of what the sampler accepts: Sampler's constructor refuses anything else, and
// the server's request schema checks requests with the same function.
struct SamplingParamError {
  std::string field;  // as in SamplingParams and OpenAI request bodies: "top_p"
  std::string flag;   // the CLI's: "--top-p"
  std::string rule;   // "must be in (0, 1] (got 0)"
};
std::optional<SamplingParamError> invalid_sampling_param(const SamplingParams& params);

class Sampler {
 public:
  // Throws ternvk::Error naming the flag and the rule invalid_sampling_param found broken.
  explicit Sampler(SamplingParams params);
  const SamplingParams& params() const { return params_; }

  // Samples from a full row of logits; `history` holds the tokens seen so far (for penalties).
  uint32_t sample(std::span<const float> logits, std::span<const uint32_t> history);
  // Samples from candidates the GPU already selected (the top-k, sorted or not). Penalties are
  // not applied here: callers use the full-logits path when needs_all_logits().
  uint32_t sample_candidates(std::vector<Candidate> candidates);
  void reseed(uint64_t seed) { rng_.seed(seed); }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// The index of the largest logit, lowest index on ties (what torch.argmax and llama.cpp do).
uint32_t argmax(std::span<const float> logits);

}  // namespace ternvk

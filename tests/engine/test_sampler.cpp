#include <doctest/doctest.h>

#include <limits>
#include <map>

#include "runtime/core/error.h"
#include "runtime/engine/sampler.h"

using namespace ternvk;

TEST_CASE("greedy sampling takes the largest logit, lowest index on ties") {
  Sampler s({.temperature = 0});
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  CHECK(s.sample(logits, {}) == 1);
  CHECK(argmax(logits) == 1);
}

TEST_CASE("repetition penalty follows llama.cpp: divide positive, multiply negative") {
  Sampler s({.temperature = 0, .repeat_penalty = 2.0f});
  std::vector<float> logits = {3.0f, 2.0f, -0.1f};
  std::vector<uint32_t> history = {0};
  CHECK(s.sample(logits, history) == 1);  // 3/2 = 1.5 < 2
}

TEST_CASE("top-k 1 is greedy and a fixed seed reproduces a sequence") {
  std::vector<float> logits = {0.1f, 0.3f, 0.2f, 0.25f};
  Sampler k1({.temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .min_p = 0.0f});
  for (int i = 0; i < 20; ++i) CHECK(k1.sample(logits, {}) == 1);
  Sampler a({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 7});
  Sampler b({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 7});
  std::map<uint32_t, int> seen;
  for (int i = 0; i < 200; ++i) {
    uint32_t x = a.sample(logits, {});
    CHECK(x == b.sample(logits, {}));
    seen[x]++;
  }
  CHECK(seen.size() == 4);  // temperature 1 over near-equal logits visits every token
}

TEST_CASE("top-p and min-p cut the tail") {
  std::vector<float> logits = {10.0f, 9.9f, 0.0f, -5.0f};
  Sampler p({.temperature = 1.0f, .top_k = 0, .top_p = 0.5f, .min_p = 0.0f, .seed = 1});
  for (int i = 0; i < 50; ++i) CHECK(p.sample(logits, {}) == 0);
  Sampler m({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.5f, .seed = 1});
  for (int i = 0; i < 50; ++i) CHECK(m.sample(logits, {}) <= 1);
}

TEST_CASE("invalid sampling settings are clear errors") {
  CHECK_THROWS_AS(Sampler({.top_p = 0.0f}), Error);
  CHECK_THROWS_AS(Sampler({.min_p = 1.5f}), Error);
  CHECK_THROWS_AS(Sampler({.repeat_penalty = 0.0f}), Error);
  Sampler s({});
  CHECK_THROWS_AS(s.sample({}, {}), Error);
}

TEST_CASE("NaN and infinite logits neither break the ordering nor get picked over real scores") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // NaN first: with NaN compared as a number, std::sort's ordering is undefined and the old greedy
  // scan kept index 0 (nothing compares greater than NaN).
  std::vector<float> logits = {nan, 1.0f, nan, 3.0f, -inf, 2.0f, nan};
  CHECK(argmax(logits) == 3);
  Sampler greedy({.temperature = 0});
  CHECK(greedy.sample(logits, {}) == 3);
  for (int top_k : {0, 3, 40}) {
    Sampler s({.temperature = 1.0f, .top_k = top_k, .top_p = 1.0f, .min_p = 0.0f, .seed = 3});
    std::map<uint32_t, int> seen;
    for (int i = 0; i < 300; ++i) seen[s.sample(logits, {})]++;
    CAPTURE(top_k);
    for (const auto& [id, n] : seen) CHECK((id == 1 || id == 3 || id == 5));  // never a NaN or -inf token
    CHECK(seen.count(3) == 1);
  }
  // +inf outranks every finite logit and takes all the probability (shared among +inf ones).
  const std::vector<float> with_inf = {0.0f, inf, 5.0f, inf, nan};
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 9});
  std::map<uint32_t, int> seen;
  for (int i = 0; i < 200; ++i) seen[s.sample(with_inf, {})]++;
  CHECK(seen.size() == 2);
  CHECK(seen[1] > 0);
  CHECK(seen[3] > 0);
  // The GPU's candidates (sample_candidates) get the same treatment.
  Sampler c({.temperature = 0.7f, .top_k = 2, .top_p = 0.9f, .min_p = 0.0f, .seed = 1});
  for (int i = 0; i < 50; ++i) CHECK(c.sample_candidates({{7, nan}, {8, 0.5f}, {9, nan}}) == 8);
  // Nothing usable at all: a clear error, not an arbitrary token.
  const std::vector<float> broken = {nan, nan, -inf};
  CHECK_THROWS_WITH_AS(argmax(broken), doctest::Contains("every logit is NaN or -inf"), Error);
  CHECK_THROWS_WITH_AS(greedy.sample(broken, {}), doctest::Contains("every logit is NaN"), Error);
  CHECK_THROWS_WITH_AS(s.sample(broken, {}), doctest::Contains("every logit is NaN"), Error);
  // NaN settings fail their checks instead of slipping past comparisons.
  CHECK_THROWS_AS(Sampler({.top_p = nan}), Error);
  CHECK_THROWS_AS(Sampler({.min_p = nan}), Error);
  CHECK_THROWS_AS(Sampler({.repeat_penalty = nan}), Error);
  CHECK_THROWS_AS(Sampler({.frequency_penalty = inf}), Error);
}

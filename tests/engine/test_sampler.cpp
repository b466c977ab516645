#include <doctest/doctest.h>

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

// The split trial's bookkeeping (SplitRuleTrial), from given times: the rotating order, the medians,
// the argued rule kept unless another wins by the margin, and dropped rules never kept.
#include <doctest/doctest.h>

#include "runtime/engine/split_rule_trial.h"

using namespace ternvk;

TEST_CASE("the split trial rotates the order in which each round runs its rules") {
  const SplitRuleTrial trial(3);
  CHECK(trial.order(0) == std::vector<size_t>{0, 1, 2});
  CHECK(trial.order(1) == std::vector<size_t>{1, 2, 0});
  CHECK(trial.order(2) == std::vector<size_t>{2, 0, 1});
  CHECK(trial.order(3) == std::vector<size_t>{0, 1, 2});
}

TEST_CASE("the split trial runs fewer timed rounds where a pass is slow, never fewer than its minimum") {
  CHECK(SplitRuleTrial::timed_rounds(6, 0.0014) == SplitRuleTrial::kTimedRounds);  // 2B4T on an H200
  CHECK(SplitRuleTrial::timed_rounds(6, 0.0) == SplitRuleTrial::kTimedRounds);     // too short for the clock
  CHECK(SplitRuleTrial::timed_rounds(5, 0.02) == 7);                                // 0.75 s / 0.1 s a round
  CHECK(SplitRuleTrial::timed_rounds(6, 0.5) == SplitRuleTrial::kMinRounds);
}

TEST_CASE("the split trial keeps the fastest rule only where it beats the argued rule by the margin") {
  auto trial_of = [](const std::vector<std::vector<double>>& times) {
    SplitRuleTrial t(times.size());
    for (size_t c = 0; c < times.size(); ++c)
      for (double s : times[c]) t.add(c, s);
    return t;
  };
  // Medians 1.0, 0.95, 0.90: the fastest wins.
  SplitRuleTrial t = trial_of({{1.0, 1.1, 0.9}, {0.95, 0.94, 0.99}, {0.90, 5.0, 0.80}});
  CHECK(t.median(0) == doctest::Approx(1.0));
  CHECK(t.median(2) == doctest::Approx(0.90));
  CHECK(t.best() == 2);
  CHECK(t.ratio(1) == "0.950x");
  // A dropped rule is never kept, however fast.
  t.drop(2);
  CHECK(t.ratio(2) == "other bits");
  CHECK(t.best() == 1);
  // Within the margin (0.99 > 0.98): the argued rule stays.
  CHECK(trial_of({{1.0, 1.0}, {0.99, 0.99}}).best() == 0);
  CHECK(trial_of({{1.0, 1.0}, {0.98, 0.98}}).best() == 1);
  // An even count's median is the mean of the middle two; no times: untimed, the argued rule stays.
  CHECK(trial_of({{1.0, 2.0, 3.0, 10.0}}).median(0) == doctest::Approx(2.5));
  const SplitRuleTrial empty(2);
  CHECK(empty.best() == 0);
  CHECK(empty.ratio(1) == "untimed");
}

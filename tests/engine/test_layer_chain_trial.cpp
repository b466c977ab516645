// The chained layers' trial bookkeeping (LayerChainTrial): which form runs first, when it decides, and
// what it keeps, from given times.
#include <doctest/doctest.h>

#include <string>

#include "runtime/engine/layer_chain_trial.h"

using namespace ternvk;

TEST_CASE("the layer-chain trial alternates which form runs first and skips the first pair's times") {
  LayerChainTrial trial;
  CHECK_FALSE(trial.chained_first());  // the check's pair: unchained first
  trial.add(1.0, 0.1);                 // not timed: its recordings' first replays
  CHECK(trial.timed_pairs() == 0);
  CHECK(trial.median_ratio() == 0);
  CHECK(trial.chained_first());
  trial.add(1.0, 0.5);
  CHECK(trial.timed_pairs() == 1);
  CHECK_FALSE(trial.chained_first());
  trial.add(0, 0.5);  // a time the clock could not resolve says nothing
  CHECK(trial.timed_pairs() == 1);
  CHECK(trial.median_ratio() == doctest::Approx(0.5));
}

TEST_CASE("the layer-chain trial decides after its timed pairs, keeping the chain only for a clear win") {
  auto run = [](double chained_over_unchained, double outlier) {
    LayerChainTrial trial;
    trial.add(1, 1);
    for (int i = 0; i < LayerChainTrial::kTimedPairs; ++i) {
      CHECK_FALSE(trial.decided());
      CHECK_FALSE(trial.keep_chain());
      // One pair far off either way: the median holds.
      trial.add(2e-3, 2e-3 * (i == 3 ? outlier : chained_over_unchained));
    }
    CHECK(trial.decided());
    return trial;
  };
  const LayerChainTrial win = run(0.9, 5.0);
  CHECK(win.median_ratio() == doctest::Approx(0.9));
  CHECK(win.keep_chain());
  CHECK(win.summary().find("0.900x") != std::string::npos);
  CHECK(win.summary().find("median of 8 pairs") != std::string::npos);
  CHECK_FALSE(run(0.99, 0.1).keep_chain());  // within noise: not worth resting on launch order
  CHECK_FALSE(run(1.2, 0.5).keep_chain());
  CHECK(run(LayerChainTrial::kKeepRatio, 9).keep_chain());
}

TEST_CASE("the layer-chain trial says where a chain could not win by its margin at all") {
  // 2B4T on an H200 at 566ef0c's speed: 1.41 ms a token, 154 dispatches, up to 1.54 ms of gaps.
  CHECK(LayerChainTrial::could_win(0.00141, 154));
  // A large model on a small GPU: 100 ms a token, 122 dispatches: at most 1.2 ms, under 2 ms.
  CHECK_FALSE(LayerChainTrial::could_win(0.1, 122));
  CHECK(LayerChainTrial::could_win(0.1, 122, 20e-6));  // 2.44 ms
  CHECK(LayerChainTrial::could_win(0.0, 1));          // too short for the clock: time it
}

TEST_CASE("the layer-chain trial's median of an even count is the mean of the middle two") {
  LayerChainTrial trial;
  trial.add(1, 1);
  for (double r : {0.8, 1.0, 0.9, 1.1}) trial.add(1, r);
  CHECK(trial.median_ratio() == doctest::Approx(0.95));
}

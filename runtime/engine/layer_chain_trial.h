// Whether a stage keeps its layers chained, measured on the device itself (StageOptions::chain_layers
// Measure, and Auto on GPUs). Chaining rests on how a device launches dispatches and pays off only where
// a dependent dispatch's launch costs more than the shader's own wait, which no device property says. So
// the first one-token steps run twice from the same inputs, without and with the chain, in alternating
// order: both runs must give the same bits, and after kTimedPairs timed pairs the stage keeps the chain
// only if the median of chained / unchained time is at most kKeepRatio. This class is the bookkeeping;
// the stage runs the steps.
#pragma once
#include <string>
#include <vector>

#include "runtime/engine/trial_score.h"

namespace ternvk {

class LayerChainTrial {
 public:
  // Pairs timed before deciding. The first pair of a trial is the bit check alone: its recordings'
  // first replays may pay one-time costs that later steps do not.
  static constexpr int kTimedPairs = 8;
  // The chain must win by the trials' margin (2%): below it the choice is noise, and the unchained pass
  // rests on nothing outside Vulkan's promises.
  static constexpr double kKeepRatio = kTrialKeepRatio;
  // The most a chain saves a dependent dispatch: the gap between one dispatch's drain and the next one's
  // launch (the H200 averaged ~8.8 us a fused dispatch, its work included). Where a pass is so long
  // that its dispatches' gaps together are under the margin (a large model on a small GPU), the chain
  // cannot win, and an automatic trial stops after its first timed pair instead of spending 8.
  static constexpr double kMaxGapSeconds = 10e-6;
  static bool could_win(double unchained_seconds, size_t dispatches, double max_gap_seconds = kMaxGapSeconds) {
    return double(dispatches) * max_gap_seconds >= (1 - kKeepRatio) * unchained_seconds;
  }

  // Whether the chained run goes first in the next pair (every other pair, so that neither always
  // meets the caches the other warmed).
  bool chained_first() const { return pairs_ % 2 == 1; }
  // A pair's times in seconds, the same work run both ways.
  void add(double unchained_seconds, double chained_seconds);
  bool decided() const { return timed_pairs() >= kTimedPairs; }
  bool keep_chain() const { return decided() && median_ratio() <= kKeepRatio; }
  int timed_pairs() const { return int(ratios_.size()); }
  int pairs() const { return pairs_; }  // every pair added, the check's included
  // The median of chained / unchained over the timed pairs (0 before any).
  double median_ratio() const;
  // What the trial found, for people: "chained 0.912x the unchained time (median of 8 pairs; kept at
  // 0.98x or less)".
  std::string summary() const;

 private:
  int pairs_ = 0;
  std::vector<double> ratios_;
};

}  // namespace ternvk

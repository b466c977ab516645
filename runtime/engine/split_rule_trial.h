// Which split rule a stage's fused layers keep, measured on the device itself (StageOptions::
// matrix_splits Measure, and Auto on GPUs). The rule that splits each matrix to fill the device (two
// workgroups a compute unit, 8 loads in flight a lane) is argued from latency and bandwidth figures,
// not measured; the best values depend on the device's schedulers and caches, which no property
// reports. Every rule gives the same bits, so the stage can time them: its one-token pass, recorded
// under each candidate rule, runs once for the bit check and then kTimedRounds times in rotating
// order. The rule with the lowest median time is kept if it beats the argued rule's by kKeepRatio;
// otherwise the argued rule stays. This class is the bookkeeping; the stage runs the passes.
#pragma once
#include <string>
#include <vector>

#include "runtime/engine/trial_score.h"

namespace ternvk {

class SplitRuleTrial {
 public:
  static constexpr int kTimedRounds = 8;
  // Where a pass is slow (a large model on a small GPU), fewer rounds, down to kMinRounds, so that the
  // timed rounds take about kTimedBudgetSeconds of the load: the trial must not add seconds to it.
  static constexpr int kMinRounds = 3;
  static constexpr double kTimedBudgetSeconds = 0.75;
  static int timed_rounds(size_t candidates, double pass_seconds);
  // Another rule must beat the argued one by the trials' margin (2%).
  static constexpr double kKeepRatio = kTrialKeepRatio;
  // Before the timed rounds the argued rule's pass replays for this long (at most kWarmupPasses times):
  // a GPU idle while the model loaded raises its clocks only under load, and the first rounds would
  // otherwise time the candidates at clocks the later ones do not see.
  static constexpr double kWarmupSeconds = 0.05;
  static constexpr int kWarmupPasses = 200;

  // Candidate 0 is the argued rule.
  explicit SplitRuleTrial(size_t candidates) : seconds_(candidates) {}
  size_t candidates() const { return seconds_.size(); }
  // The order in which round `round` runs the candidates: rotated each round, so that none always
  // follows the same one (caches, clocks rising under load).
  std::vector<size_t> order(int round) const;
  // One timed run of candidate `c`.
  void add(size_t c, double seconds) { seconds_.at(c).push_back(seconds); }
  // A candidate that gave other bits than candidate 0 (never kept, not timed further).
  void drop(size_t c) { dropped_.push_back(c); }
  bool dropped(size_t c) const;
  bool any_dropped() const { return !dropped_.empty(); }
  double median(size_t c) const;  // 0 without a timed run
  // The candidate to keep: the fastest by median if it is at most kKeepRatio of candidate 0's, else 0.
  size_t best() const;
  // Candidate c's median relative to candidate 0's, for people: "0.962x", "other bits" (dropped), "untimed".
  std::string ratio(size_t c) const;

 private:
  std::vector<std::vector<double>> seconds_;
  std::vector<size_t> dropped_;
};

}  // namespace ternvk

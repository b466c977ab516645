#include "runtime/engine/split_rule_trial.h"

#include <algorithm>
#include <cstdio>

namespace ternvk {

int SplitRuleTrial::timed_rounds(size_t candidates, double pass_seconds) {
  const double round_seconds = double(candidates) * pass_seconds;
  if (!(round_seconds > 0) || round_seconds * kTimedRounds <= kTimedBudgetSeconds) return kTimedRounds;
  return std::max(kMinRounds, int(kTimedBudgetSeconds / round_seconds));
}

std::vector<size_t> SplitRuleTrial::order(int round) const {
  std::vector<size_t> out(candidates());
  for (size_t i = 0; i < out.size(); ++i) out[i] = (i + size_t(round)) % out.size();
  return out;
}

bool SplitRuleTrial::dropped(size_t c) const { return std::find(dropped_.begin(), dropped_.end(), c) != dropped_.end(); }

double SplitRuleTrial::median(size_t c) const { return median_of(seconds_.at(c)); }

size_t SplitRuleTrial::best() const {
  const double own = median(0);
  if (own <= 0) return 0;
  size_t best = 0;
  for (size_t c = 1; c < candidates(); ++c)
    if (!dropped(c) && median(c) > 0 && median(c) < median(best)) best = c;
  return best != 0 && median(best) <= kKeepRatio * own ? best : 0;
}

std::string SplitRuleTrial::ratio(size_t c) const {
  if (dropped(c)) return "other bits";
  if (median(0) <= 0 || median(c) <= 0) return "untimed";
  char text[32];
  std::snprintf(text, sizeof text, "%.3fx", median(c) / median(0));
  return text;
}

}  // namespace ternvk

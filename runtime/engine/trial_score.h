// How the device trials (LayerChainTrial, SplitRuleTrial) score their timings: the median of a few runs,
// and the margin by which a challenger must beat what runs without a trial.
#pragma once
#include <algorithm>
#include <vector>

namespace ternvk {

// The challenger's median time must be at most this fraction of the default's: a 2% win or more. Below
// that the choice is within a GPU's run-to-run noise.
inline constexpr double kTrialKeepRatio = 0.98;

// The middle value, or the mean of the middle two for an even count; 0 for none.
inline double median_of(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

}  // namespace ternvk

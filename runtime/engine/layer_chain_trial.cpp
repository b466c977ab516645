#include "runtime/engine/layer_chain_trial.h"

#include <algorithm>
#include <cstdio>

namespace ternvk {

void LayerChainTrial::add(double unchained_seconds, double chained_seconds) {
  if (pairs_++ == 0) return;  // the check's pair
  // A run too short for the clock says nothing about either.
  if (unchained_seconds <= 0 || chained_seconds <= 0) return;
  ratios_.push_back(chained_seconds / unchained_seconds);
}

double LayerChainTrial::median_ratio() const {
  if (ratios_.empty()) return 0;
  std::vector<double> r = ratios_;
  const size_t mid = r.size() / 2;
  std::nth_element(r.begin(), r.begin() + mid, r.end());
  if (r.size() % 2) return r[mid];
  const double upper = r[mid];
  return (*std::max_element(r.begin(), r.begin() + mid) + upper) / 2;
}

std::string LayerChainTrial::summary() const {
  char text[128];
  std::snprintf(text, sizeof text, "chained %.3fx the unchained time (median of %d pairs; kept at %.2fx or less)",
                median_ratio(), timed_pairs(), kKeepRatio);
  return text;
}

}  // namespace ternvk

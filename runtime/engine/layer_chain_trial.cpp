#include "runtime/engine/layer_chain_trial.h"

#include <cstdio>

namespace ternvk {

void LayerChainTrial::add(double unchained_seconds, double chained_seconds) {
  if (pairs_++ == 0) return;  // the check's pair
  // A run too short for the clock says nothing about either.
  if (unchained_seconds <= 0 || chained_seconds <= 0) return;
  ratios_.push_back(chained_seconds / unchained_seconds);
}

double LayerChainTrial::median_ratio() const { return median_of(ratios_); }

std::string LayerChainTrial::summary() const {
  char text[128];
  std::snprintf(text, sizeof text, "chained %.3fx the unchained time (median of %d pairs; kept at %.2fx or less)",
                median_ratio(), timed_pairs(), kKeepRatio);
  return text;
}

}  // namespace ternvk

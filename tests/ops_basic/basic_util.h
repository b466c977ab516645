// Helpers shared by the basic-op tests: seeded random data and float comparison with a stated
// tolerance (|got - want| <= abs + rel * |want|).
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>

#include "common/random.h"
#include <vector>

namespace ternvk::test {

// Returns the number of mismatches and reports the first one.
inline size_t count_mismatches(const std::vector<float>& got, const std::vector<float>& want, double abs_tol,
                               double rel_tol) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    const bool same_special = (std::isnan(g) && std::isnan(w)) || (std::isinf(w) && g == w);
    if (same_special) continue;
    if (!(std::abs(g - w) <= abs_tol + rel_tol * std::abs(w))) {
      if (bad == 0) MESSAGE("first mismatch at " << i << ": got " << g << ", want " << w);
      ++bad;
    }
  }
  return bad;
}

}  // namespace ternvk::test

// What the kernel benchmarks share: cheap deterministic data, the process's CPU time, and GPU time
// per call.
#pragma once
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/device/recording.h"

namespace ternvk::bench {

// A fast deterministic generator (xorshift): benchmark data need not be high quality, only cheap.
struct Rng {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s >> 11);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * float(next() & 0xffffff) / float(0x1000000); }
};

// User + system CPU seconds of this process (CPU devices run shaders on its threads).
inline double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Timing {
  double median_us = 0;
  double min_us = 0;
  double cpu_us = 0;  // process CPU time per call during the measured submit (CPU devices run the
                      // shaders on this process's threads: a contention-free figure of the work)
};

// Records `calls` calls (call(rec, i) for call i, each the same number of dispatches), submits twice
// (warm-up, measured) and returns the per-call GPU time.
inline Timing time_calls(Device& dev, int calls, const std::function<void(Recording&, int)>& call) {
  Recording rec(dev, {.timestamps = true});
  size_t per_call = 0;
  for (int i = 0; i < calls; ++i) {
    const size_t before = rec.dispatch_count();
    call(rec, i);
    per_call = rec.dispatch_count() - before;
  }
  rec.submit_and_wait();
  const double cpu0 = cpu_seconds();
  rec.submit_and_wait();
  const double cpu = (cpu_seconds() - cpu0) * 1e6 / calls;
  const auto t = rec.timings();
  if (t.size() != per_call * calls) throw Error("benchmark: timestamps missing (" + std::to_string(t.size()) + ")");
  std::vector<double> us;
  for (int i = 0; i < calls; ++i) {
    double sum = 0;
    for (size_t j = 0; j < per_call; ++j) sum += t[i * per_call + j].microseconds;
    us.push_back(sum);
  }
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us.front(), cpu};
}

// The same call `calls` times.
inline Timing time_calls(Device& dev, int calls, const std::function<void(Recording&)>& call) {
  return time_calls(dev, calls, [&](Recording& rec, int) { call(rec); });
}

}  // namespace ternvk::bench

// What the kernel benchmarks share: cheap deterministic data and the process's CPU time.
#pragma once
#include <sys/resource.h>

#include <cstdint>

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

}  // namespace ternvk::bench

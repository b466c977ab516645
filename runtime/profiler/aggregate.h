// Per-shader (or per-op) aggregation of per-dispatch GPU times: calls, total / mean / min / max time,
// share of the total, and the work each command's op stated: bytes moved, GB/s and GMAC/s.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "runtime/device/recording.h"
#include "runtime/profiler/pass_record.h"

namespace ternvk::profiler {

struct ShaderStats {
  std::string label;
  std::string kind;
  uint64_t calls = 0;
  double total_us = 0, min_us = 0, max_us = 0;
  double bytes = 0, macs = 0;  // attributed work, summed over calls
  bool work_known = false;     // every call of this label had its work attributed
  double share = 0;            // of the total time of all labels
  double mean_us() const { return calls ? total_us / double(calls) : 0; }
  double gb_per_s() const { return total_us > 0 ? bytes / (total_us * 1e3) : 0; }
  double gmac_per_s() const { return total_us > 0 ? macs / (total_us * 1e3) : 0; }
};

class Aggregator {
 public:
  // One replay's commands, by shader or (by_op) by op: each command's time and stated work.
  void add_pass(std::span<const TimedCommand> commands, bool by_op = false);

  // Every label, by total time (largest first), shares filled in.
  std::vector<ShaderStats> rows() const;
  double total_us() const { return total_us_; }
  uint64_t passes() const { return passes_; }
  uint64_t dispatches() const { return dispatches_; }

 private:
  struct Acc {
    std::string kind;
    uint64_t calls = 0, calls_with_work = 0;
    double total = 0, min = 0, max = 0, bytes = 0, macs = 0;
  };
  std::map<std::string, Acc> by_label_;
  double total_us_ = 0;
  uint64_t passes_ = 0, dispatches_ = 0;
};

}  // namespace ternvk::profiler

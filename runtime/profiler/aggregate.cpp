#include "runtime/profiler/aggregate.h"

#include <algorithm>

namespace ternvk::profiler {

void Aggregator::add_pass(std::span<const TimedCommand> commands, bool by_op) {
  ++passes_;
  for (const auto& c : commands) {
    ++dispatches_;
    total_us_ += c.microseconds;
    Acc& a = by_label_[by_op ? c.op : c.shader];
    if (a.calls == 0) {
      a.kind = kind_of(c.shader);
      a.min = a.max = c.microseconds;
    }
    ++a.calls;
    a.total += c.microseconds;
    a.min = std::min(a.min, c.microseconds);
    a.max = std::max(a.max, c.microseconds);
    if (c.work) {
      a.bytes += c.work->bytes;
      a.macs += c.work->macs;
      ++a.calls_with_work;
    }
  }
}

std::vector<ShaderStats> Aggregator::rows() const {
  std::vector<ShaderStats> out;
  for (const auto& [label, a] : by_label_) {
    ShaderStats s;
    s.label = label;
    s.kind = a.kind;
    s.calls = a.calls;
    s.total_us = a.total;
    s.min_us = a.min;
    s.max_us = a.max;
    s.bytes = a.bytes;
    s.macs = a.macs;
    s.work_known = a.calls > 0 && a.calls_with_work == a.calls;
    s.share = total_us_ > 0 ? a.total / total_us_ : 0;
    out.push_back(std::move(s));
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.total_us > y.total_us; });
  return out;
}

}  // namespace ternvk::profiler

#include "runtime/profiler/aggregate.h"

#include <algorithm>

namespace ternvk::profiler {

void Aggregator::add_pass(std::span<const DispatchTiming> timings, const PassWork* work) {
  ++passes_;
  std::map<std::string, uint64_t> count_by_kind;
  for (const auto& t : timings) ++count_by_kind[kind_of(t.label)];
  for (const auto& t : timings) {
    ++dispatches_;
    total_us_ += t.microseconds;
    Acc& a = by_label_[t.label];
    if (a.calls == 0) {
      a.kind = kind_of(t.label);
      a.min = a.max = t.microseconds;
    }
    ++a.calls;
    a.total += t.microseconds;
    a.min = std::min(a.min, t.microseconds);
    a.max = std::max(a.max, t.microseconds);
    if (work) {
      if (auto it = work->find(a.kind); it != work->end()) {
        const double n = double(count_by_kind[a.kind]);
        a.bytes += it->second.bytes / n;
        a.macs += it->second.macs / n;
        ++a.calls_with_work;
      }
    }
  }
  if (work)
    for (const auto& [kind, wk] : *work)
      if (!count_by_kind.count(kind) && (wk.bytes > 0 || wk.macs > 0)) ++unmatched_[kind];
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

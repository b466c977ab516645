#include "runtime/profiler/pipeline.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "runtime/core/error.h"

namespace ternvk::profiler {

std::vector<double> handover_microseconds(std::span<const QueueEvent> earlier, std::span<const QueueEvent> later) {
  std::vector<QueueEvent> waits, submits;
  // Staging transfers (the hand-over itself on discrete GPUs) fall inside the gap, not at its ends.
  for (const auto& e : earlier)
    if (e.kind == QueueEvent::Wait && !e.transfer) waits.push_back(e);
  for (const auto& e : later)
    if (e.kind == QueueEvent::Submit && !e.transfer) submits.push_back(e);
  if (waits.size() != submits.size())
    throw Error("pipeline profile: the earlier stage waited " + std::to_string(waits.size()) +
                " times but the later one submitted " + std::to_string(submits.size()) +
                " times; expected one submit and one wait per stage and step");
  std::vector<double> out;
  for (size_t k = 0; k < waits.size(); ++k)
    out.push_back(std::chrono::duration<double, std::micro>(submits[k].begin - waits[k].end).count());
  return out;
}

HandoverSummary summarize(std::span<const double> us) {
  HandoverSummary s;
  s.steps = us.size();
  if (us.empty()) return s;
  double total = 0;
  for (double v : us) total += v;
  s.mean_us = total / double(us.size());
  std::vector<double> sorted(us.begin(), us.end());
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  s.median_us = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  s.min_us = *std::min_element(us.begin(), us.end());
  s.max_us = *std::max_element(us.begin(), us.end());
  return s;
}

}  // namespace ternvk::profiler

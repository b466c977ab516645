// A model split over devices runs each step stage after stage, handing the hidden state from one
// device to the next through the host. These helpers turn the devices' queue logs (host clock,
// Device::record_queue_events) into the hand-over times between stages: the bubble in which
// neither neighbouring device works.
#pragma once
#include <span>
#include <vector>

#include "runtime/device/device.h"

namespace ternvk::profiler {

// Hand-over times (microseconds) from stage i to stage i+1, one per step: from the end of the
// wait for stage i's k-th submit to the k-th submit of stage i+1 (reading the hidden state back,
// writing it to the next device, and that stage's per-step parameters). `earlier` and `later` are
// the two devices' logs over the same steps, one recorded-pass submit and wait per step each
// (staging transfers, QueueEvent::transfer, are part of the gap and skipped). Throws
// ternvk::Error when the logs do not pair up (a step with more than one submit per stage).
std::vector<double> handover_microseconds(std::span<const QueueEvent> earlier, std::span<const QueueEvent> later);

struct HandoverSummary {
  size_t steps = 0;
  double mean_us = 0, median_us = 0, min_us = 0, max_us = 0;
};
HandoverSummary summarize(std::span<const double> us);

}  // namespace ternvk::profiler

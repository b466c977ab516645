// Arrival counters of the kernels whose last workgroup to finish does the follow-up work (the
// flash-decode merge, the attention inside qkv, the argmax inside the head): each dispatch leaves
// them at 0, so they need zeroing once, before the first.
#pragma once
#include "runtime/device/device.h"
#include "runtime/device/memory.h"

namespace ternvk::ops {

// Sets `range` (range.size bytes, a multiple of 4) to 0 now: one submit that waits, ordered after
// all work already submitted to the device's queue (a replay that may still use the counters) and
// before all work submitted later.
void zero_counters_now(Device& device, BufferRange range);

}  // namespace ternvk::ops

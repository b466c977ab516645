// The device's achievable memory bandwidth, measured in the run that is being profiled (the
// reference for "% of peak" in the profiler): a vkCmdCopyBuffer of a large buffer and a compute
// copy kernel (shaders/bandwidth_copy.comp), each timed with GPU timestamps, best of a few runs.
#pragma once
#include <cstdint>

#include "runtime/device/device.h"

namespace ternvk::profiler {

struct Bandwidth {
  uint64_t buffer_bytes = 0;
  double copy_gb_per_s = 0;    // vkCmdCopyBuffer: 2 * size / time (read + write)
  double shader_gb_per_s = 0;  // bandwidth_copy.comp: the same
  double peak() const { return copy_gb_per_s > shader_gb_per_s ? copy_gb_per_s : shader_gb_per_s; }
};

// Needs timestamps (throws ternvk::Error without them). `bytes`: the size of each of the two
// buffers, clamped to maxStorageBufferRange for the shader; 0 picks 64 MiB (beyond the caches of
// CPUs and GPUs alike).
Bandwidth measure_bandwidth(Device& device, uint64_t bytes = 0, int repetitions = 5);

}  // namespace ternvk::profiler

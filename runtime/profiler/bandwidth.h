// The device's achievable memory bandwidth, measured in the run that is being profiled (the
// reference for "% of peak" in the profiler).
//
// The peak is a streaming read (shaders/bandwidth_read.comp): buffers several times the device's
// last-level cache, uvec4 loads, enough workgroups to fill the device, each workgroup's sum written
// once (so no load can be dropped, and the sums are checked against the data), timed by GPU
// timestamps, best of a few passes. Read-only traffic is what the kernels it is compared with do
// (weights and KV caches are read, small outputs written). Buffers larger than maxStorageBufferRange
// are read as several segments, one dispatch each, timed together. A copy (vkCmdCopyBuffer and the
// copy shader bandwidth_copy.comp) is measured beside it for information.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "runtime/device/device.h"

namespace ternvk::profiler {

struct ReadProbe {
  uint64_t bytes_per_pass = 0;     // every segment once
  uint32_t segments = 0;           // dispatches per pass
  int passes = 0;                  // timed passes per replay (after one untimed warm-up pass)
  int replays = 0;                 // submissions of those passes (until a second passed, at least 2)
  uint64_t timed_dispatches = 0;   // read dispatches whose GPU times were added up
  double best_seconds = 0;         // the fastest pass: the sum of its dispatches' GPU times
  std::array<uint32_t, 4> checksum{};  // sum of the segments' uvec4 words, per component, mod 2^32
  double gb_per_s() const { return best_seconds > 0 ? double(bytes_per_pass) / best_seconds / 1e9 : 0; }
};

// Reads `segments` (sizes multiples of 16 bytes, each within maxStorageBufferRange) passes + 1
// times with the read kernel. Needs timestamps (throws ternvk::Error without them).
ReadProbe probe_read(Device& device, std::span<const BufferRange> segments, int passes);

struct Bandwidth {
  uint64_t read_bytes = 0;       // the read probe's buffers together
  uint32_t read_segments = 0;    // read as this many buffers (one dispatch each)
  int read_passes = 0;
  double read_gb_per_s = 0;      // the peak
  uint64_t buffer_bytes = 0;     // each of the copy probe's two buffers
  double copy_gb_per_s = 0;      // vkCmdCopyBuffer: 2 * size / time (read + write)
  double shader_gb_per_s = 0;    // bandwidth_copy.comp: the same
  double peak() const { return read_gb_per_s; }
};

// The read probe's default size: 4x a generous last-level cache (256 MiB on discrete GPUs, where
// the largest caches are 256 MiB; 128 MiB on other GPUs; 64 MiB on CPU devices), at most 1/8 of the
// device-local memory and 1/4 of what is free.
uint64_t default_read_probe_bytes(const Device& device);

// `read_bytes`: the read probe's size (0: default_read_probe_bytes), split into buffers of at most
// `max_segment_bytes` (0: maxStorageBufferRange, at most 256 MiB). The copy probe copies
// min(64 MiB, read_bytes, maxStorageBufferRange). Needs timestamps. Throws ternvk::Error when the
// read kernel's sums do not match the data (it did not read every byte once).
Bandwidth measure_bandwidth(Device& device, uint64_t read_bytes = 0, int repetitions = 5,
                            uint64_t max_segment_bytes = 0);

// How a kernel's bandwidth compares with the probe's peak, as printed: "87.3%" (`decimals`
// digits), or `above` when it measured more than the probe -- never a share over 100%: such a
// kernel read from a cache (cache-resident data), or its byte count overstates its traffic.
std::string peak_share(double gb_per_s, double peak_gb_per_s, int decimals = 1,
                       const std::string& above = "> probe (cache-resident)");

}  // namespace ternvk::profiler

#include "runtime/profiler/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/device/recording.h"

namespace ternvk::profiler {
namespace {

void require_timestamps(const DeviceInfo& info) {
  if (!info.timestamps)
    throw Error(info.name + " does not support GPU timestamps on its compute queue: cannot measure bandwidth");
}

uint32_t pow2_floor(uint32_t x) {
  uint32_t p = 1;
  while (p * 2 <= x) p *= 2;
  return p;
}

// The pattern segment s of the probe is filled with (a different word per segment, so that a
// segment read twice or not at all changes the sum).
uint32_t fill_word(size_t s) { return 0x9e3779b9u * uint32_t(s + 1) ^ 0x01000193u; }

// vkCmdCopyBuffer and bandwidth_copy.comp over two buffers of `bytes`: best GB/s (read + write).
void measure_copies(Device& device, uint64_t bytes, int repetitions, Bandwidth& out) {
  const DeviceInfo& info = device.info();
  out.buffer_bytes = bytes;
  Buffer src = device.create_buffer(bytes, MemoryKind::DeviceLocal, "bandwidth probe source");
  Buffer dst = device.create_buffer(bytes, MemoryKind::DeviceLocal, "bandwidth probe destination");
  const uint32_t count = uint32_t(bytes / 16);
  const uint32_t wg = std::min(256u, std::max(64u, info.max_workgroup_invocations ? info.max_workgroup_invocations : 64u));
  const Pipeline& pipe = device.pipeline("bandwidth_copy", {.constants = {{0, wg}}});
  const uint32_t groups = std::max(1u, std::min<uint32_t>({(count + wg - 1) / wg, 65535u, info.max_workgroup_count_x}));
  Recording rec(device, {.timestamps = true});
  rec.fill(src.range(), 0x3c003c00u);  // also pages the memory in
  rec.fill(dst.range(), 0);
  for (int r = 0; r < 2; ++r) rec.copy(src.range(), dst.range());
  for (int r = 0; r < 2; ++r) rec.dispatch(pipe, {src.range(), dst.range()}, count, groups);
  rec.finish();
  for (int i = 0; i < std::max(1, repetitions); ++i) {
    rec.submit_and_wait();
    for (const auto& t : rec.timings()) {
      if (t.microseconds <= 0) continue;
      const double gbps = 2.0 * double(bytes) / (t.microseconds * 1e3);
      if (t.label == "copy") out.copy_gb_per_s = std::max(out.copy_gb_per_s, gbps);
      else if (t.label == "bandwidth_copy") out.shader_gb_per_s = std::max(out.shader_gb_per_s, gbps);
    }
  }
}

}  // namespace

ReadProbe probe_read(Device& device, std::span<const BufferRange> segments, int passes) {
  const DeviceInfo& info = device.info();
  require_timestamps(info);
  if (segments.empty()) throw Error("bandwidth probe: nothing to read");
  passes = std::max(1, passes);
  // Workgroups: one subgroup on CPU devices (lavapipe streams uvec4 loads best so, a block per
  // thread), 256 lanes on GPUs; enough of them for 16 per compute unit.
  const uint32_t cap = info.max_workgroup_invocations ? info.max_workgroup_invocations : 256;
  const uint32_t wg = pow2_floor(std::min(info.is_cpu() ? std::max(info.subgroup_size, 1u) : 256u, cap));
  const uint32_t want_groups = std::max(1u, info.assumed_compute_units() * 16);
  ReadProbe r;
  r.segments = uint32_t(segments.size());
  r.passes = passes;
  std::vector<uint32_t> groups, per_group, first;
  uint32_t total_groups = 0;
  for (const BufferRange& s : segments) {
    if (s.size == 0 || s.size % 16 || s.size > info.max_storage_buffer_range)
      throw Error("bandwidth probe: a segment of " + std::to_string(s.size) +
                  " bytes is not a multiple of 16 within maxStorageBufferRange (" +
                  std::to_string(info.max_storage_buffer_range) + ")");
    const uint64_t count = s.size / 16;
    const uint64_t max_groups = info.max_workgroup_count_x ? info.max_workgroup_count_x : 65535u;
    const uint32_t g = uint32_t(std::max<uint64_t>(std::min<uint64_t>({want_groups, (count + wg - 1) / wg, max_groups}), 1));
    groups.push_back(g);
    per_group.push_back(uint32_t((count + g - 1) / g));
    first.push_back(total_groups);
    total_groups += g;
    r.bytes_per_pass += s.size;
  }
  Buffer sums = device.create_buffer(uint64_t(total_groups) * 16, MemoryKind::DeviceLocal, "bandwidth probe sums");
  const Pipeline& pipe = device.pipeline("bandwidth_read", {.constants = {{0, wg}}});
  Recording rec(device, {.timestamps = true});
  for (int p = 0; p <= passes; ++p)  // pass 0 warms up
    for (size_t i = 0; i < segments.size(); ++i) {
      struct {
        uint32_t count, per_group, out_first;
      } push{uint32_t(segments[i].size / 16), per_group[i], first[i]};
      rec.dispatch(pipe, {segments[i], sums.range()}, push, groups[i]);
    }
  // A GPU raises its clocks only after some time under load (an idle H200 read at a third of its
  // bandwidth in the first milliseconds, and once still after 250 ms of replays): the recording is
  // replayed until a second has passed, at least twice, and the fastest pass of any replay counts.
  const auto start = std::chrono::steady_clock::now();
  for (int replay = 0; replay < 64; ++replay) {
    rec.submit_and_wait();
    const auto t = rec.timings();
    if (t.size() != size_t(passes + 1) * segments.size())
      throw Error("bandwidth probe: " + std::to_string(t.size()) + " timestamps for " +
                  std::to_string(size_t(passes + 1) * segments.size()) + " dispatches");
    for (int p = 1; p <= passes; ++p) {
      double us = 0;
      for (size_t i = 0; i < segments.size(); ++i) us += t[p * segments.size() + i].microseconds;
      r.timed_dispatches += segments.size();
      if (us > 0 && (r.best_seconds == 0 || us * 1e-6 < r.best_seconds)) r.best_seconds = us * 1e-6;
    }
    ++r.replays;
    if (replay >= 1 && std::chrono::steady_clock::now() - start > std::chrono::seconds(1)) break;
  }
  std::vector<uint32_t> words(size_t(total_groups) * 4);
  device.download(sums, words.data(), words.size() * 4);
  for (size_t i = 0; i < words.size(); ++i) r.checksum[i % 4] += words[i];
  return r;
}

uint64_t default_read_probe_bytes(const Device& device) {
  const DeviceInfo& info = device.info();
  const uint64_t llc = info.is_discrete() ? 256ull << 20 : info.is_cpu() ? 64ull << 20 : 128ull << 20;
  uint64_t bytes = 4 * llc;
  if (info.device_local_bytes()) bytes = std::min(bytes, info.device_local_bytes() / 8);
  bytes = std::min(bytes, device.free_bytes() / 4);
  return std::max<uint64_t>(bytes / 16 * 16, 16);
}

Bandwidth measure_bandwidth(Device& device, uint64_t read_bytes, int repetitions, uint64_t max_segment_bytes) {
  const DeviceInfo& info = device.info();
  require_timestamps(info);
  if (read_bytes == 0) read_bytes = default_read_probe_bytes(device);
  read_bytes = read_bytes / 16 * 16;
  if (read_bytes < 16) throw Error("bandwidth probe: buffer too small");
  uint64_t segment = max_segment_bytes ? max_segment_bytes : std::min<uint64_t>(info.max_storage_buffer_range, 256ull << 20);
  segment = std::min<uint64_t>(segment, info.max_storage_buffer_range) / 16 * 16;
  if (segment < 16) throw Error("bandwidth probe: segments of " + std::to_string(segment) + " bytes are too small");

  Bandwidth out;
  out.read_bytes = read_bytes;
  {
    std::vector<Buffer> buffers;
    std::vector<BufferRange> ranges;
    Recording fill(device);
    std::array<uint32_t, 4> expected{};
    for (uint64_t done = 0; done < read_bytes; done += segment) {
      const uint64_t n = std::min(segment, read_bytes - done);
      buffers.push_back(device.create_buffer(n, MemoryKind::DeviceLocal, "bandwidth read probe"));
      ranges.push_back(buffers.back().range());
      const uint32_t word = fill_word(ranges.size() - 1);
      fill.fill(ranges.back(), word);
      for (auto& e : expected) e += uint32_t(n / 16) * word;
    }
    fill.submit_and_wait();
    const ReadProbe r = probe_read(device, ranges, repetitions);
    if (r.checksum != expected) {
      char text[160];
      std::snprintf(text, sizeof text, "bandwidth probe: the read kernel summed %08x.. where the data sums to %08x..",
                    r.checksum[0], expected[0]);
      throw Error(std::string(text) + " on " + device.describe() + ": it did not read every byte once");
    }
    out.read_segments = r.segments;
    out.read_passes = r.passes;
    out.read_gb_per_s = r.gb_per_s();
  }
  const uint64_t copy = std::min<uint64_t>({64ull << 20, read_bytes, info.max_storage_buffer_range}) / 16 * 16;
  measure_copies(device, copy, repetitions, out);
  return out;
}

std::string peak_share(double gb_per_s, double peak_gb_per_s, int decimals, const std::string& above) {
  if (!(peak_gb_per_s > 0)) return "-";
  if (gb_per_s > peak_gb_per_s) return above;
  char text[32];
  std::snprintf(text, sizeof text, "%.*f%%", std::clamp(decimals, 0, 6), 100.0 * gb_per_s / peak_gb_per_s);
  return text;
}

}  // namespace ternvk::profiler

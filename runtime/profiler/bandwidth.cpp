#include "runtime/profiler/bandwidth.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/device/recording.h"

namespace ternvk::profiler {

Bandwidth measure_bandwidth(Device& device, uint64_t bytes, int repetitions) {
  const DeviceInfo& info = device.info();
  if (!info.timestamps)
    throw Error(info.name + " does not support GPU timestamps on its compute queue: cannot measure bandwidth");
  if (bytes == 0) bytes = 64ull << 20;
  bytes = std::min<uint64_t>(bytes, info.max_storage_buffer_range);
  bytes = bytes / 16 * 16;
  if (bytes < 16) throw Error("bandwidth probe: buffer too small");
  Bandwidth out;
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
  double best_copy = 0, best_shader = 0;
  for (int i = 0; i < std::max(1, repetitions); ++i) {
    rec.submit_and_wait();
    for (const auto& t : rec.timings()) {
      if (t.microseconds <= 0) continue;
      const double gbps = 2.0 * double(bytes) / (t.microseconds * 1e3);
      if (t.label == "copy") best_copy = std::max(best_copy, gbps);
      else if (t.label == "bandwidth_copy") best_shader = std::max(best_shader, gbps);
    }
  }
  out.copy_gb_per_s = best_copy;
  out.shader_gb_per_s = best_shader;
  return out;
}

}  // namespace ternvk::profiler

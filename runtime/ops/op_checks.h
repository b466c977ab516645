// Small helpers every op's host side shares: argument checks and workgroup sizes from the device.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device_info.h"
#include "runtime/device/memory.h"

namespace ternvk::ops {

// Mesa 22.3's llvmpipe (lavapipe) leaves a shader's loops silently after 65535 iterations per
// invocation, inner and outer loops counted together. Ops plan every invocation's loops to at most
// half of that (the budget also bounds an invocation's serial work on every device).
inline constexpr uint64_t kShaderLoopBudget = 32768;

// Whether two buffer ranges share bytes (an op's input and output must not).
inline bool overlaps(const BufferRange& a, const BufferRange& b) {
  return a.buffer == b.buffer && a.offset < b.offset + b.size && b.offset < a.offset + a.size;
}

// Throws "<op>: <what> holds N bytes but needs M" when a range is missing or too small.
inline void require_bytes(const char* op, const BufferRange& r, uint64_t bytes, const char* what) {
  if (!r.buffer || r.size < bytes)
    throw Error(std::string(op) + ": " + what + " holds " + std::to_string(r.buffer ? r.size : 0) +
                " bytes but needs " + std::to_string(bytes));
}

// Elementwise ops (no barriers): 8 subgroups, at least 64 and at most 256 invocations. On lavapipe
// (subgroup 8) 64 beat 8 by 1.5-3x (fewer workgroups to schedule); GPUs get 256.
inline uint32_t elementwise_workgroup(const DeviceInfo& info) {
  const uint32_t sg = std::max(1u, info.subgroup_size);
  return std::min({std::max(sg * 8, 64u), 256u, std::max(1u, info.max_workgroup_invocations)});
}

}  // namespace ternvk::ops

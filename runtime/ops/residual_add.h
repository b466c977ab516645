// y += x over fp32 elements: the residual add, for where a GEMV epilogue cannot fuse it.
#pragma once
#include <cstdint>

#include "runtime/device/memory.h"
#include "runtime/device/recording.h"

namespace ternvk::ops {

struct ResidualAddArgs {
  BufferRange x;       // fp32 [count]
  BufferRange y;       // fp32 [count], updated in place; must not overlap x
  uint32_t count = 0;  // elements, e.g. tokens * hidden
  uint32_t workgroup = 0;  // 0 picks from DeviceInfo
};

void record_residual_add(Recording& rec, const ResidualAddArgs& args);

}  // namespace ternvk::ops

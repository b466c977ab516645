// Descriptions of devices that are not here, for the tests of what ops pick from DeviceInfo.
#pragma once
#include <string>

#include "runtime/device/device_info.h"

namespace ternvk::test {

// The properties of the NVIDIA H200 that gpu.md's runs used that the picks read: 32-wide subgroups
// with size control, 132 SMs (VK_NV_shader_sm_builtins), 48 KiB of shared memory.
inline DeviceInfo h200_like_info(const std::string& name = "an H200-like GPU") {
  DeviceInfo gpu;
  gpu.name = name;
  gpu.type = VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU;
  gpu.subgroup_size = gpu.min_subgroup_size = gpu.max_subgroup_size = 32;
  gpu.subgroup_arithmetic = gpu.subgroup_shuffle = gpu.subgroup_size_control = true;
  gpu.max_shared_memory = 48 * 1024;
  gpu.max_workgroup_invocations = 1024;
  gpu.min_storage_buffer_offset_alignment = 16;
  gpu.compute_units = 132;
  return gpu;
}

}  // namespace ternvk::test

// What a physical device is and can do, read once at start-up. Op code asks named predicates
// here (has_fast_int8_dot()) instead of checking vendor ids.
#pragma once
#include <vulkan/vulkan.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ternvk {

struct MemoryHeapInfo {
  uint64_t size = 0;
  bool device_local = false;
};

// The size of one matrix multiply-add a subgroup runs on the matrix units (VK_NV_cooperative_matrix):
// C (m x n) += A (m x k) B (k x n), int8 x int8 -> int32 or fp16 x fp16 -> fp32. All zero: none.
struct MatrixUnitShape {
  uint32_t m = 0, n = 0, k = 0;
  bool any() const { return m != 0; }
};

// One entry of vkGetPhysicalDeviceCooperativeMatrixPropertiesNV, as ternvk reads it.
struct CooperativeMatrixOffer {
  uint32_t m = 0, n = 0, k = 0;
  VkComponentTypeNV a = VK_COMPONENT_TYPE_FLOAT16_NV, b = a, c = a, result = a;
  VkScopeNV scope = VK_SCOPE_SUBGROUP_NV;
};

// The int8 matrix shape gemm_matrix_unit.comp (ternary) can use among the driver's offers: signed
// int8 A and B, int32 C and result, subgroup scope, k of 16, 32 or 64 (whole uvec4 within a staged
// chunk) and n a multiple of 4 (the accumulators leave through uvec4 rows); the most products per
// multiply, then the largest m. None when no offer qualifies.
MatrixUnitShape pick_int8_matrix_unit(const std::vector<CooperativeMatrixOffer>& offers);
// The fp16 shape fp16 GEMMs on the matrix units can use: fp16 A and B, fp32 C and result, subgroup
// scope, k of 8, 16, 32 or 64 and n a multiple of 4; the most products per multiply, then the largest m.
MatrixUnitShape pick_fp16_matrix_unit(const std::vector<CooperativeMatrixOffer>& offers);

struct DeviceInfo {
  uint32_t index = 0;  // position in vkEnumeratePhysicalDevices
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  std::string name;
  uint32_t vendor_id = 0;
  uint32_t device_id = 0;
  VkPhysicalDeviceType type = VK_PHYSICAL_DEVICE_TYPE_OTHER;
  uint32_t api_version = 0;
  std::string driver_name;
  std::string driver_info;
  uint32_t driver_version = 0;              // vendor-encoded; changes with a driver upgrade
  std::array<uint8_t, 16> device_uuid{};    // stable across processes and driver versions
  std::vector<MemoryHeapInfo> heaps;

  uint32_t subgroup_size = 1;
  uint32_t min_subgroup_size = 1;
  uint32_t max_subgroup_size = 1;
  bool subgroup_arithmetic = false;   // subgroupAdd & co. in compute shaders
  bool subgroup_shuffle = false;
  bool subgroup_clustered = false;
  bool subgroup_size_control = false; // can require a subgroup size for a pipeline

  uint64_t max_storage_buffer_range = 0;
  uint32_t max_workgroup_invocations = 0;
  uint32_t max_workgroup_count_x = 0;
  uint32_t max_shared_memory = 0;
  uint32_t max_storage_buffers_per_stage = 0;  // maxPerStageDescriptorStorageBuffers (0: unknown)
  uint32_t max_push_constants = 0;
  uint64_t min_storage_buffer_offset_alignment = 0;
  uint32_t max_texel_buffer_elements = 0;
  uint64_t min_texel_buffer_offset_alignment = 0;
  bool texel_buffer_uint4 = false;  // R32G32B32A32_UINT usable as a uniform texel buffer
  bool timestamps = false;
  float timestamp_period_ns = 0.0f;

  bool storage_8bit = false;
  bool storage_16bit = false;
  bool shader_int8 = false;
  bool shader_float16 = false;
  bool shader_int16 = false;
  bool integer_dot_product = false;             // OpSDot & co. exist
  bool integer_dot_4x8_packed_accelerated = false;
  bool cooperative_matrix = false;              // VK_KHR_cooperative_matrix present
  // vulkanMemoryModel and its device scope (the NV matrix shader declares the model; once it is
  // enabled, the other shaders' Device-scope operations need the device scope too)
  bool vulkan_memory_model = false;
  // VK_NV_cooperative_matrix's int8 shape, when the extension, its feature for compute shaders,
  // shaderInt8 and the Vulkan memory model are all there (has_int8_matrix_unit()).
  MatrixUnitShape int8_matrix_unit;
  // ... and its fp16 shape, with shaderFloat16 in place of shaderInt8 (has_fp16_matrix_unit()).
  MatrixUnitShape fp16_matrix_unit;
  // The two shapes above stand for matrix units the device does not have: the GEMMs run the
  // *_emulated shaders on its shader cores (emulate_matrix_units(); tests on lavapipe).
  bool matrix_units_emulated = false;
  bool memory_budget = false;                   // VK_EXT_memory_budget present
  bool timeline_semaphore = false;              // timelineSemaphore feature (core in Vulkan 1.2)
  // Streaming multiprocessors / compute units where an extension reports them
  // (VK_NV_shader_sm_builtins, VK_AMD_shader_core_properties); 0 = unknown (core Vulkan has no count).
  uint32_t compute_units = 0;

  bool is_cpu() const { return type == VK_PHYSICAL_DEVICE_TYPE_CPU; }
  bool is_discrete() const { return type == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU; }
  // Integrated GPUs and CPU devices share memory with the host: no staging copy needed.
  bool unified_memory() const {
    return type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU || type == VK_PHYSICAL_DEVICE_TYPE_CPU;
  }
  bool has_fast_int8_dot() const { return integer_dot_product && integer_dot_4x8_packed_accelerated; }
  bool has_int8_matrix_unit() const { return int8_matrix_unit.any(); }
  bool has_fp16_matrix_unit() const { return fp16_matrix_unit.any(); }
  bool has_matrix_units() const { return has_int8_matrix_unit() || has_fp16_matrix_unit(); }
  // Real ones: the device is created with VK_NV_cooperative_matrix and the Vulkan memory model.
  bool uses_cooperative_matrix_extension() const { return has_matrix_units() && !matrix_units_emulated; }
  // compute_units when known; else an assumption for sizing grids: 100 on a discrete GPU (a large
  // one: too many workgroups cost little, too few leave the device idle), 16 on an integrated or
  // other GPU, the host's hardware threads on a CPU device (lavapipe runs a workgroup per thread).
  uint32_t assumed_compute_units() const;
  uint64_t device_local_bytes() const;
  std::string vendor_name() const;
  std::string type_name() const;
  // Higher is better: discrete > integrated > virtual > cpu, then by device-local memory.
  uint64_t preference_score() const;
  // A multi-line human description (name, vendor, driver, heaps, subgroups, features used).
  std::string describe() const;
};

DeviceInfo query_device_info(VkInstance instance, VkPhysicalDevice physical, uint32_t index);

// Gives a device without matrix units emulated ones (the shapes of NVIDIA's: int8 16x8x32, fp16
// 16x8x16) so that the matrix-unit GEMMs, their self-checks and what routes work to them run on it,
// slowly, on its shader cores (TERNVK_EMULATE_MATRIX_UNITS=1, InstanceOptions). A device with units of
// its own keeps them.
void emulate_matrix_units(DeviceInfo& info, MatrixUnitShape int8 = {16, 8, 32}, MatrixUnitShape fp16 = {16, 8, 16});

}  // namespace ternvk

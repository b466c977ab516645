#include "runtime/device/device_info.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <thread>

namespace ternvk {
namespace {

bool has_extension(const std::vector<VkExtensionProperties>& extensions, const char* name) {
  for (const auto& e : extensions)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

std::string mib(uint64_t bytes) {
  std::ostringstream out;
  out << (bytes >> 20) << " MiB";
  return out.str();
}

// The driver's cooperative matrix offers (VK_NV_cooperative_matrix; an instance-level command).
std::vector<CooperativeMatrixOffer> cooperative_matrix_offers(VkInstance instance, VkPhysicalDevice physical) {
  auto get = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV>(
      vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"));
  std::vector<CooperativeMatrixOffer> offers;
  uint32_t count = 0;
  if (!get || get(physical, &count, nullptr) != VK_SUCCESS) return offers;
  std::vector<VkCooperativeMatrixPropertiesNV> props(count, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
  if (get(physical, &count, props.data()) < VK_SUCCESS) return offers;
  props.resize(count);
  for (const auto& p : props)
    offers.push_back({p.MSize, p.NSize, p.KSize, p.AType, p.BType, p.CType, p.DType, p.scope});
  return offers;
}

// The offer of `operand` x `operand` -> `accumulator` subgroup matrices with the most products a
// multiply (then the most rows) whose shape gemm_matrix_unit.comp can address: k whole uvec4 of
// operands (`per_uvec4` of them) dividing a 64-element chunk, n whole uvec4 of accumulators, m and n
// at most 64.
MatrixUnitShape pick_matrix_unit(const std::vector<CooperativeMatrixOffer>& offers, VkComponentTypeNV operand,
                                 VkComponentTypeNV accumulator, uint32_t per_uvec4) {
  MatrixUnitShape best;
  for (const auto& o : offers) {
    if (o.a != operand || o.b != operand || o.c != accumulator || o.result != accumulator || o.scope != VK_SCOPE_SUBGROUP_NV)
      continue;
    if (o.m == 0 || o.n == 0 || o.k % per_uvec4 != 0 || 64 % o.k != 0 || o.n % 4 != 0 || o.m > 64 || o.n > 64) continue;
    const uint64_t products = uint64_t(o.m) * o.n * o.k, best_products = uint64_t(best.m) * best.n * best.k;
    if (products > best_products || (products == best_products && o.m > best.m)) best = {o.m, o.n, o.k};
  }
  return best;
}

}  // namespace

MatrixUnitShape pick_int8_matrix_unit(const std::vector<CooperativeMatrixOffer>& offers) {
  return pick_matrix_unit(offers, VK_COMPONENT_TYPE_SINT8_NV, VK_COMPONENT_TYPE_SINT32_NV, 16);
}

MatrixUnitShape pick_fp16_matrix_unit(const std::vector<CooperativeMatrixOffer>& offers) {
  return pick_matrix_unit(offers, VK_COMPONENT_TYPE_FLOAT16_NV, VK_COMPONENT_TYPE_FLOAT32_NV, 8);
}

uint64_t DeviceInfo::device_local_bytes() const {
  uint64_t total = 0;
  for (const auto& h : heaps)
    if (h.device_local) total += h.size;
  return total;
}

uint32_t DeviceInfo::assumed_compute_units() const {
  if (compute_units) return compute_units;
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 100;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return std::max(1u, std::thread::hardware_concurrency());
    default: return 16;
  }
}

std::string DeviceInfo::vendor_name() const {
  switch (vendor_id) {
    case 0x1002: return "AMD";
    case 0x10DE: return "NVIDIA";
    case 0x8086: return "Intel";
    case 0x106B: return "Apple";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x1010: return "Imagination";
    case 0x10005: return "Mesa";
    default: {
      std::ostringstream out;
      out << "vendor 0x" << std::hex << vendor_id;
      return out.str();
    }
  }
}

std::string DeviceInfo::type_name() const {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
  }
}

uint64_t DeviceInfo::preference_score() const {
  uint64_t rank = 0;
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: rank = 4; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: rank = 3; break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: rank = 2; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: rank = 1; break;
    default: rank = 0;
  }
  return (rank << 56) | (device_local_bytes() >> 20);
}

std::string DeviceInfo::describe() const {
  std::ostringstream out;
  out << "[" << index << "] " << name << " (" << type_name() << ", " << vendor_name() << ")\n";
  out << "    driver: " << driver_name << (driver_info.empty() ? "" : " " + driver_info)
      << ", Vulkan " << VK_API_VERSION_MAJOR(api_version) << "." << VK_API_VERSION_MINOR(api_version)
      << "." << VK_API_VERSION_PATCH(api_version) << "\n";
  out << "    memory heaps:";
  for (size_t i = 0; i < heaps.size(); ++i)
    out << (i ? "," : "") << " " << mib(heaps[i].size) << (heaps[i].device_local ? " device-local" : " host");
  out << "\n    subgroup size " << subgroup_size << " (" << min_subgroup_size << "-" << max_subgroup_size
      << "), max storage buffer range " << mib(max_storage_buffer_range) << ", shared memory "
      << (max_shared_memory >> 10) << " KiB\n";
  auto yes = [](bool b) { return b ? "yes" : "no"; };
  out << "    features used: 8-bit storage " << yes(storage_8bit) << ", 16-bit storage " << yes(storage_16bit)
      << ", int8 dot product " << (integer_dot_product ? (integer_dot_4x8_packed_accelerated ? "yes (accelerated)" : "yes (not accelerated: portable path)") : "no (portable path)")
      << ", subgroup arithmetic " << yes(subgroup_arithmetic) << ", subgroup size control "
      << yes(subgroup_size_control) << ", int8 matrix units ";
  const char* unit_source =
      matrix_units_emulated ? " (emulated: TERNVK_EMULATE_MATRIX_UNITS)" : " (VK_NV_cooperative_matrix)";
  if (has_int8_matrix_unit())
    out << int8_matrix_unit.m << "x" << int8_matrix_unit.n << "x" << int8_matrix_unit.k << unit_source;
  else
    out << (cooperative_matrix ? "no (VK_KHR_cooperative_matrix only: not used)" : "no");
  out << ", fp16 matrix units ";
  if (has_fp16_matrix_unit())
    out << fp16_matrix_unit.m << "x" << fp16_matrix_unit.n << "x" << fp16_matrix_unit.k << unit_source;
  else
    out << (cooperative_matrix ? "no (VK_KHR_cooperative_matrix only: not used)" : "no");
  out
      << ", timestamps " << yes(timestamps)
      << ", timeline semaphores " << (timeline_semaphore ? "yes" : "no (fences)");
  if (compute_units) out << ", compute units " << compute_units;
  return out.str();
}

DeviceInfo query_device_info(VkInstance instance, VkPhysicalDevice physical, uint32_t index) {
  DeviceInfo info;
  info.index = index;
  info.physical = physical;

  uint32_t count = 0;
  vkEnumerateDeviceExtensionProperties(physical, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  vkEnumerateDeviceExtensionProperties(physical, nullptr, &count, extensions.data());
  info.cooperative_matrix = has_extension(extensions, "VK_KHR_cooperative_matrix");
  info.memory_budget = has_extension(extensions, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  const bool nv_matrix = has_extension(extensions, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);

  VkPhysicalDeviceProperties basic{};
  vkGetPhysicalDeviceProperties(physical, &basic);
  const bool vulkan13 = basic.apiVersion >= VK_API_VERSION_1_3;

  VkPhysicalDeviceShaderIntegerDotProductProperties dot_props{};
  dot_props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES;
  VkPhysicalDeviceSubgroupSizeControlProperties size_control_props{};
  size_control_props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES;
  size_control_props.pNext = vulkan13 ? &dot_props : nullptr;
  // Compute-unit counts (only where the extension is present: chaining an unsupported struct is invalid).
  VkPhysicalDeviceShaderSMBuiltinsPropertiesNV sm_props{};
  sm_props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV;
  VkPhysicalDeviceShaderCorePropertiesAMD amd_core_props{};
  amd_core_props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD;
  void* core_chain = vulkan13 ? &size_control_props : nullptr;
  const bool nv_sm = has_extension(extensions, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME);
  const bool amd_core = has_extension(extensions, VK_AMD_SHADER_CORE_PROPERTIES_EXTENSION_NAME);
  if (nv_sm) {
    sm_props.pNext = core_chain;
    core_chain = &sm_props;
  }
  if (amd_core) {
    amd_core_props.pNext = core_chain;
    core_chain = &amd_core_props;
  }
  VkPhysicalDeviceCooperativeMatrixPropertiesNV matrix_props{};
  matrix_props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV;
  if (nv_matrix) {
    matrix_props.pNext = core_chain;
    core_chain = &matrix_props;
  }
  VkPhysicalDeviceDriverProperties driver{};
  driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
  driver.pNext = core_chain;
  VkPhysicalDeviceSubgroupProperties subgroup{};
  subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
  subgroup.pNext = &driver;
  VkPhysicalDeviceIDProperties ids{};
  ids.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES;
  ids.pNext = &subgroup;
  VkPhysicalDeviceProperties2 props{};
  props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  props.pNext = &ids;
  vkGetPhysicalDeviceProperties2(physical, &props);
  const auto& p = props.properties;

  info.name = p.deviceName;
  info.vendor_id = p.vendorID;
  info.device_id = p.deviceID;
  info.type = p.deviceType;
  info.api_version = p.apiVersion;
  info.driver_name = driver.driverName;
  info.driver_info = driver.driverInfo;
  info.driver_version = p.driverVersion;
  std::memcpy(info.device_uuid.data(), ids.deviceUUID, info.device_uuid.size());
  info.subgroup_size = subgroup.subgroupSize;
  info.min_subgroup_size = vulkan13 ? size_control_props.minSubgroupSize : subgroup.subgroupSize;
  info.max_subgroup_size = vulkan13 ? size_control_props.maxSubgroupSize : subgroup.subgroupSize;
  const bool compute_subgroups = subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT;
  info.subgroup_arithmetic = compute_subgroups && (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  info.subgroup_shuffle = compute_subgroups && (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
  info.subgroup_clustered = compute_subgroups && (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_CLUSTERED_BIT);
  if (nv_sm) info.compute_units = sm_props.shaderSMCount;
  if (amd_core)
    info.compute_units = amd_core_props.shaderEngineCount * amd_core_props.shaderArraysPerEngineCount *
                         amd_core_props.computeUnitsPerShaderArray;
  info.max_storage_buffer_range = p.limits.maxStorageBufferRange;
  info.max_workgroup_invocations = p.limits.maxComputeWorkGroupInvocations;
  info.max_workgroup_count_x = p.limits.maxComputeWorkGroupCount[0];
  info.max_shared_memory = p.limits.maxComputeSharedMemorySize;
  info.max_storage_buffers_per_stage = p.limits.maxPerStageDescriptorStorageBuffers;
  info.max_push_constants = p.limits.maxPushConstantsSize;
  info.min_storage_buffer_offset_alignment = p.limits.minStorageBufferOffsetAlignment;
  info.timestamp_period_ns = p.limits.timestampPeriod;
  info.max_texel_buffer_elements = p.limits.maxTexelBufferElements;
  info.min_texel_buffer_offset_alignment = p.limits.minTexelBufferOffsetAlignment;
  VkFormatProperties format{};
  vkGetPhysicalDeviceFormatProperties(physical, VK_FORMAT_R32G32B32A32_UINT, &format);
  info.texel_buffer_uint4 = format.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT;

  VkPhysicalDeviceCooperativeMatrixFeaturesNV matrix_features{};
  matrix_features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
  VkPhysicalDeviceVulkan13Features f13{};
  f13.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES;
  f13.pNext = nv_matrix ? &matrix_features : nullptr;
  VkPhysicalDeviceVulkan12Features f12{};
  f12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  f12.pNext = vulkan13 ? &f13 : (nv_matrix ? static_cast<void*>(&matrix_features) : nullptr);
  VkPhysicalDeviceVulkan11Features f11{};
  f11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
  f11.pNext = &f12;
  VkPhysicalDeviceFeatures2 features{};
  features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  features.pNext = &f11;
  vkGetPhysicalDeviceFeatures2(physical, &features);
  info.storage_8bit = f12.storageBuffer8BitAccess;
  info.storage_16bit = f11.storageBuffer16BitAccess;
  info.shader_int8 = f12.shaderInt8;
  info.shader_float16 = f12.shaderFloat16;
  info.shader_int16 = features.features.shaderInt16;
  info.timeline_semaphore = f12.timelineSemaphore;
  // Requiring a size is valid only in the stages the device names; ours is compute.
  info.subgroup_size_control = vulkan13 && f13.subgroupSizeControl && f13.computeFullSubgroups &&
                               (size_control_props.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT);
  info.integer_dot_product = vulkan13 && f13.shaderIntegerDotProduct;
  info.integer_dot_4x8_packed_accelerated =
      vulkan13 && dot_props.integerDotProduct4x8BitPackedSignedAccelerated;
  info.vulkan_memory_model = f12.vulkanMemoryModel && f12.vulkanMemoryModelDeviceScope;
  if (nv_matrix && matrix_features.cooperativeMatrix &&
      (matrix_props.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT) && info.vulkan_memory_model) {
    const std::vector<CooperativeMatrixOffer> offers = cooperative_matrix_offers(instance, physical);
    if (info.shader_int8) info.int8_matrix_unit = pick_int8_matrix_unit(offers);
    if (info.shader_float16) info.fp16_matrix_unit = pick_fp16_matrix_unit(offers);
  }

  uint32_t family_count = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical, &family_count, nullptr);
  std::vector<VkQueueFamilyProperties> families(family_count);
  vkGetPhysicalDeviceQueueFamilyProperties(physical, &family_count, families.data());
  for (const auto& f : families)
    if ((f.queueFlags & VK_QUEUE_COMPUTE_BIT) && f.timestampValidBits > 0 && p.limits.timestampPeriod > 0)
      info.timestamps = true;

  VkPhysicalDeviceMemoryProperties memory{};
  vkGetPhysicalDeviceMemoryProperties(physical, &memory);
  for (uint32_t i = 0; i < memory.memoryHeapCount; ++i)
    info.heaps.push_back({memory.memoryHeaps[i].size,
                          (memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0});
  return info;
}

void emulate_matrix_units(DeviceInfo& info, MatrixUnitShape int8, MatrixUnitShape fp16) {
  if (info.has_matrix_units()) return;
  info.int8_matrix_unit = int8;
  info.fp16_matrix_unit = fp16;
  info.matrix_units_emulated = true;
}

}  // namespace ternvk

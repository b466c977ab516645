#include "runtime/device/device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "runtime/device/vk_check.h"

namespace ternvk {
namespace {

constexpr uint64_t kFenceTimeoutNs = 300ull * 1000 * 1000 * 1000;  // 5 minutes

std::filesystem::path pipeline_cache_path(const DeviceInfo& info) {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::filesystem::path dir;
  if (xdg && *xdg) dir = xdg;
  else if (home && *home) dir = std::filesystem::path(home) / ".cache";
  else return {};
  char name[96];
  std::snprintf(name, sizeof(name), "pipelines-%04x-%04x-%08x.bin", info.vendor_id, info.device_id,
                info.api_version);
  return dir / "ternvk" / name;
}

std::string cache_key(const std::string& shader, const PipelineOptions& options) {
  std::string key = shader;
  for (auto [id, value] : options.constants) {
    key += '|';
    key += std::to_string(id);
    key += '=';
    key += std::to_string(value);
  }
  key += "|sg=" + std::to_string(options.required_subgroup_size);
  return key;
}

}  // namespace

Device::Device(Instance& instance, const DeviceInfo& info, DeviceOptions options)
    : instance_(instance), info_(info) {
  uint32_t family_count = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(info.physical, &family_count, nullptr);
  std::vector<VkQueueFamilyProperties> families(family_count);
  vkGetPhysicalDeviceQueueFamilyProperties(info.physical, &family_count, families.data());
  // Prefer a compute-only family (async compute on discrete GPUs), else any with compute.
  int chosen = -1;
  for (uint32_t i = 0; i < family_count; ++i)
    if ((families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(families[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) &&
        families[i].timestampValidBits > 0)
      chosen = static_cast<int>(i);
  for (uint32_t i = 0; chosen < 0 && i < family_count; ++i)
    if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) chosen = static_cast<int>(i);
  if (chosen < 0) throw Error("device " + info.name + " has no compute queue; ternvk needs one");
  queue_family_ = static_cast<uint32_t>(chosen);

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo queue_info{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  queue_info.queueFamilyIndex = queue_family_;
  queue_info.queueCount = 1;
  queue_info.pQueuePriorities = &priority;

  const bool vulkan13 = info.api_version >= VK_API_VERSION_1_3;
  if (info.api_version < VK_API_VERSION_1_2)
    throw Error("device " + info.name + " supports Vulkan " + std::to_string(VK_API_VERSION_MAJOR(info.api_version)) +
                "." + std::to_string(VK_API_VERSION_MINOR(info.api_version)) +
                "; ternvk needs Vulkan 1.2 or newer (update the driver)");
  // The matrix-unit GEMMs' shaders declare CooperativeMatrixNV, Int8 or Float16, and the Vulkan memory model.
  VkPhysicalDeviceCooperativeMatrixFeaturesNV matrix_features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  matrix_features.cooperativeMatrix = VK_TRUE;
  VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
  f13.pNext = info.uses_cooperative_matrix_extension() ? &matrix_features : nullptr;
  f13.subgroupSizeControl = info.subgroup_size_control;
  f13.computeFullSubgroups = info.subgroup_size_control;
  f13.shaderIntegerDotProduct = info.integer_dot_product;
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  f12.pNext = vulkan13 ? &f13
                       : (info.uses_cooperative_matrix_extension() ? static_cast<void*>(&matrix_features) : nullptr);
  // Only with the matrix units. Enabled, the model makes the validation layer require its device
  // scope wherever any shader uses Device scope (VUID-RuntimeSpirv-vulkanMemoryModel-06265), so both.
  f12.vulkanMemoryModel = f12.vulkanMemoryModelDeviceScope = info.uses_cooperative_matrix_extension();
  f12.storageBuffer8BitAccess = info.storage_8bit;
  f12.shaderInt8 = info.shader_int8;
  f12.shaderFloat16 = info.shader_float16;
  // One timeline semaphore per queue when the driver has them; else a fence per recording.
  const char* no_timeline = std::getenv("TERNVK_NO_TIMELINE");
  const bool use_timeline = info.timeline_semaphore && options.timeline_semaphores &&
                            !(no_timeline && *no_timeline && std::strcmp(no_timeline, "0") != 0);
  f12.timelineSemaphore = use_timeline;
  VkPhysicalDeviceVulkan11Features f11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  f11.pNext = &f12;
  f11.storageBuffer16BitAccess = info.storage_16bit;
  VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  features.pNext = &f11;
  features.features.shaderInt16 = info.shader_int16;

  std::vector<const char*> extensions;
  if (info.memory_budget) extensions.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  if (info.uses_cooperative_matrix_extension()) extensions.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
  uint32_t ext_count = 0;
  vkEnumerateDeviceExtensionProperties(info.physical, nullptr, &ext_count, nullptr);
  std::vector<VkExtensionProperties> available(ext_count);
  vkEnumerateDeviceExtensionProperties(info.physical, nullptr, &ext_count, available.data());
  for (const auto& e : available)
    if (std::strcmp(e.extensionName, "VK_KHR_portability_subset") == 0)
      extensions.push_back("VK_KHR_portability_subset");  // required on MoltenVK when present

  VkDeviceCreateInfo create{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  create.pNext = &features;
  create.queueCreateInfoCount = 1;
  create.pQueueCreateInfos = &queue_info;
  create.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  create.ppEnabledExtensionNames = extensions.data();
  VkDevice device = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateDevice(info.physical, &create, nullptr, &device));
  device_ = Owned<VkDevice>(device, [](VkDevice d) { vkDestroyDevice(d, nullptr); });
  vkGetDeviceQueue(device, queue_family_, 0, &queue_);

  VkCommandPoolCreateInfo pool{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pool.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pool.queueFamilyIndex = queue_family_;
  VkCommandPool command_pool = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateCommandPool(device, &pool, nullptr, &command_pool));
  command_pool_ = Owned<VkCommandPool>(command_pool, [device](VkCommandPool p) { vkDestroyCommandPool(device, p, nullptr); });
  if (use_timeline) {
    VkSemaphoreTypeCreateInfo type{VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO};
    type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
    type.initialValue = 0;
    VkSemaphoreCreateInfo semaphore{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    semaphore.pNext = &type;
    VkSemaphore timeline = VK_NULL_HANDLE;
    TERNVK_VK_CHECK(vkCreateSemaphore(device, &semaphore, nullptr, &timeline));
    timeline_ = Owned<VkSemaphore>(timeline, [device](VkSemaphore x) { vkDestroySemaphore(device, x, nullptr); });
  }
  allocator_ = std::make_unique<MemoryAllocator>(device, info.physical, info.unified_memory());
  load_pipeline_cache();
  ordinal_ = instance.claim_device_ordinal();
  if (FaultInjection f = instance.faults_for(ordinal_); f.any()) inject_faults(f);
}

// The members then go in reverse order: the cache, semaphore and pool, then the device itself.
Device::~Device() {
  if (!device_) return;
  vkDeviceWaitIdle(device_.get());
  save_pipeline_cache();
  pipelines_.clear();
  allocator_.reset();
}

Owned<VkCommandBuffer> allocate_command_buffer(VkDevice device, VkCommandPool pool, std::mutex* pool_mutex) {
  VkCommandBufferAllocateInfo alloc{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  alloc.commandPool = pool;
  alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  alloc.commandBufferCount = 1;
  VkCommandBuffer cb = VK_NULL_HANDLE;
  {
    std::unique_lock lock = pool_mutex ? std::unique_lock(*pool_mutex) : std::unique_lock<std::mutex>();
    TERNVK_VK_CHECK(vkAllocateCommandBuffers(device, &alloc, &cb));
  }
  return Owned<VkCommandBuffer>(cb, [device, pool, pool_mutex](VkCommandBuffer c) {
    std::unique_lock lock = pool_mutex ? std::unique_lock(*pool_mutex) : std::unique_lock<std::mutex>();
    vkFreeCommandBuffers(device, pool, 1, &c);
  });
}

Owned<VkCommandBuffer> Device::allocate_command_buffer() {
  return ternvk::allocate_command_buffer(device_.get(), command_pool_.get(), &pool_mutex_);
}

void Device::load_pipeline_cache() {
  std::vector<char> data;
  if (auto path = pipeline_cache_path(info_); !path.empty()) {
    std::ifstream in(path, std::ios::binary);
    if (in) data.assign(std::istreambuf_iterator<char>(in), {});
  }
  VkPipelineCacheCreateInfo info{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  info.initialDataSize = data.size();
  info.pInitialData = data.empty() ? nullptr : data.data();
  VkDevice device = device_.get();
  VkPipelineCache cache = VK_NULL_HANDLE;
  if (TERNVK_VK_CALL(vkCreatePipelineCache(device, &info, nullptr, &cache)) != VK_SUCCESS) {
    // A stale or foreign cache file is not an error: start with an empty cache.
    info.initialDataSize = 0;
    info.pInitialData = nullptr;
    TERNVK_VK_CHECK(vkCreatePipelineCache(device, &info, nullptr, &cache));
  }
  pipeline_cache_ = Owned<VkPipelineCache>(cache, [device](VkPipelineCache c) { vkDestroyPipelineCache(device, c, nullptr); });
}

void Device::save_pipeline_cache() {
  auto path = pipeline_cache_path(info_);
  if (path.empty() || !pipeline_cache_) return;
  size_t size = 0;
  if (vkGetPipelineCacheData(device_.get(), pipeline_cache_.get(), &size, nullptr) != VK_SUCCESS || size == 0) return;
  std::vector<char> data(size);
  if (vkGetPipelineCacheData(device_.get(), pipeline_cache_.get(), &size, data.data()) != VK_SUCCESS) return;
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  // Write then rename so that a crash never leaves a half-written cache.
  auto tmp = path;
  tmp += ".tmp" + std::to_string(reinterpret_cast<uintptr_t>(this));
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) return;
    out.write(data.data(), static_cast<std::streamsize>(size));
    if (!out) return;
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

bool Device::self_check(const std::string& name, const std::function<bool()>& run) {
  if (self_check_thread_.load() == std::this_thread::get_id())
    throw Error("internal: self-check '" + name + "' started inside another self-check on " + describe());
  std::lock_guard lock(self_checks_mutex_);
  if (auto it = self_checks_.find(name); it != self_checks_.end()) return it->second;
  struct Running {  // clears the owner on every way out
    std::atomic<std::thread::id>& owner;
    ~Running() { owner = std::thread::id(); }
  } running{self_check_thread_};
  self_check_thread_ = std::this_thread::get_id();
  const bool passed = run();
  self_checks_[name] = passed;
  return passed;
}

const Pipeline& Device::pipeline(const std::string& shader, const PipelineOptions& options) {
  std::lock_guard lock(pipelines_mutex_);
  auto key = cache_key(shader, options);
  auto& slot = pipelines_[key];
  if (!slot) slot = std::make_unique<Pipeline>(*this, shader, options);
  return *slot;
}

std::string Device::describe() const {
  std::string s = "device " + std::to_string(info_.index) + " (" + info_.name + ")";
  if (ordinal_ > 0) s += ", logical device " + std::to_string(ordinal_);
  return s;
}

uint64_t Device::free_bytes() const {
  uint64_t total = faults_.memory_budget;
  if (total == 0) total = info_.unified_memory() ? (info_.heaps.empty() ? 0 : info_.heaps[0].size) : info_.device_local_bytes();
  const uint64_t used = allocator_->device_local_bytes_in_use();
  return total > used ? total - used : 0;
}

void Device::inject_faults(const FaultInjection& faults) {
  std::lock_guard lock(queue_mutex_);
  faults_ = faults;
  submits_at_injection_ = submits_.load();
  allocator_->inject_faults(faults.memory_budget, faults.fail_allocation_at, faults.unmapped_device_memory);
}

void Device::throw_lost(const std::string& during) const {
  throw DeviceLostError(describe() + " was lost (VK_ERROR_DEVICE_LOST) " + during +
                        ": the GPU was reset or hung; its work is gone. Restart the program (check the "
                        "driver log, e.g. dmesg, for the cause)");
}

void Device::record_queue_events(bool on) {
  std::lock_guard lock(events_mutex_);
  log_events_ = on;
  if (!on) events_.clear();
}

std::vector<QueueEvent> Device::take_queue_events() {
  std::lock_guard lock(events_mutex_);
  return std::exchange(events_, {});
}

void Device::log(QueueEvent::Kind kind, std::chrono::steady_clock::time_point begin, bool transfer) {
  if (!log_events_.load()) return;
  const auto end = std::chrono::steady_clock::now();
  std::lock_guard lock(events_mutex_);
  events_.push_back({kind, begin, end, transfer});
}

uint64_t Device::submit(VkCommandBuffer commands, VkFence fence, bool transfer) {
  if (!timeline_ && !fence) throw Error("internal: a submit without timeline semaphores needs a fence");
  VkSubmitInfo submit{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  submit.commandBufferCount = 1;
  submit.pCommandBuffers = &commands;
  VkTimelineSemaphoreSubmitInfo timeline{VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
  uint64_t value = 0;
  if (timeline_) {
    timeline.signalSemaphoreValueCount = 1;
    timeline.pSignalSemaphoreValues = &value;
    submit.pNext = &timeline;
    submit.signalSemaphoreCount = 1;
    submit.pSignalSemaphores = timeline_.address();
  }
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(queue_mutex_);
    const uint64_t n = ++submits_;
    if (lost_) throw_lost("before submit " + std::to_string(n));
    // Test-only: the injected loss never reaches the driver, so no work is left in flight.
    if (faults_.lose_device_at_submit > 0 && n - submits_at_injection_ >= uint64_t(faults_.lose_device_at_submit)) {
      lost_ = true;
      throw_lost("at submit " + std::to_string(n) + " (injected by TERNVK_FAULT / inject_faults)");
    }
    // Values are taken under the queue mutex, so they increase in submission order as required.
    if (timeline_) value = timeline_value_ + 1;
    if (VkResult r = TERNVK_VK_CALL(vkQueueSubmit(queue_, 1, &submit, fence)); r != VK_SUCCESS) {
      if (r == VK_ERROR_DEVICE_LOST) {
        lost_ = true;
        throw_lost("at submit " + std::to_string(n));
      }
      throw_vk_error(r, "vkQueueSubmit", __FILE__, __LINE__);
    }
    if (timeline_) timeline_value_ = value;  // only a submit that reached the queue takes a value
  }
  log(QueueEvent::Submit, t0, transfer);
  return value;
}

VkResult Device::wait_for(VkFence fence, uint64_t value, uint64_t timeout_ns) {
  if (fence) return vkWaitForFences(device_.get(), 1, &fence, VK_TRUE, timeout_ns);
  if (!timeline_) throw Error("internal: a wait without timeline semaphores needs a fence");
  VkSemaphoreWaitInfo info{VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO};
  info.semaphoreCount = 1;
  info.pSemaphores = timeline_.address();
  info.pValues = &value;
  return vkWaitSemaphores(device_.get(), &info, timeout_ns);
}

void Device::wait_quietly(VkFence fence, uint64_t value) {
  if (fence || (timeline_ && value > 0)) wait_for(fence, value, UINT64_MAX);
}

void Device::wait(VkFence fence, uint64_t value, const char* what, bool transfer) {
  const auto t0 = std::chrono::steady_clock::now();
  if (lost_) {
    // Work submitted before the (injected) loss may still run: let it end so that freeing its
    // buffers is safe, but never wait long on a lost device.
    if (wait_for(fence, value, 1000ull * 1000 * 1000) == VK_TIMEOUT) ++waits_timed_out_;
    throw_lost(std::string("while waiting for ") + what);
  }
  VkResult result = wait_for(fence, value, kFenceTimeoutNs);
  if (result == VK_TIMEOUT) {
    ++waits_timed_out_;
    throw Error(describe() + " did not finish " + what + " within 5 minutes");
  }
  if (result == VK_ERROR_DEVICE_LOST) {
    lost_ = true;
    throw_lost(std::string("while waiting for ") + what);
  }
  if (result != VK_SUCCESS) throw_vk_error(result, fence ? "vkWaitForFences" : "vkWaitSemaphores", __FILE__, __LINE__);
  log(QueueEvent::Wait, t0, transfer);
}

Owned<VkFence> Device::create_fence() {
  VkFenceCreateInfo info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VkFence fence = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateFence(device_.get(), &info, nullptr, &fence));
  return Owned<VkFence>(fence, [device = device_.get()](VkFence f) { vkDestroyFence(device, f, nullptr); });
}

void Device::run_now(const std::function<void(VkCommandBuffer)>& record) {
  // Declared in this order, the fence and then the command buffer go on every way out; a failed
  // submit or wait leaves nothing in flight (wait() lets work on a lost device end first).
  const Owned<VkCommandBuffer> cb = allocate_command_buffer();
  VkCommandBufferBeginInfo begin{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  TERNVK_VK_CHECK(vkBeginCommandBuffer(cb.get(), &begin));
  record(cb.get());
  TERNVK_VK_CHECK(vkEndCommandBuffer(cb.get()));
  const Owned<VkFence> fence = timeline_ ? Owned<VkFence>() : create_fence();  // fence path: a temporary fence
  const uint64_t value = submit(cb.get(), fence.get(), true);
  wait(fence.get(), value, "a transfer", true);
}

void Device::upload(const Buffer& dst, const void* data, VkDeviceSize bytes, VkDeviceSize dst_offset) {
  if (dst_offset + bytes > dst.size())
    throw Error("upload of " + std::to_string(bytes) + " bytes at offset " + std::to_string(dst_offset) +
                " does not fit a buffer of " + std::to_string(dst.size()) + " bytes");
  if (bytes == 0) return;
  if (dst.host_visible()) {
    std::memcpy(static_cast<char*>(dst.mapped()) + dst_offset, data, bytes);
    return;
  }
  const VkDeviceSize chunk = std::min<VkDeviceSize>(bytes, 32ull << 20);
  Buffer staging = create_buffer(chunk, MemoryKind::HostUpload, "upload staging");
  for (VkDeviceSize done = 0; done < bytes; done += chunk) {
    const VkDeviceSize n = std::min(chunk, bytes - done);
    std::memcpy(staging.mapped(), static_cast<const char*>(data) + done, n);
    run_now([&](VkCommandBuffer cb) {
      VkBufferCopy region{0, dst_offset + done, n};
      vkCmdCopyBuffer(cb, staging.handle(), dst.handle(), 1, &region);
    });
  }
}

void Device::download(const Buffer& src, void* data, VkDeviceSize bytes, VkDeviceSize src_offset) {
  if (src_offset + bytes > src.size())
    throw Error("download of " + std::to_string(bytes) + " bytes at offset " + std::to_string(src_offset) +
                " reads past a buffer of " + std::to_string(src.size()) + " bytes");
  if (bytes == 0) return;
  if (src.host_visible()) {
    std::memcpy(data, static_cast<const char*>(src.mapped()) + src_offset, bytes);
    return;
  }
  const VkDeviceSize chunk = std::min<VkDeviceSize>(bytes, 32ull << 20);
  Buffer staging = create_buffer(chunk, MemoryKind::HostReadback, "download staging");
  for (VkDeviceSize done = 0; done < bytes; done += chunk) {
    const VkDeviceSize n = std::min(chunk, bytes - done);
    run_now([&](VkCommandBuffer cb) {
      VkBufferCopy region{src_offset + done, 0, n};
      vkCmdCopyBuffer(cb, src.handle(), staging.handle(), 1, &region);
      VkMemoryBarrier barrier{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
      barrier.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
      barrier.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
      vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &barrier, 0,
                           nullptr, 0, nullptr);
    });
    std::memcpy(static_cast<char*>(data) + done, staging.mapped(), n);
  }
}

}  // namespace ternvk

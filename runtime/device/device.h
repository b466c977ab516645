// A logical device on one physical device: its compute queue, memory, pipelines (cached in memory
// and on disk) and transfers. Several Device objects may share one physical device; each is a
// separate logical device with its own queue and memory (that is how pipelines are tested on one GPU).
#pragma once
#include <vulkan/vulkan.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/device/device_info.h"
#include "runtime/device/instance.h"
#include "runtime/device/memory.h"
#include "runtime/device/pipeline.h"

namespace ternvk {

class Device {
 public:
  Device(Instance& instance, const DeviceInfo& info);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  VkDevice handle() const { return device_; }
  const DeviceInfo& info() const { return info_; }
  Instance& instance() const { return instance_; }
  VkQueue queue() const { return queue_; }
  uint32_t queue_family() const { return queue_family_; }
  VkCommandPool command_pool() const { return command_pool_; }
  VkPipelineCache pipeline_cache() const { return pipeline_cache_; }
  MemoryAllocator& memory() { return *allocator_; }

  Buffer create_buffer(VkDeviceSize size, MemoryKind kind, const std::string& what) {
    return allocator_->create(size, kind, what);
  }
  // Copies host data into a buffer (directly when it is host-visible, else through staging).
  void upload(const Buffer& dst, const void* data, VkDeviceSize bytes, VkDeviceSize dst_offset = 0);
  void download(const Buffer& src, void* data, VkDeviceSize bytes, VkDeviceSize src_offset = 0);

  // The pipeline for a shader and its specialization, built once and cached.
  const Pipeline& pipeline(const std::string& shader, const PipelineOptions& options = {});

  // Records commands into a one-time command buffer, submits it and waits.
  void run_now(const std::function<void(VkCommandBuffer)>& record);
  // Submits a recorded command buffer; waits for `fence` when given. Thread-safe.
  void submit(VkCommandBuffer commands, VkFence fence);
  // Waits for a fence with a bound so that a hung GPU becomes an error, not a hang.
  void wait(VkFence fence, const char* what);

 private:
  void load_pipeline_cache();
  void save_pipeline_cache();
  Instance& instance_;
  DeviceInfo info_;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;
  std::unique_ptr<MemoryAllocator> allocator_;
  std::mutex queue_mutex_;
  std::mutex pool_mutex_;
  std::mutex pipelines_mutex_;
  std::map<std::string, std::unique_ptr<Pipeline>> pipelines_;
};

}  // namespace ternvk

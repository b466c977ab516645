// GPU memory by lifetime: a model is a few large VkDeviceMemory blocks, each split into many
// VkBuffers (one per tensor), instead of one allocation per tensor.
#pragma once
#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/core/owned.h"

namespace ternvk {

class Device;

enum class MemoryKind {
  DeviceLocal,  // weights, activations, KV cache (host-visible too on unified-memory devices)
  HostUpload,   // staging and per-step parameters written by the host
  HostReadback, // results the host reads (host-cached when the device offers it)
};

struct BufferRange {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize offset = 0;
  VkDeviceSize size = 0;
};

class MemoryBlock;

// One VkBuffer bound to a piece of a shared memory block. Move-only; frees its piece on destruction.
class Buffer {
 public:
  Buffer() = default;
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  VkBuffer handle() const { return buffer_.get(); }
  VkDeviceSize size() const { return size_; }
  // Host pointer when the memory is host-visible (always for HostUpload/HostReadback).
  void* mapped() const { return mapped_; }
  bool host_visible() const { return mapped_ != nullptr; }
  BufferRange range() const { return {buffer_.get(), 0, size_}; }
  BufferRange range(VkDeviceSize offset, VkDeviceSize size) const { return {buffer_.get(), offset, size}; }
  explicit operator bool() const { return bool(buffer_); }

 private:
  friend class MemoryAllocator;
  void release();
  Owned<VkBuffer> buffer_;
  VkDeviceSize size_ = 0;
  MemoryBlock* block_ = nullptr;
  VkDeviceSize block_offset_ = 0;
  VkDeviceSize block_size_ = 0;
  bool device_local_ = false;  // a MemoryKind::DeviceLocal buffer (what budgets count)
  void* mapped_ = nullptr;
};

// Sub-allocates buffers from large blocks, per memory type, with a first-fit free list.
class MemoryAllocator {
 public:
  MemoryAllocator(VkDevice device, VkPhysicalDevice physical, bool unified_memory);
  ~MemoryAllocator();
  MemoryAllocator(const MemoryAllocator&) = delete;
  MemoryAllocator& operator=(const MemoryAllocator&) = delete;

  // `what` names the buffer in the error raised when the heap is full.
  Buffer create(VkDeviceSize size, MemoryKind kind, const std::string& what);

  uint64_t bytes_in_use() const;
  // The sizes the live buffers were created with (before alignment): what a memory plan lists.
  uint64_t bytes_requested() const;
  uint64_t peak_bytes_in_use() const { return peak_; }
  // MemoryKind::DeviceLocal buffers only: what a model holds in the GPU's own memory (staging and
  // readback buffers live in system memory on a discrete GPU).
  uint64_t device_local_bytes_in_use() const;
  uint64_t peak_device_local_bytes() const { return peak_device_local_; }
  uint64_t bytes_reserved() const;  // sum of VkDeviceMemory blocks
  static constexpr VkDeviceSize kBlockSize = 64ull << 20;

  // Test-only (fault_injection.h): DeviceLocal buffers beyond `budget` bytes in use (0: no
  // budget), or the `fail_at`th creation from now (<= 0: never), fail as
  // VK_ERROR_OUT_OF_DEVICE_MEMORY would; `unmapped`: DeviceLocal buffers made from now on are not
  // host-visible, as on a discrete GPU (uploads and downloads go through staging).
  void inject_faults(uint64_t budget, int fail_at, bool unmapped = false);

 private:
  uint32_t choose_type(uint32_t type_bits, MemoryKind kind) const;
  VkDevice device_;
  VkPhysicalDeviceMemoryProperties properties_{};
  bool unified_memory_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<MemoryBlock>> blocks_;
  uint64_t peak_ = 0;
  uint64_t peak_device_local_ = 0;
  uint64_t budget_ = 0;
  int fail_at_ = -1;
  int creations_ = 0;  // since inject_faults
  bool unmapped_ = false;
};

}  // namespace ternvk

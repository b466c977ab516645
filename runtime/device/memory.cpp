#include "runtime/device/memory.h"

#include <algorithm>
#include <map>

#include "runtime/device/vk_check.h"

namespace ternvk {

// One VkDeviceMemory with a free list of [offset, size) ranges.
class MemoryBlock {
 public:
  MemoryBlock(VkDevice device, Owned<VkDeviceMemory> memory, VkDeviceSize size, uint32_t type, bool host_visible)
      : device_(device), memory_(std::move(memory)), size_(size), type_(type), free_{{0, size}} {
    if (host_visible) TERNVK_VK_CHECK(vkMapMemory(device_, memory_.get(), 0, VK_WHOLE_SIZE, 0, &mapped_));
  }
  ~MemoryBlock() {
    if (mapped_) vkUnmapMemory(device_, memory_.get());
  }
  bool allocate(VkDeviceSize size, VkDeviceSize alignment, bool device_local, VkDeviceSize* offset) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      VkDeviceSize start = (it->first + alignment - 1) / alignment * alignment;
      VkDeviceSize end = it->first + it->second;
      if (start + size > end) continue;
      VkDeviceSize range_start = it->first;
      free_.erase(it);
      if (start > range_start) free_[range_start] = start - range_start;
      if (start + size < end) free_[start + size] = end - (start + size);
      used_ += size;
      if (device_local) device_local_used_ += size;
      *offset = start;
      return true;
    }
    return false;
  }
  void release(VkDeviceSize offset, VkDeviceSize size, bool device_local, VkDeviceSize requested) {
    used_ -= size;
    requested_ -= requested;
    if (device_local) device_local_used_ -= size;
    auto [it, inserted] = free_.emplace(offset, size);
    (void)inserted;
    auto next = std::next(it);
    if (next != free_.end() && it->first + it->second == next->first) {
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }
  VkDeviceMemory memory() const { return memory_.get(); }
  VkDeviceSize size() const { return size_; }
  VkDeviceSize used() const { return used_; }
  // What the buffers in this block asked for (their sizes, before alignment).
  VkDeviceSize requested() const { return requested_; }
  void add_requested(VkDeviceSize bytes) { requested_ += bytes; }
  VkDeviceSize device_local_used() const { return device_local_used_; }
  uint32_t type() const { return type_; }
  void* mapped() const { return mapped_; }
  std::mutex* owner_mutex = nullptr;

 private:
  VkDevice device_;
  Owned<VkDeviceMemory> memory_;  // freed after the destructor unmapped it
  VkDeviceSize size_;
  uint32_t type_;
  void* mapped_ = nullptr;
  VkDeviceSize used_ = 0;
  VkDeviceSize requested_ = 0;
  VkDeviceSize device_local_used_ = 0;
  std::map<VkDeviceSize, VkDeviceSize> free_;
};

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& other) noexcept { *this = std::move(other); }

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    buffer_ = std::move(other.buffer_);
    size_ = other.size_;
    block_ = other.block_;
    block_offset_ = other.block_offset_;
    block_size_ = other.block_size_;
    device_local_ = other.device_local_;
    mapped_ = other.mapped_;
    other.block_ = nullptr;
    other.mapped_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void Buffer::release() {
  buffer_.reset();
  if (block_) {
    std::lock_guard lock(*block_->owner_mutex);
    block_->release(block_offset_, block_size_, device_local_, size_);
  }
  block_ = nullptr;
  mapped_ = nullptr;
}

MemoryAllocator::MemoryAllocator(VkDevice device, VkPhysicalDevice physical, bool unified_memory)
    : device_(device), unified_memory_(unified_memory) {
  vkGetPhysicalDeviceMemoryProperties(physical, &properties_);
}

MemoryAllocator::~MemoryAllocator() = default;

uint32_t MemoryAllocator::choose_type(uint32_t type_bits, MemoryKind kind) const {
  auto find = [&](VkMemoryPropertyFlags wanted) -> int {
    for (uint32_t i = 0; i < properties_.memoryTypeCount; ++i)
      if ((type_bits & (1u << i)) && (properties_.memoryTypes[i].propertyFlags & wanted) == wanted)
        return static_cast<int>(i);
    return -1;
  };
  const VkMemoryPropertyFlags local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  std::vector<VkMemoryPropertyFlags> order;
  switch (kind) {
    case MemoryKind::DeviceLocal:
      if (unified_memory_) order.push_back(local | host);
      order.push_back(local);
      order.push_back(0);
      break;
    case MemoryKind::HostUpload:
      order = {host};
      break;
    case MemoryKind::HostReadback:
      order = {host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, host};
      break;
  }
  for (auto flags : order)
    if (int t = find(flags); t >= 0) return static_cast<uint32_t>(t);
  throw Error("the device offers no memory type for this buffer (type bits 0x" + std::to_string(type_bits) + ")");
}

Buffer MemoryAllocator::create(VkDeviceSize size, MemoryKind kind, const std::string& what) {
  size = std::max<VkDeviceSize>(size, 16);
  VkBufferCreateInfo info{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  info.size = size;
  info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
               VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT |
               VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT;
  info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  Buffer buffer;
  buffer.size_ = size;
  buffer.device_local_ = kind == MemoryKind::DeviceLocal;
  uint64_t largest_heap = 0;
  for (uint32_t h = 0; h < properties_.memoryHeapCount; ++h)
    largest_heap = std::max<uint64_t>(largest_heap, properties_.memoryHeaps[h].size);
  if (size > largest_heap)
    throw OutOfMemoryError("out of GPU memory: " + what + " needs " + std::to_string(size >> 20) +
                           " MiB but the largest device heap holds " + std::to_string(largest_heap >> 20) +
                           " MiB. Use a smaller model or context, or another device (--device)");
  VkBuffer raw = VK_NULL_HANDLE;
  if (VkResult r = TERNVK_VK_CALL(vkCreateBuffer(device_, &info, nullptr, &raw)); r != VK_SUCCESS)
    throw OutOfMemoryError("could not create a buffer of " + std::to_string(size) + " bytes for " + what + " (" +
                           vk_result_name(r) + ")");
  buffer.buffer_ = Owned<VkBuffer>(raw, [d = device_](VkBuffer b) { vkDestroyBuffer(d, b, nullptr); });
  VkMemoryRequirements req{};
  vkGetBufferMemoryRequirements(device_, raw, &req);
  const uint32_t type = choose_type(req.memoryTypeBits, kind);
  const bool host_visible = properties_.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT;

  std::lock_guard lock(mutex_);
  if (budget_ > 0 || fail_at_ > 0) {  // test-only fault injection
    ++creations_;
    uint64_t in_use = 0;  // the budget is the GPU's own memory: DeviceLocal buffers
    for (auto& b : blocks_) in_use += b->device_local_used();
    if (fail_at_ > 0 && creations_ == fail_at_)
      throw OutOfMemoryError("out of GPU memory allocating " + std::to_string(req.size) + " bytes for " + what +
                             " (VK_ERROR_OUT_OF_DEVICE_MEMORY, injected: buffer " + std::to_string(creations_) +
                             " was set to fail)");
    if (budget_ > 0 && buffer.device_local_ && in_use + req.size > budget_)
      throw OutOfMemoryError("out of GPU memory allocating " + std::to_string(req.size) + " bytes for " + what +
                             " (VK_ERROR_OUT_OF_DEVICE_MEMORY, injected: a budget of " + std::to_string(budget_) +
                             " bytes with " + std::to_string(in_use) + " in use, " +
                             std::to_string(in_use + req.size - budget_) + " bytes short)");
  }
  MemoryBlock* block = nullptr;
  VkDeviceSize offset = 0;
  for (auto& b : blocks_)
    if (b->type() == type && b->allocate(req.size, req.alignment, buffer.device_local_, &offset)) {
      block = b.get();
      break;
    }
  if (!block) {
    const auto& heap = properties_.memoryHeaps[properties_.memoryTypes[type].heapIndex];
    if (req.size > heap.size)
      throw OutOfMemoryError("out of GPU memory: " + what + " needs " + std::to_string(size >> 20) +
                             " MiB but the device heap holds only " + std::to_string(heap.size >> 20) +
                             " MiB. Use a smaller model or context, or another device (--device)");
    const VkDeviceSize block_size = std::min(std::max(kBlockSize, req.size), heap.size);
    VkMemoryAllocateInfo alloc{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    alloc.allocationSize = block_size;
    alloc.memoryTypeIndex = type;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    VkResult result = TERNVK_VK_CALL(vkAllocateMemory(device_, &alloc, nullptr, &memory));
    if (result != VK_SUCCESS) {
      throw OutOfMemoryError("out of GPU memory allocating " + std::to_string(size >> 20) + " MiB for " + what +
                             " (" + vk_result_name(result) + "): the heap holds " + std::to_string(heap.size >> 20) +
                             " MiB and ternvk already uses " + std::to_string(bytes_reserved() >> 20) +
                             " MiB of it. Use a smaller model or context, or another device (--device)");
    }
    Owned<VkDeviceMemory> owned(memory, [d = device_](VkDeviceMemory m) { vkFreeMemory(d, m, nullptr); });
    auto fresh = std::make_unique<MemoryBlock>(device_, std::move(owned), block_size, type, host_visible);
    fresh->owner_mutex = &mutex_;
    blocks_.push_back(std::move(fresh));
    block = blocks_.back().get();
    if (!block->allocate(req.size, req.alignment, buffer.device_local_, &offset))
      throw Error("internal: fresh memory block too small");
  }
  buffer.block_ = block;
  buffer.block_offset_ = offset;
  buffer.block_size_ = req.size;
  block->add_requested(buffer.size_);
  TERNVK_VK_CHECK(vkBindBufferMemory(device_, raw, block->memory(), offset));
  // Test-only (unmapped): a DeviceLocal buffer the host cannot map, as on a discrete GPU.
  if (block->mapped() && !(unmapped_ && buffer.device_local_))
    buffer.mapped_ = static_cast<char*>(block->mapped()) + offset;
  uint64_t in_use = 0, device_local = 0;
  for (auto& b : blocks_) in_use += b->used(), device_local += b->device_local_used();
  peak_ = std::max(peak_, in_use);
  peak_device_local_ = std::max(peak_device_local_, device_local);
  return buffer;
}

uint64_t MemoryAllocator::bytes_requested() const {
  std::lock_guard lock(mutex_);
  uint64_t total = 0;
  for (const auto& b : blocks_) total += b->requested();
  return total;
}

uint64_t MemoryAllocator::bytes_in_use() const {
  std::lock_guard lock(mutex_);
  uint64_t total = 0;
  for (auto& b : blocks_) total += b->used();
  return total;
}

uint64_t MemoryAllocator::device_local_bytes_in_use() const {
  std::lock_guard lock(mutex_);
  uint64_t total = 0;
  for (auto& b : blocks_) total += b->device_local_used();
  return total;
}

void MemoryAllocator::inject_faults(uint64_t budget, int fail_at, bool unmapped) {
  std::lock_guard lock(mutex_);
  budget_ = budget;
  fail_at_ = fail_at;
  unmapped_ = unmapped;
  creations_ = 0;
}

uint64_t MemoryAllocator::bytes_reserved() const {
  uint64_t total = 0;
  for (auto& b : blocks_) total += b->size();
  return total;
}

}  // namespace ternvk

#include "runtime/device/recording.h"

#include "runtime/device/device.h"
#include "runtime/device/vk_check.h"

namespace ternvk {
namespace {
constexpr uint32_t kSetsPerPool = 256;
// Descriptors a pool holds, by BindingKind (storage, uniform, uniform texel): 8, 1 and 2 a set on
// average; a set of more takes them from the others' share, and a new pool starts when one runs out.
constexpr uint32_t kDescriptorsPerPool[3] = {kSetsPerPool * 8, kSetsPerPool, kSetsPerPool * 2};
constexpr uint32_t kTimestampCapacity = 8192;
}  // namespace

Recording::Recording(Device& device, RecordingOptions options)
    : device_(device), options_(options), commands_(device.allocate_command_buffer()) {
  VkDevice vk = device.handle();
  if (!device.timeline_semaphores()) fence_ = device.create_fence();  // fence path: no timeline semaphore
  VkCommandBufferBeginInfo begin{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  TERNVK_VK_CHECK(vkBeginCommandBuffer(commands_.get(), &begin));
  mode_ = !options.timestamps ? TimestampMode::None : options.whole_pass ? TimestampMode::Pass : TimestampMode::Dispatch;
  if (options.timestamps && device.info().timestamps) {
    VkQueryPoolCreateInfo q{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    q.queryType = VK_QUERY_TYPE_TIMESTAMP;
    q.queryCount = kTimestampCapacity;
    VkQueryPool pool = VK_NULL_HANDLE;
    TERNVK_VK_CHECK(vkCreateQueryPool(vk, &q, nullptr, &pool));
    query_pool_ = Owned<VkQueryPool>(pool, [vk](VkQueryPool p) { vkDestroyQueryPool(vk, p, nullptr); });
    query_capacity_ = kTimestampCapacity;
    vkCmdResetQueryPool(commands_.get(), pool, 0, query_capacity_);
    write_timestamp("start");
  }
  // Earlier submits on this queue may have written what this one reads.
  barrier();
}

Recording::~Recording() {
  // The command buffer and its descriptor sets must not be freed while the last submit runs.
  if (pending_) device_.wait_quietly(fence_.get(), submitted_value_);
}

void Recording::ensure_descriptor_pool(const Pipeline& pipeline) {
  // A new pool when this set's descriptors of any kind would not fit what is left of the current one.
  uint32_t need[3] = {0, 0, 0};
  for (const auto& b : pipeline.reflection().bindings) ++need[static_cast<int>(b.kind)];
  for (int k = 0; k < 3; ++k)
    if (need[k] > kDescriptorsPerPool[k])
      throw Error("shader " + pipeline.name() + " binds more buffers of one kind than a descriptor pool holds");
  if (sets_left_in_pool_ > 0 && need[0] <= descriptors_left_[0] && need[1] <= descriptors_left_[1] &&
      need[2] <= descriptors_left_[2]) {
    for (int k = 0; k < 3; ++k) descriptors_left_[k] -= need[k];
    return;
  }
  VkDescriptorPoolSize sizes[] = {{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kDescriptorsPerPool[0]},
                                  {VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER, kDescriptorsPerPool[1]},
                                  {VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, kDescriptorsPerPool[2]}};
  VkDescriptorPoolCreateInfo info{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  info.maxSets = kSetsPerPool;
  info.poolSizeCount = 3;
  info.pPoolSizes = sizes;
  VkDevice vk = device_.handle();
  VkDescriptorPool pool = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateDescriptorPool(vk, &info, nullptr, &pool));
  Owned<VkDescriptorPool> owned(pool, [vk](VkDescriptorPool p) { vkDestroyDescriptorPool(vk, p, nullptr); });
  pools_.push_back(std::move(owned));  // owned before the push, which may throw
  sets_left_in_pool_ = kSetsPerPool;
  for (int k = 0; k < 3; ++k) descriptors_left_[k] = kDescriptorsPerPool[k] - need[k];
}

void Recording::barrier() {
  VkMemoryBarrier b{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                    VK_ACCESS_TRANSFER_WRITE_BIT;
  const VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  vkCmdPipelineBarrier(commands_.get(), stages, stages, 0, 1, &b, 0, nullptr, 0, nullptr);
  ++barrier_count_;
  written_since_barrier_.clear();
  read_since_barrier_.clear();
}

void Recording::track(const Pipeline& pipeline, const std::vector<BufferRange>& bindings) {
  const auto& reflected = pipeline.reflection().bindings;
  bool hazard = false;
  for (size_t i = 0; i < bindings.size(); ++i) {
    VkBuffer b = bindings[i].buffer;
    if (written_since_barrier_.count(b)) hazard = true;                       // read/write after write
    if (!reflected[i].read_only && read_since_barrier_.count(b)) hazard = true;  // write after read
  }
  if (hazard && options_.automatic_barriers && chain_ != ChainState::Running) barrier();
  for (size_t i = 0; i < bindings.size(); ++i) {
    if (reflected[i].read_only) read_since_barrier_.insert(bindings[i].buffer);
    else written_since_barrier_.insert(bindings[i].buffer);
  }
}

void Recording::begin_chain() {
  if (chain_ != ChainState::Closed) throw Error("internal: a chain of dispatches begun twice");
  // Whatever came before is ordered before every link, not only before those that touch it.
  if ((!written_since_barrier_.empty() || !read_since_barrier_.empty()) && options_.automatic_barriers) barrier();
  chain_ = ChainState::Running;
}

void Recording::end_chain() { chain_ = ChainState::Closed; }

void Recording::track_transfer(VkBuffer read, VkBuffer written) {
  if (chain_ != ChainState::Closed) throw Error("internal: a transfer inside a chain of dispatches");
  if ((written_since_barrier_.count(read) || written_since_barrier_.count(written) ||
       read_since_barrier_.count(written)) &&
      options_.automatic_barriers)
    barrier();
  if (read) read_since_barrier_.insert(read);
  written_since_barrier_.insert(written);
}

void Recording::log_command(RecordedCommand command) {
  const std::string label = command.label;
  log_.push_back(std::move(command));
  if (mode_ == TimestampMode::Dispatch) write_timestamp(label);
}

void Recording::write_timestamp(const std::string& label) {
  if (!query_pool_) return;
  if (labels_.size() >= query_capacity_)
    throw Error("a recording holds at most " + std::to_string(query_capacity_) + " timestamped commands");
  vkCmdWriteTimestamp(commands_.get(), VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, query_pool_.get(),
                      static_cast<uint32_t>(labels_.size()));
  labels_.push_back(label);
}

void Recording::dispatch(const Pipeline& pipeline, std::initializer_list<BufferRange> bindings, const void* push,
                         uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz, const DispatchNote& note) {
  dispatch(pipeline, std::vector<BufferRange>(bindings), push, push_size, gx, gy, gz, note);
}

void Recording::dispatch(const Pipeline& pipeline, const std::vector<BufferRange>& bindings, const void* push,
                         uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz, const DispatchNote& note) {
  if (finished_) throw Error("internal: dispatch recorded after finish()");
  const auto& reflected = pipeline.reflection();
  if (bindings.size() != reflected.bindings.size())
    throw Error("shader " + pipeline.name() + " declares " + std::to_string(reflected.bindings.size()) +
                " buffers but the dispatch binds " + std::to_string(bindings.size()));
  if (push_size != reflected.push_constant_size)
    throw Error("shader " + pipeline.name() + " takes " + std::to_string(reflected.push_constant_size) +
                " bytes of push constants but the dispatch pushes " + std::to_string(push_size));
  const auto& info = device_.info();
  for (size_t i = 0; i < bindings.size(); ++i) {
    if (!bindings[i].buffer) throw Error("shader " + pipeline.name() + ": binding " + std::to_string(i) + " is empty");
    if (reflected.bindings[i].kind == BindingKind::UniformTexelBuffer) {
      const uint64_t texels = (bindings[i].size ? bindings[i].size : 16) / 16;
      if (bindings[i].size % 16 || texels > info.max_texel_buffer_elements)
        throw Error("shader " + pipeline.name() + ": texel binding " + std::to_string(i) + " spans " +
                    std::to_string(bindings[i].size) + " bytes; it must be a multiple of 16 and at most " +
                    std::to_string(info.max_texel_buffer_elements) + " uvec4 texels on this device");
      if (bindings[i].offset % info.min_texel_buffer_offset_alignment)
        throw Error("shader " + pipeline.name() + ": texel binding " + std::to_string(i) + " offset " +
                    std::to_string(bindings[i].offset) + " is not aligned to " +
                    std::to_string(info.min_texel_buffer_offset_alignment));
      continue;
    }
    if (bindings[i].size > info.max_storage_buffer_range)
      throw Error("shader " + pipeline.name() + ": binding " + std::to_string(i) + " spans " +
                  std::to_string(bindings[i].size) + " bytes, more than this device's maxStorageBufferRange (" +
                  std::to_string(info.max_storage_buffer_range) + "); the tensor must be split");
    if (bindings[i].offset % info.min_storage_buffer_offset_alignment)
      throw Error("shader " + pipeline.name() + ": binding " + std::to_string(i) + " offset " +
                  std::to_string(bindings[i].offset) + " is not aligned to " +
                  std::to_string(info.min_storage_buffer_offset_alignment));
  }
  if (gx == 0 || gy == 0 || gz == 0) return;  // nothing to do; a zero-size dispatch is legal but pointless
  if (gx > info.max_workgroup_count_x)
    throw Error("shader " + pipeline.name() + ": " + std::to_string(gx) + " workgroups exceed the device limit of " +
                std::to_string(info.max_workgroup_count_x));

  track(pipeline, bindings);
  ensure_descriptor_pool(pipeline);
  VkDescriptorSetLayout layout = pipeline.set_layout();
  VkDescriptorSetAllocateInfo alloc{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  alloc.descriptorPool = pools_.back().get();
  alloc.descriptorSetCount = 1;
  alloc.pSetLayouts = &layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkAllocateDescriptorSets(device_.handle(), &alloc, &set));
  --sets_left_in_pool_;

  std::vector<VkDescriptorBufferInfo> infos(bindings.size());
  std::vector<VkBufferView> texel_views(bindings.size(), VK_NULL_HANDLE);
  std::vector<VkWriteDescriptorSet> writes(bindings.size());
  for (size_t i = 0; i < bindings.size(); ++i) {
    const BindingKind kind = reflected.bindings[i].kind;
    writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[i].dstSet = set;
    writes[i].dstBinding = reflected.bindings[i].binding;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = descriptor_type(kind);
    if (kind == BindingKind::UniformTexelBuffer) {
      VkBufferViewCreateInfo view{VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO};
      view.buffer = bindings[i].buffer;
      view.format = VK_FORMAT_R32G32B32A32_UINT;
      view.offset = bindings[i].offset;
      view.range = bindings[i].size ? bindings[i].size : VK_WHOLE_SIZE;
      VkDevice vk = device_.handle();
      TERNVK_VK_CHECK(vkCreateBufferView(vk, &view, nullptr, &texel_views[i]));
      Owned<VkBufferView> owned(texel_views[i], [vk](VkBufferView v) { vkDestroyBufferView(vk, v, nullptr); });
      views_.push_back(std::move(owned));
      writes[i].pTexelBufferView = &texel_views[i];
    } else {
      infos[i] = {bindings[i].buffer, bindings[i].offset, bindings[i].size ? bindings[i].size : VK_WHOLE_SIZE};
      writes[i].pBufferInfo = &infos[i];
    }
  }
  vkUpdateDescriptorSets(device_.handle(), static_cast<uint32_t>(writes.size()), writes.data(), 0, nullptr);

  vkCmdBindPipeline(commands_.get(), VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle());
  vkCmdBindDescriptorSets(commands_.get(), VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout(), 0, 1, &set, 0, nullptr);
  if (push_size) vkCmdPushConstants(commands_.get(), pipeline.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size, push);
  vkCmdDispatch(commands_.get(), gx, gy, gz);
  ++dispatch_count_;
  log_command({RecordedCommand::Dispatch, pipeline.name(), note.label.empty() ? pipeline.name() : note.label, note.work});
}

void Recording::copy(BufferRange src, BufferRange dst) {
  if (src.size != dst.size) throw Error("internal: copy between ranges of different sizes");
  track_transfer(src.buffer, dst.buffer);
  VkBufferCopy region{src.offset, dst.offset, src.size};
  vkCmdCopyBuffer(commands_.get(), src.buffer, dst.buffer, 1, &region);
  log_command({RecordedCommand::Copy, "copy", "copy", DispatchWork{.bytes = 2.0 * double(src.size)}});
}

void Recording::fill(BufferRange dst, uint32_t value) {
  track_transfer(VK_NULL_HANDLE, dst.buffer);
  vkCmdFillBuffer(commands_.get(), dst.buffer, dst.offset, dst.size ? dst.size : VK_WHOLE_SIZE, value);
  log_command({RecordedCommand::Fill, "fill", "fill",
               dst.size ? std::optional(DispatchWork{.bytes = double(dst.size)}) : std::nullopt});
}

void Recording::finish() {
  if (finished_) return;
  if (mode_ == TimestampMode::Pass) write_timestamp("pass");
  // Make every write visible to the host, which reads results after the wait.
  VkMemoryBarrier b{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(commands_.get(), VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &b, 0, nullptr, 0, nullptr);
  TERNVK_VK_CHECK(vkEndCommandBuffer(commands_.get()));
  finished_ = true;
}

void Recording::submit() {
  if (!finished_) finish();
  if (pending_) wait();
  if (fence_) TERNVK_VK_CHECK(vkResetFences(device_.handle(), 1, fence_.address()));
  submitted_value_ = device_.submit(commands_.get(), fence_.get());
  pending_ = true;
}

void Recording::wait() {
  if (!pending_) return;
  pending_ = false;
  if (fence_) device_.wait(fence_.get(), "a recorded command buffer");
  else device_.wait_value(submitted_value_, "a recorded command buffer");
}

double Recording::pass_microseconds() const {
  double total = 0;
  for (const auto& t : timings()) total += t.microseconds;
  return total;
}

std::vector<DispatchTiming> Recording::timings() const {
  std::vector<DispatchTiming> out;
  if (!query_pool_ || labels_.size() < 2) return out;
  std::vector<uint64_t> stamps(labels_.size());
  VkResult r = vkGetQueryPoolResults(device_.handle(), query_pool_.get(), 0, static_cast<uint32_t>(stamps.size()),
                                     stamps.size() * sizeof(uint64_t), stamps.data(), sizeof(uint64_t),
                                     VK_QUERY_RESULT_64_BIT);
  if (r != VK_SUCCESS) return out;
  const double period_us = device_.info().timestamp_period_ns / 1000.0;
  for (size_t i = 1; i < stamps.size(); ++i)
    out.push_back({labels_[i], static_cast<double>(stamps[i] - stamps[i - 1]) * period_us});
  return out;
}

}  // namespace ternvk

#include "runtime/ops/arrival_counters.h"

#include "runtime/core/error.h"

namespace ternvk::ops {

void zero_counters_now(Device& device, BufferRange range) {
  if (!range.buffer || range.size == 0 || range.size % 4)
    throw Error("internal: arrival counters need a buffer range of whole uint32");
  device.run_now([&](VkCommandBuffer cb) {
    VkMemoryBarrier before{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    before.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    before.dstAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &before, 0,
                         nullptr, 0, nullptr);
    vkCmdFillBuffer(cb, range.buffer, range.offset, range.size, 0);
    VkMemoryBarrier after{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    after.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    after.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &after, 0,
                         nullptr, 0, nullptr);
  });
}

}  // namespace ternvk::ops

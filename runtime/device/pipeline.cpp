#include "runtime/device/pipeline.h"

#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/shader_registry.h"
#include "runtime/device/vk_check.h"

namespace ternvk {

VkDescriptorType descriptor_type(BindingKind kind) {
  switch (kind) {
    case BindingKind::UniformBuffer: return VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER;
    case BindingKind::UniformTexelBuffer: return VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
    default: return VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
  }
}

Pipeline::Pipeline(Device& device, const std::string& shader, const PipelineOptions& options)
    : device_(device.handle()), name_(shader) {
  const auto& table = shaders::all();
  auto found = table.find(shader);
  if (found == table.end()) throw Error("no embedded shader named '" + shader + "'");
  const std::span<const uint32_t> spirv = found->second;
  reflection_ = reflect_spirv(spirv, shader);

  for (int d = 0; d < 3; ++d) {
    local_size_[d] = reflection_.local_size[d];
    int id = reflection_.local_size_spec_id[d];
    if (id >= 0)
      if (auto v = options.constants.find(static_cast<uint32_t>(id)); v != options.constants.end())
        local_size_[d] = v->second;
  }
  const uint32_t invocations = local_size_[0] * local_size_[1] * local_size_[2];
  if (invocations == 0 || invocations > device.info().max_workgroup_invocations)
    throw Error("shader " + shader + ": workgroup of " + std::to_string(invocations) +
                " invocations does not fit this device (max " +
                std::to_string(device.info().max_workgroup_invocations) + ")");

  std::vector<VkDescriptorSetLayoutBinding> bindings;
  for (const auto& b : reflection_.bindings) {
    VkDescriptorSetLayoutBinding l{};
    l.binding = b.binding;
    l.descriptorType = descriptor_type(b.kind);
    l.descriptorCount = 1;
    l.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    bindings.push_back(l);
  }
  VkDescriptorSetLayoutCreateInfo set_info{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  set_info.bindingCount = static_cast<uint32_t>(bindings.size());
  set_info.pBindings = bindings.data();
  VkDevice vk = device_;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateDescriptorSetLayout(vk, &set_info, nullptr, &set_layout));
  set_layout_ = Owned<VkDescriptorSetLayout>(
      set_layout, [vk](VkDescriptorSetLayout l) { vkDestroyDescriptorSetLayout(vk, l, nullptr); });

  VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, reflection_.push_constant_size};
  VkPipelineLayoutCreateInfo layout_info{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  layout_info.setLayoutCount = 1;
  layout_info.pSetLayouts = set_layout_.address();
  layout_info.pushConstantRangeCount = reflection_.push_constant_size ? 1 : 0;
  layout_info.pPushConstantRanges = &push;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreatePipelineLayout(vk, &layout_info, nullptr, &layout));
  layout_ = Owned<VkPipelineLayout>(layout, [vk](VkPipelineLayout l) { vkDestroyPipelineLayout(vk, l, nullptr); });

  VkShaderModuleCreateInfo module_info{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  module_info.codeSize = spirv.size() * sizeof(uint32_t);
  module_info.pCode = spirv.data();
  VkShaderModule raw_module = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateShaderModule(vk, &module_info, nullptr, &raw_module));
  // Only needed to build the pipeline: destroyed at the end of the constructor, however it ends.
  const Owned<VkShaderModule> module(raw_module, [vk](VkShaderModule m) { vkDestroyShaderModule(vk, m, nullptr); });

  std::vector<VkSpecializationMapEntry> entries;
  std::vector<uint32_t> values;
  for (auto [id, value] : options.constants) {
    if (!reflection_.spec_defaults.count(id)) continue;  // the shader does not declare it
    entries.push_back({id, static_cast<uint32_t>(values.size() * 4), 4});
    values.push_back(value);
  }
  VkSpecializationInfo spec{static_cast<uint32_t>(entries.size()), entries.data(), values.size() * 4, values.data()};

  VkPipelineShaderStageRequiredSubgroupSizeCreateInfo subgroup{
      VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO};
  VkComputePipelineCreateInfo info{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  info.stage.module = module.get();
  info.stage.pName = "main";
  info.stage.pSpecializationInfo = &spec;
  if (options.required_subgroup_size && device.info().subgroup_size_control) {
    subgroup.requiredSubgroupSize = options.required_subgroup_size;
    info.stage.pNext = &subgroup;
    if (local_size_[0] % options.required_subgroup_size == 0)
      info.stage.flags = VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT;
  }
  info.layout = layout_.get();
  VkPipeline pipeline = VK_NULL_HANDLE;
  TERNVK_VK_CHECK(vkCreateComputePipelines(vk, device.pipeline_cache(), 1, &info, nullptr, &pipeline));
  pipeline_ = Owned<VkPipeline>(pipeline, [vk](VkPipeline p) { vkDestroyPipeline(vk, p, nullptr); });
}

}  // namespace ternvk

// A compute pipeline built from an embedded SPIR-V module, with specialization constants for
// tile sizes and variants. Its descriptor layout and push-constant size come from reflection.
#pragma once
#include <vulkan/vulkan.h>

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "runtime/core/owned.h"
#include "runtime/device/spirv_reflect.h"

namespace ternvk {

// Specialization constant id -> 32-bit value (ints, uints, floats as bits, bools as 0/1).
using SpecConstants = std::map<uint32_t, uint32_t>;

struct PipelineOptions {
  SpecConstants constants;
  // Require this subgroup size (needs subgroup size control); 0 leaves it to the driver.
  uint32_t required_subgroup_size = 0;
};

class Device;

VkDescriptorType descriptor_type(BindingKind kind);

class Pipeline {
 public:
  Pipeline(Device& device, const std::string& shader, const PipelineOptions& options);
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  VkPipeline handle() const { return pipeline_.get(); }
  VkPipelineLayout layout() const { return layout_.get(); }
  VkDescriptorSetLayout set_layout() const { return set_layout_.get(); }
  const ReflectedShader& reflection() const { return reflection_; }
  const std::string& name() const { return name_; }
  // The workgroup size after specialization.
  const std::array<uint32_t, 3>& local_size() const { return local_size_; }

 private:
  VkDevice device_;
  std::string name_;
  ReflectedShader reflection_;
  std::array<uint32_t, 3> local_size_{1, 1, 1};
  Owned<VkDescriptorSetLayout> set_layout_;  // destroyed last, in reverse order of creation
  Owned<VkPipelineLayout> layout_;
  Owned<VkPipeline> pipeline_;
};

}  // namespace ternvk

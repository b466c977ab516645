// Reads what a compute shader declares (bindings, push-constant size, workgroup size and which
// specialization constants set it) from its SPIR-V, so dispatches can be checked instead of
// restating every layout by hand.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace ternvk {

enum class BindingKind {
  StorageBuffer,
  UniformBuffer,
  UniformTexelBuffer,  // `uniform usamplerBuffer` & co.: read through the texture path (uvec4 texels)
};

struct ReflectedBinding {
  uint32_t binding = 0;
  BindingKind kind = BindingKind::StorageBuffer;
  bool read_only = false; // every member NonWritable (or a uniform/texel buffer): never written
};

struct ReflectedShader {
  std::vector<ReflectedBinding> bindings;  // set 0, sorted by binding
  uint32_t push_constant_size = 0;
  uint32_t local_size[3] = {1, 1, 1};
  int local_size_spec_id[3] = {-1, -1, -1};  // spec id that overrides a dimension, or -1
  std::map<uint32_t, uint32_t> spec_defaults; // spec id -> default value (32-bit scalars)
};

// Throws ternvk::Error naming `name` when the module is malformed or uses more than set 0.
ReflectedShader reflect_spirv(std::span<const uint32_t> words, const std::string& name);

}  // namespace ternvk

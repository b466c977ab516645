#include "runtime/device/spirv_reflect.h"

#include <algorithm>
#include <array>
#include <unordered_map>
#include <unordered_set>

#include "runtime/core/error.h"

namespace ternvk {
namespace {

// The few SPIR-V opcodes and enums this reflector needs (SPIR-V 1.5 specification).
enum : uint32_t {
  OpExecutionMode = 16, OpTypeInt = 21, OpTypeFloat = 22, OpTypeVector = 23, OpTypeArray = 28,
  OpTypeImage = 25, OpTypeSampledImage = 27, OpTypeStruct = 30, OpTypePointer = 32, OpConstant = 43, OpConstantComposite = 44, OpSpecConstantTrue = 48,
  OpSpecConstantFalse = 49, OpSpecConstant = 50, OpSpecConstantComposite = 51, OpVariable = 59, OpDecorate = 71,
  OpMemberDecorate = 72, OpExecutionModeId = 331,
  ModeLocalSize = 17, ModeLocalSizeId = 38,
  DecSpecId = 1, DecBlock = 2, DecBufferBlock = 3, DecBuiltIn = 11, DecNonWritable = 24,
  DecBinding = 33, DecDescriptorSet = 34, DecOffset = 35,
  BuiltInWorkgroupSize = 25, DimBuffer = 5,
  ClassUniformConstant = 0, ClassUniform = 2, ClassPushConstant = 9, ClassStorageBuffer = 12,
};

}  // namespace

ReflectedShader reflect_spirv(std::span<const uint32_t> words, const std::string& name) {
  if (words.size() < 5 || words[0] != 0x07230203) throw Error("shader " + name + ": not a SPIR-V module");
  ReflectedShader out;
  std::unordered_map<uint32_t, uint32_t> binding_of, set_of, spec_id_of, scalar_size, constant_value;
  std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> pointer_of;  // id -> (class, type)
  std::unordered_map<uint32_t, std::vector<uint32_t>> struct_members;
  std::unordered_map<uint32_t, std::vector<uint32_t>> member_offsets;
  std::unordered_map<uint32_t, std::unordered_set<uint32_t>> member_nonwritable;
  std::unordered_set<uint32_t> nonwritable, buffer_block, workgroup_builtin;
  std::unordered_map<uint32_t, uint32_t> buffer_images, sampled_image_of;
  std::vector<std::pair<uint32_t, uint32_t>> variables;  // (id, pointer type)
  std::unordered_map<uint32_t, uint32_t> spec_constant_default;
  uint32_t local_size_ids[3] = {0, 0, 0};
  std::unordered_map<uint32_t, std::array<uint32_t, 3>> composites;

  for (size_t i = 5; i < words.size();) {
    const uint32_t op = words[i] & 0xffff, count = words[i] >> 16;
    if (count == 0 || i + count > words.size()) throw Error("shader " + name + ": truncated SPIR-V");
    const uint32_t* w = &words[i];
    switch (op) {
      case OpExecutionMode:
        if (w[2] == ModeLocalSize && count >= 6) std::copy(w + 3, w + 6, out.local_size);
        break;
      case OpExecutionModeId:
        if (w[2] == ModeLocalSizeId && count >= 6) std::copy(w + 3, w + 6, local_size_ids);
        break;
      case OpTypeInt:
      case OpTypeFloat: scalar_size[w[1]] = w[2] / 8; break;
      case OpTypeVector: scalar_size[w[1]] = scalar_size[w[2]] * w[3]; break;
      case OpTypeArray: scalar_size[w[1]] = scalar_size[w[2]] * constant_value[w[3]]; break;
      case OpTypeStruct: struct_members[w[1]] = std::vector<uint32_t>(w + 2, w + count); break;
      case OpTypePointer: pointer_of[w[1]] = {w[2], w[3]}; break;
      case OpTypeImage:
        if (count >= 9 && w[3] == DimBuffer) buffer_images[w[1]] = w[7];  // Sampled: 1 texel, 2 storage image
        break;
      case OpTypeSampledImage: sampled_image_of[w[1]] = w[2]; break;
      case OpConstant: constant_value[w[2]] = w[3]; break;
      case OpSpecConstant: spec_constant_default[w[2]] = w[3]; constant_value[w[2]] = w[3]; break;
      case OpSpecConstantTrue: spec_constant_default[w[2]] = 1; break;
      case OpSpecConstantFalse: spec_constant_default[w[2]] = 0; break;
      case OpConstantComposite:
      case OpSpecConstantComposite:
        if (count >= 6) composites[w[2]] = {w[3], w[4], w[5]};
        break;
      case OpVariable: variables.emplace_back(w[2], w[1]); break;
      case OpDecorate:
        if (w[2] == DecBinding) binding_of[w[1]] = w[3];
        if (w[2] == DecDescriptorSet) set_of[w[1]] = w[3];
        if (w[2] == DecSpecId) spec_id_of[w[1]] = w[3];
        if (w[2] == DecNonWritable) nonwritable.insert(w[1]);
        if (w[2] == DecBufferBlock) buffer_block.insert(w[1]);
        if (w[2] == DecBuiltIn && w[3] == BuiltInWorkgroupSize) workgroup_builtin.insert(w[1]);
        break;
      case OpMemberDecorate:
        if (w[3] == DecNonWritable) member_nonwritable[w[1]].insert(w[2]);
        if (w[3] == DecOffset) {
          auto& offsets = member_offsets[w[1]];
          if (offsets.size() <= w[2]) offsets.resize(w[2] + 1);
          offsets[w[2]] = w[4];
        }
        break;
      default: break;
    }
    i += count;
  }

  // glslang expresses local_size_x_id as a WorkgroupSize built-in composite of spec constants.
  for (uint32_t id : workgroup_builtin)
    if (auto c = composites.find(id); c != composites.end()) std::copy(c->second.begin(), c->second.end(), local_size_ids);
  for (auto& [id, value] : spec_constant_default)
    if (auto s = spec_id_of.find(id); s != spec_id_of.end()) out.spec_defaults[s->second] = value;
  for (int d = 0; d < 3; ++d)
    if (local_size_ids[d] && spec_id_of.count(local_size_ids[d])) {
      out.local_size_spec_id[d] = static_cast<int>(spec_id_of[local_size_ids[d]]);
      out.local_size[d] = spec_constant_default[local_size_ids[d]];
    } else if (local_size_ids[d] && constant_value.count(local_size_ids[d])) {
      out.local_size[d] = constant_value[local_size_ids[d]];
    }

  for (auto [var, pointer_type] : variables) {
    auto ptr = pointer_of.find(pointer_type);
    if (ptr == pointer_of.end()) continue;
    auto [storage_class, type] = ptr->second;
    if (storage_class == ClassPushConstant) {
      const auto& members = struct_members[type];
      const auto& offsets = member_offsets[type];
      for (size_t m = 0; m < members.size(); ++m)
        out.push_constant_size = std::max(out.push_constant_size,
                                          (m < offsets.size() ? offsets[m] : 0) + scalar_size[members[m]]);
      continue;
    }
    if (storage_class == ClassUniformConstant) {
      uint32_t image = sampled_image_of.count(type) ? sampled_image_of[type] : type;
      auto img = buffer_images.find(image);
      if (img == buffer_images.end()) continue;
      if (img->second != 1) throw Error("shader " + name + ": storage texel buffers are not supported");
      if (set_of.count(var) && set_of[var] != 0) throw Error("shader " + name + ": only descriptor set 0 is supported");
      out.bindings.push_back({binding_of[var], BindingKind::UniformTexelBuffer, true});
      continue;
    }
    if (storage_class != ClassStorageBuffer && storage_class != ClassUniform) continue;
    if (set_of.count(var) && set_of[var] != 0)
      throw Error("shader " + name + ": only descriptor set 0 is supported");
    ReflectedBinding b;
    b.binding = binding_of[var];
    const bool uniform = storage_class == ClassUniform && !buffer_block.count(type);
    b.kind = uniform ? BindingKind::UniformBuffer : BindingKind::StorageBuffer;
    const auto& members = struct_members[type];
    bool all_readonly = !members.empty();
    for (size_t m = 0; m < members.size(); ++m)
      all_readonly = all_readonly && member_nonwritable[type].count(static_cast<uint32_t>(m));
    b.read_only = uniform || nonwritable.count(var) || all_readonly;
    out.bindings.push_back(b);
  }
  std::sort(out.bindings.begin(), out.bindings.end(),
            [](const auto& a, const auto& b) { return a.binding < b.binding; });
  return out;
}

}  // namespace ternvk

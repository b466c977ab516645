// An invocation's place among the lane groups of a GEMV or GEMM: its subgroup's invocations in order,
// then the next subgroup's. Vulkan does not promise gl_SubgroupInvocationID == local id % subgroup
// size, so lane groups are cut from this index: a group within one subgroup then holds exactly the
// lanes that its shuffle-xor butterflies pair. Needs full subgroups (all but the last), which the
// pipelines require wherever the device can require a subgroup size.
#ifndef LANE_SLOT_GLSL
#define LANE_SLOT_GLSL
uint lane_slot() { return gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID; }
#endif

#version 450
// Peak-bandwidth probe for the profiler: dst = src over `count` 16-byte words, grid-stride (each
// invocation copies words i, i + stride, ...), so any dispatch size covers the buffer.
// Bindings: 0 src uvec4 [count]; 1 dst uvec4 [count]. Bytes moved: 2 * 16 * count.
layout(local_size_x_id = 0) in;

layout(std430, set = 0, binding = 0) readonly buffer Src { uvec4 src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Dst { uvec4 dst[]; };
layout(push_constant) uniform Params { uint count; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
  for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) dst[i] = src[i];
}

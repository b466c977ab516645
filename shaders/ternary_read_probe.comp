#version 450
// Streaming read of a uvec4 storage buffer: the benchmark's measure of how fast this device reads
// storage buffers (the bound of every GEMV), printed beside the kernels' figures.
// Bindings: 0 data uvec4 [groups * per_group]; 1 out uint [groups * workgroup size].
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer Data { uvec4 data[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { uint o[]; };
layout(push_constant) uniform Params { uint per_group; } p;
void main() {
  const uint base = gl_WorkGroupID.x * p.per_group;
  uvec4 acc = uvec4(0);
  for (uint c = gl_LocalInvocationID.x; c < p.per_group; c += gl_WorkGroupSize.x) acc ^= data[base + c];
  o[gl_GlobalInvocationID.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}

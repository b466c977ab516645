#version 450
// Peak-bandwidth read probe for the profiler: workgroup w sums the uvec4 words [w * per_group,
// min((w + 1) * per_group, count)) of `data` (lanes strided by the workgroup size, four independent
// loads in flight per lane; a contiguous block per workgroup, which CPU devices stream best) and
// writes its sum once, to sums[out_first + w]. Every load feeds a written result, so none can be
// dropped, and the host checks the sums against what the buffer holds.
// Bindings: 0 data uvec4 [count]; 1 sums uvec4 [out_first + workgroups]. WG: a power of two.
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

layout(std430, set = 0, binding = 0) readonly buffer Data { uvec4 data[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Sums { uvec4 sums[]; };
layout(push_constant) uniform Params {
  uint count;
  uint per_group;
  uint out_first;
} p;

shared uvec4 partial[WG];

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint begin = gl_WorkGroupID.x * p.per_group;
  const uint end = min(begin + p.per_group, p.count);
  uvec4 a0 = uvec4(0), a1 = uvec4(0), a2 = uvec4(0), a3 = uvec4(0);
  uint i = begin + lid;
  for (; i + 3 * WG < end; i += 4 * WG) {
    a0 += data[i];
    a1 += data[i + WG];
    a2 += data[i + 2 * WG];
    a3 += data[i + 3 * WG];
  }
  for (; i < end; i += WG) a0 += data[i];
  partial[lid] = (a0 + a1) + (a2 + a3);
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) partial[lid] += partial[lid + s];
    barrier();
  }
  if (lid == 0) sums[p.out_first + gl_WorkGroupID.x] = partial[0];
}

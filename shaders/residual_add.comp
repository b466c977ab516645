#version 450
// y += x over `count` fp32 elements (a residual add the GEMV epilogue could not fuse).
// Bindings: 0 x fp32 [count]; 1 y fp32 [count]. Dispatch: (gx, gy) with gx * gy * WG >= count;
// element i = global x + global y * (gx * WG).
layout(local_size_x_id = 0) in;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform Params { uint count; } p;

void main() {
  const uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * (gl_NumWorkGroups.x * gl_WorkGroupSize.x);
  if (i < p.count) y[i] += x[i];
}

#version 450
// RMSNorm of fp32 rows: y = x * inversesqrt(mean(x^2) + eps) * weight (architecture.md), the final
// norm before the head. One workgroup per row (token); lanes stride over the row, the sum of
// squares is reduced in fp32 by basic_reduce.glsl. y must not alias x.
// Bindings: 0 x fp32 [rows, cols]; 1 weight fp32 [cols]; 2 y fp32 [rows, cols].
// Dispatch: (rows, 1, 1). Spec constant 0 = workgroup size.
#extension GL_GOOGLE_include_directive : require
#if SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
layout(local_size_x_id = 0) in;
#include "basic_reduce.glsl"

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { float weight[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Params {
  uint cols;
  float eps;
} p;

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint base = gl_WorkGroupID.x * p.cols;
  float ss = 0.0;
  for (uint c = lid; c < p.cols; c += RED_WG) {
    const float v = x[base + c];
    ss += v * v;
  }
  ss = wg_sum(ss);
  const float scale = inversesqrt(ss / float(p.cols) + p.eps);
  for (uint c = lid; c < p.cols; c += RED_WG) y[base + c] = x[base + c] * scale * weight[c];
}

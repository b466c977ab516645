#version 450
// Argmax of fp32 rows [rows, cols] without reading the logits on the host. Ties go to the lowest
// index (torch.argmax, llama.cpp greedy); NaN is never selected (a row of only NaN gives index
// 0xffffffff, value -inf). Results are pairs uvec2(index, floatBitsToUint(value)).
// Two passes for long rows:
//   MERGE=0: workgroup (part, row) reduces columns [part * chunk, min(cols, (part + 1) * chunk))
//            into out[row * parts + part] (the partials, or the result when parts == 1).
//   MERGE=1: workgroup (0, row) reduces the `parts` partials of its row into out[row].
// Bindings: 0 logits fp32 [rows, cols] (MERGE=0) or partials uvec2 [rows, parts] (MERGE=1);
//           1 out uvec2. Dispatch: (parts, rows) or (1, rows). Spec constant 0 = workgroup size.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#if SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
layout(local_size_x_id = 0) in;
#include "basic_reduce.glsl"

#if MERGE
layout(std430, set = 0, binding = 0) readonly buffer In { uvec2 partials[]; };
#else
layout(std430, set = 0, binding = 0) readonly buffer In { float logits[]; };
#endif
layout(std430, set = 0, binding = 1) writeonly buffer Out { uvec2 result[]; };
layout(push_constant) uniform Params {
  uint cols;
  uint chunk;
  uint parts;
} p;

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint row = gl_WorkGroupID.y;
  float v = uintBitsToFloat(0xff800000u);  // -inf
  uint i = NONE;
#if MERGE
  const uint base = row * p.parts;
  for (uint j = lid; j < p.parts; j += RED_WG) {
    const uvec2 e = partials[base + j];
    const float ev = uintBitsToFloat(e.y);
    if (pair_before(ev, e.x, v, i)) {
      v = ev;
      i = e.x;
    }
  }
  wg_best(v, i);
  if (lid == 0) result[row] = uvec2(i, floatBitsToUint(v));
#else
  const uint part = gl_WorkGroupID.x;
  const uint begin = part * p.chunk;
  const uint end = min(p.cols, begin + p.chunk);
  const uint base = row * p.cols;
  // XB loads a lane in flight at a time (a GPU compiler need not unroll a loop with a run-time trip
  // count; each iteration would wait a whole round trip). The order of the scan does not matter:
  // pair_before is a total order.
  const uint XB = 8;
  for (uint c0 = begin + lid; c0 < end; c0 += XB * RED_WG) {
    float xv[XB];
    [[unroll]] for (uint u = 0; u < XB; ++u) xv[u] = logits[base + min(c0 + u * RED_WG, end - 1)];
    [[unroll]] for (uint u = 0; u < XB; ++u) {
      const uint c = c0 + u * RED_WG;
      const float x = xv[u];
      if (c < end && !is_nan_bits(x) && pair_before(x, c, v, i)) {
        v = x;
        i = c;
      }
    }
  }
  wg_best(v, i);
  if (lid == 0) result[row * p.parts + part] = uvec2(i, floatBitsToUint(v));
#endif
}

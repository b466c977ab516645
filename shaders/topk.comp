#version 450
// The k largest values of fp32 rows [rows, cols] as pairs uvec2(index, floatBitsToUint(value)),
// sorted by value descending, ties by index ascending; NaN is never selected. When a row has
// fewer than k selectable values the list is padded with (0xffffffff, -inf), which sorts last.
// Two passes for long rows:
//   MERGE=0: workgroup (part, row) selects the top k of columns [part * chunk, ...) into
//            out[(row * parts + part) * k ...] (candidate lists, or the result when parts == 1).
//   MERGE=1: workgroup (0, row) selects the top k of the row's parts * k candidates into
//            out[row * k ...].
// Selection: each lane keeps the best not-yet-taken element among those it strides over; k rounds
// of a workgroup reduction pick the winner, and only the lane that owned it rescans its elements
// for the best one ordered after the winner (so nothing is marked or copied, and equal values
// come out by index). Cost per workgroup: one pass over its chunk plus k reductions and k rescans
// of chunk / workgroup elements. An invocation runs up to (k + 1) * ceil(n / workgroup) + k loop
// iterations: the host keeps that under 32768 because lavapipe (Mesa 22.3 gallivm) silently stops
// a loop nest after 65535 iterations per invocation.
// Bindings: 0 logits fp32 [rows, cols] (MERGE=0) or candidates uvec2 [rows, parts * k]
//           (MERGE=1); 1 out uvec2. Dispatch: (parts, rows) or (1, rows). Spec constant 0 =
//           workgroup size.
#extension GL_GOOGLE_include_directive : require
#if SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
layout(local_size_x_id = 0) in;
#include "basic_reduce.glsl"

#if MERGE
layout(std430, set = 0, binding = 0) readonly buffer In { uvec2 candidates[]; };
#else
layout(std430, set = 0, binding = 0) readonly buffer In { float logits[]; };
#endif
layout(std430, set = 0, binding = 1) writeonly buffer Out { uvec2 result[]; };
layout(push_constant) uniform Params {
  uint cols;
  uint chunk;
  uint parts;
  uint k;
} p;

#define NEG_INF uintBitsToFloat(0xff800000u)

// This lane's best element strictly after (after_v, after_i) in the order (all of them when
// `started` is false); (-inf, NONE) when there is none.
void lane_best(uint base, uint begin, uint n, bool started, float after_v, uint after_i, out float v, out uint i) {
  v = NEG_INF;
  i = NONE;
  for (uint j = gl_LocalInvocationID.x; j < n; j += RED_WG) {
#if MERGE
    const uvec2 e = candidates[base + j];
    const float x = uintBitsToFloat(e.y);
    const uint xi = e.x;
    if (xi == NONE) continue;  // padding of a short candidate list
#else
    const float x = logits[base + begin + j];
    const uint xi = begin + j;
    if (is_nan_bits(x)) continue;
#endif
    if (started && !pair_before(after_v, after_i, x, xi)) continue;  // already taken
    if (pair_before(x, xi, v, i)) {
      v = x;
      i = xi;
    }
  }
}

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint row = gl_WorkGroupID.y;
#if MERGE
  const uint n = p.parts * p.k;
  const uint base = row * n;
  const uint begin = 0;
  const uint out_base = row * p.k;
#else
  const uint part = gl_WorkGroupID.x;
  const uint begin = part * p.chunk;
  const uint n = min(p.cols, begin + p.chunk) - begin;
  const uint base = row * p.cols;
  const uint out_base = (row * p.parts + part) * p.k;
#endif
  float mine_v;
  uint mine_i;
  lane_best(base, begin, n, false, 0.0, 0, mine_v, mine_i);
  for (uint r = 0; r < p.k; ++r) {
    float v = mine_v;
    uint i = mine_i;
    wg_best(v, i);  // the same (v, i) in every invocation: the branches below are uniform
    if (i == NONE) {
      for (uint q = r + lid; q < p.k; q += RED_WG) result[out_base + q] = uvec2(NONE, floatBitsToUint(NEG_INF));
      break;
    }
    if (lid == 0) result[out_base + r] = uvec2(i, floatBitsToUint(v));
    if (i == mine_i) lane_best(base, begin, n, true, v, i, mine_v, mine_i);  // this lane's was taken
  }
}

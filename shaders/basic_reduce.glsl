// Workgroup reductions shared by rmsnorm, argmax and topk. Include after
// `layout(local_size_x_id = 0) in;`. SUBGROUP=1 reduces each subgroup with subgroup arithmetic
// (the including shader enables GL_KHR_shader_subgroup_arithmetic), then the subgroup results
// through shared memory; SUBGROUP=0 is a shared-memory tree for devices without subgroup
// arithmetic. Any workgroup size and any subgroup size (1 upwards) work.
// Every function must be reached by the whole workgroup (it contains barriers) and ends with a
// barrier, so it may be called again right away. A workgroup of one subgroup skips the barriers
// (each costs a context switch per 8 lanes on lavapipe).
#ifndef BASIC_REDUCE_GLSL
#define BASIC_REDUCE_GLSL

const uint RED_WG = gl_WorkGroupSize.x;
const uint NONE = 0xffffffffu;  // "no element": the index of an empty (value, index) pair
shared float red_v[RED_WG];
shared uint red_i[RED_WG];

float wg_sum(float v) {
#if SUBGROUP
  v = subgroupAdd(v);
  if (gl_NumSubgroups == 1) return v;  // uniform: no barrier needed (they are costly on CPU devices)
  if (subgroupElect()) red_v[gl_SubgroupID] = v;
  barrier();
  float s = 0.0;
  for (uint g = 0; g < gl_NumSubgroups; ++g) s += red_v[g];
  barrier();
  return s;
#else
  const uint lid = gl_LocalInvocationID.x;
  red_v[lid] = v;
  barrier();
  for (uint stride = 1; stride < RED_WG; stride *= 2) {
    if ((lid & (2 * stride - 1)) == 0 && lid + stride < RED_WG) red_v[lid] += red_v[lid + stride];
    barrier();
  }
  float s = red_v[0];
  barrier();
  return s;
#endif
}

#if SUBGROUP
// The largest value of the workgroup (same rules as wg_sum).
float wg_max(float v) {
  v = subgroupMax(v);
  if (gl_NumSubgroups == 1) return v;
  if (subgroupElect()) red_v[gl_SubgroupID] = v;
  barrier();
  float m = red_v[0];
  for (uint g = 1; g < gl_NumSubgroups; ++g) m = max(m, red_v[g]);
  barrier();
  return m;
}

// The integer sum of the workgroup (same rules as wg_sum).
int wg_sum_int(int v) {
  v = subgroupAdd(v);
  if (gl_NumSubgroups == 1) return v;
  if (subgroupElect()) red_i[gl_SubgroupID] = uint(v);
  barrier();
  int s = 0;
  for (uint g = 0; g < gl_NumSubgroups; ++g) s += int(red_i[g]);
  barrier();
  return s;
}
#endif

// The order of (value, index) pairs used by argmax and topk: larger value first, then lower
// index (torch.argmax and llama.cpp greedy pick the first maximum). Callers never pass NaN.
bool pair_before(float va, uint ia, float vb, uint ib) { return va > vb || (va == vb && ia < ib); }
// NaN by its bits: without SignedZeroInfNanPreserve a driver may assume floats are never NaN and
// fold isnan() or a comparison with one away; integer tests it must keep.
bool is_nan_bits(float x) { return (floatBitsToUint(x) & 0x7fffffffu) > 0x7f800000u; }

// Replaces (v, i) in every invocation with the first pair of the workgroup in that order.
void wg_best(inout float v, inout uint i) {
#if SUBGROUP
  const float m = subgroupMax(v);
  const uint mi = subgroupMin(v == m ? i : NONE);
  if (gl_NumSubgroups == 1) {  // uniform: no barrier needed (they are costly on CPU devices)
    v = m;
    i = mi;
    return;
  }
  if (subgroupElect()) {
    red_v[gl_SubgroupID] = m;
    red_i[gl_SubgroupID] = mi;
  }
  barrier();
  v = red_v[0];
  i = red_i[0];
  for (uint g = 1; g < gl_NumSubgroups; ++g)
    if (pair_before(red_v[g], red_i[g], v, i)) {
      v = red_v[g];
      i = red_i[g];
    }
  barrier();
#else
  const uint lid = gl_LocalInvocationID.x;
  red_v[lid] = v;
  red_i[lid] = i;
  barrier();
  for (uint stride = 1; stride < RED_WG; stride *= 2) {
    if ((lid & (2 * stride - 1)) == 0 && lid + stride < RED_WG &&
        pair_before(red_v[lid + stride], red_i[lid + stride], red_v[lid], red_i[lid])) {
      red_v[lid] = red_v[lid + stride];
      red_i[lid] = red_i[lid + stride];
    }
    barrier();
  }
  v = red_v[0];
  i = red_i[0];
  barrier();
#endif
}

#endif

#version 450
// Decode attention for GPUs (flash-decoding in one dispatch): the live context of each (token, kv
// head) is split over many workgroups, and the last split to finish merges the partials and resets
// its arrival counter, so no combine pass and no clear runs before the next replay.
//
// Same inputs, outputs and push constants as attention_decode.comp: one query token per workgroup,
// token t reads the cache rows of its slot (SLOTS: seq_slots[t] clamped to max_slot, else 0), rows
// base + 0 .. base + pos with base = slot * slot_rows; q is pre-multiplied by scale * log2(e) and the
// softmax runs in fp32 in log2 units.
//
// Workgroup (x = split c, y = kv head g, z = token t), WG lanes in whole subgroups; each split runs
// attention_split.glsl (lanes over keys, no shared memory or barrier in the loop).
//
// Splits: the live length L = pos + 1 is divided over min(n_chunks, ceil(L / min_split)) splits of
// a multiple of G*KB keys (a step recorded once for the maximum context serves every length);
// workgroups past the live splits exit at once. One live split writes the normalized output. Else
// each writes its partial record (unnormalized output [R][HD], then max[R], sum[R]) to `part`, and
// the last to arrive at counters[t * n_kv_heads + g] (atomicAdd) merges them and sets the counter
// back to 0. The counters must be 0 before the first dispatch (the host clears them once; see
// attention.h): every dispatch leaves them at 0 again.
//
// Correct for any subgroup size (lanes find their group through gl_SubgroupID and
// gl_SubgroupInvocationID) as long as LPK divides it and the workgroup is made of full subgroups.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#extension GL_KHR_shader_subgroup_shuffle : enable
#extension GL_GOOGLE_include_directive : require
#include "arrival.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;
layout(constant_id = 2) const uint R = 4;      // query heads per kv head
layout(constant_id = 3) const uint KB = 4;     // keys per key group and step
layout(constant_id = 4) const uint LPK = 16;   // lanes per key (power of two, <= the subgroup size)
// 1: q rows start at multiples of 4 floats (q_stride, q_col): read q as vec4 (binding 7).
layout(constant_id = 5) const bool Q_VEC4 = false;
// Read each token's sequence slot from binding 8 (false: every token in slot 0, no load at all).
layout(constant_id = 6) const bool SLOTS = false;
layout(constant_id = 7) const uint MAXSG = 4;  // subgroups per workgroup at the smallest subgroup size
layout(constant_id = 8) const uint MAXC = 1;   // n_chunks: the most splits of one (t, g)

const uint E4 = R * HD / 4;                 // vec4s of one (t, g) output: R heads, contiguous
const uint NSTAT = (2 * R + 3) / 4;         // vec4s of (max[R], sum[R]) after a partial's output
const uint REC = E4 + NSTAT;                // vec4s per partial record (t, g, c)
const uint UNROLL = 8;                      // partials in flight per lane in the merge
const float NEG_BIG = -1e30;

layout(std430, set = 0, binding = 0) readonly buffer Qkv { float qkv[]; };
layout(std430, set = 0, binding = 1) readonly buffer Pos { uint positions[]; };
layout(std430, set = 0, binding = 2) readonly buffer KCache { uvec4 kcache[]; };
layout(std430, set = 0, binding = 3) readonly buffer VCache { uvec4 vcache[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Out { float outp[]; };
layout(std430, set = 0, binding = 5) coherent buffer Part { vec4 part[]; };
layout(std430, set = 0, binding = 6) coherent buffer Count { uint counters[]; };
layout(std430, set = 0, binding = 7) readonly buffer Qkv4 { vec4 qkv4[]; };  // binding 0 again
layout(std430, set = 0, binding = 8) readonly buffer Slots { uint seq_slots[]; };

layout(push_constant) uniform Params {
  uint tokens;
  uint q_stride;
  uint q_col;
  uint n_kv_heads;
  uint n_chunks;
  uint capacity;    // positions are clamped to capacity - 1
  float scale_log2e;
  uint out_stride;
  uint min_split;   // keys: fewer live keys per split use fewer splits
  uint slot_rows;   // cache rows per sequence slot
  uint max_slot;    // sequences - 1: slots are clamped to it
} p;

vec4 att_q4(uint o) { return Q_VEC4 ? qkv4[o / 4] : vec4(qkv[o], qkv[o + 1], qkv[o + 2], qkv[o + 3]); }
uvec4 att_k(uint i) { return kcache[i]; }
uvec4 att_v(uint i) { return vcache[i]; }
#define ATT_WG WG
#define ATT_HD HD
#define ATT_R R
#define ATT_KB KB
#define ATT_LPK LPK
#define ATT_MAXSG MAXSG
#include "attention_split.glsl"

shared float sh_w[MAXC * R];     // merge: weight of split c for head h
shared uint arrival;

void main() {
  const uint lid = gl_LocalInvocationIndex;
  const uint c = gl_WorkGroupID.x;
  const uint g = gl_WorkGroupID.y;
  const uint t = gl_WorkGroupID.z;
  const uint KVH = p.n_kv_heads;

  const uint live = min(positions[t], p.capacity - 1) + 1;
  const uint splits = clamp((live + p.min_split - 1) / p.min_split, 1, p.n_chunks);
  const uint STEP = ATT_G * KB;
  const uint per = ((live + splits - 1) / splits + STEP - 1) / STEP * STEP;
  const uint n_live = (live + per - 1) / per;
  const uint kb = c * per;
  if (kb >= live) return;  // uniform: the whole workgroup leaves
  const uint ke = min(kb + per, live);
  const uint base = SLOTS ? min(seq_slots[t], p.max_slot) * p.slot_rows : 0;

  att_split(t * p.q_stride + p.q_col + g * R * HD, g, kb, ke, base, KVH, p.scale_log2e);
  const uint sgl = gl_SubgroupInvocationID, sg = gl_SubgroupID;
  const uint nsg = gl_NumSubgroups;
  const uint first = (t * KVH + g) * p.n_chunks;  // partial records of (t, g)
  for (uint e = lid; e < E4; e += WG) {
    const uint h = e / (HD / 4);
    float mx, sum;
    vec4 o;
    att_split_output(e, mx, sum, o);
    if (n_live == 1) {
      const uint dst = t * p.out_stride + g * R * HD + e * 4;
      const vec4 r = o / sum;
      outp[dst] = r.x;
      outp[dst + 1] = r.y;
      outp[dst + 2] = r.z;
      outp[dst + 3] = r.w;
    } else {
      const uint rec = (first + c) * REC;
      part[rec + e] = o;
      if (e % (HD / 4) == 0) {  // one lane per head writes its statistics
        part[rec + E4 + h / 4][h % 4] = mx;
        part[rec + E4 + (R + h) / 4][(R + h) % 4] = sum;
      }
    }
  }
  if (n_live == 1) return;  // uniform

  // The last split of (t, g) to arrive merges all partials and resets the counter.
  ARRIVAL_FENCE();
  if (lid == 0) arrival = ARRIVE(counters[t * KVH + g], 1u);
  ARRIVAL_FENCE();
  if (arrival != n_live - 1) return;  // uniform
  if (lid == 0) atomicExchange(counters[t * KVH + g], 0u);  // for the next dispatch (ordered by its barrier)

  // Global max per head: lanes over splits, then subgroups, then shared memory.
  float gm[R];
  [[unroll]] for (uint h = 0; h < R; ++h) gm[h] = NEG_BIG;
  for (uint cc = lid; cc < n_live; cc += WG) {
    const uint st = (first + cc) * REC + E4;
    [[unroll]] for (uint h = 0; h < R; ++h) gm[h] = max(gm[h], part[st + h / 4][h % 4]);
  }
  [[unroll]] for (uint h = 0; h < R; ++h) {
    gm[h] = subgroupMax(gm[h]);
    if (sgl == 0) sh_m[sg * R + h] = gm[h];
  }
  barrier();
  [[unroll]] for (uint h = 0; h < R; ++h) {
    gm[h] = NEG_BIG;
    for (uint s = 0; s < nsg; ++s) gm[h] = max(gm[h], sh_m[s * R + h]);
  }
  // Weights of the splits and the total sum per head.
  float tot[R];
  [[unroll]] for (uint h = 0; h < R; ++h) tot[h] = 0.0;
  for (uint cc = lid; cc < n_live; cc += WG) {
    const uint st = (first + cc) * REC + E4;
    [[unroll]] for (uint h = 0; h < R; ++h) {
      const float w = exp2(part[st + h / 4][h % 4] - gm[h]);
      sh_w[cc * R + h] = w;
      tot[h] += w * part[st + (R + h) / 4][(R + h) % 4];
    }
  }
  [[unroll]] for (uint h = 0; h < R; ++h) {
    tot[h] = subgroupAdd(tot[h]);
    if (sgl == 0) sh_l[sg * R + h] = tot[h];
  }
  barrier();
  // Lanes over the outputs; UNROLL partials loaded at a time (clamped index, weight 0 past the end).
  for (uint e = lid; e < E4; e += WG) {
    const uint h = e / (HD / 4);
    float total = 0.0;
    for (uint s = 0; s < nsg; ++s) total += sh_l[s * R + h];
    vec4 o = vec4(0.0);
    for (uint c0 = 0; c0 < n_live; c0 += UNROLL) {
      [[unroll]] for (uint u = 0; u < UNROLL; ++u) {
        const uint cc = min(c0 + u, n_live - 1);
        const float w = c0 + u < n_live ? sh_w[cc * R + h] : 0.0;
        o += w * part[(first + cc) * REC + e];
      }
    }
    const uint dst = t * p.out_stride + g * R * HD + e * 4;
    const vec4 r = o / total;
    outp[dst] = r.x;
    outp[dst + 1] = r.y;
    outp[dst + 2] = r.z;
    outp[dst + 3] = r.w;
  }
}

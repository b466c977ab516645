#version 450
// Decode attention for devices whose subgroup is the whole workgroup and where per-lane work is
// expensive (CPU devices such as lavapipe: one 8-wide SIMD subgroup per workgroup, per-lane
// gathers for every buffer and shared-memory load inside a loop). Same inputs and outputs as
// attention.comp (SPLIT=0), one query token per workgroup, so tokens of any sequence slots mix
// freely: token t reads the cache rows of its slot (SLOTS: seq_slots[t] clamped to max_slot, else 0),
// rows base + 0 .. base + pos with base = slot * slot_rows.
//
// Workgroup (x = context split c, y = kv head g, z = token t), WG lanes = one subgroup. The lanes
// split the head dimension: lane l owns the 8-element column groups l, l+WG, ... of every K/V row
// and reads them as uvec4 (8 halves), so every load of a key serves all R = n_heads / n_kv_heads
// query heads and no lane idles on a key another lane owns. Keys go in blocks of KB: the R partial
// dots of each key are summed with subgroupAdd, the block's scores get one online-softmax update
// (uniform across lanes: no shared memory, no barrier in the loop), then the V rows of the block are
// accumulated into R x 8*CPL registers per lane.
//
// The live context 0..pos of token t is divided evenly over min(n_chunks, ceil(live / min_split))
// splits (multiples of KB keys), so every context length keeps the workgroups it needs busy (and a
// short one does not pay for merging many tiny partials); splits beyond those exit at once. With one live split the workgroup writes the normalized output itself. Otherwise each
// split writes its partial (unnormalized output, max, sum) to `part`, and the last split of
// (t, g) to finish (an atomic counter per (t, g), 0 before the dispatch) merges them and sets the
// counter back to 0: no second dispatch, and no fill before the next one.
//
// Per invocation the loops run ceil(keys per split / KB) + 2 * n_chunks times; the host keeps this
// far below the 65535 iterations after which Mesa 22.3's llvmpipe silently leaves a loop nest.
//
// Build-time variant TEXEL = 1 (attention_decode_texel): the K and V caches (bindings 2 and 3) and
// the vec4 q (binding 7) are uniform texel buffers (R32G32B32A32_UINT views, texelFetch) instead of
// storage buffers; same layout, same arithmetic. On CPU devices such as lavapipe a texel fetch is a
// bulk load where a storage-buffer load is a per-lane loop (docs/performance.md). Without Q_VEC4
// binding 7 is unused (the host binds any valid texel range, e.g. the K cache) and q is read from
// binding 0 as scalars.
#ifndef TEXEL
#define TEXEL 0
#endif
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#extension GL_GOOGLE_include_directive : require
#include "arrival.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 8;    // = the subgroup size
layout(constant_id = 1) const uint HD = 128;
layout(constant_id = 2) const uint R = 4;     // query heads per kv head
layout(constant_id = 3) const uint KB = 8;    // keys per block
// 1: q rows start at multiples of 4 floats (q_stride, q_col, HD): read q as vec4 (binding 7).
layout(constant_id = 4) const bool Q_VEC4 = false;
// Read each token's sequence slot from binding 8 (false: every token in slot 0, no load at all).
layout(constant_id = 5) const bool SLOTS = false;

const uint NCG = HD / 8;                // 8-element column groups of a head
const uint CPL = (NCG + WG - 1) / WG;   // column groups per lane
const uint NSTAT = (2 * R + 3) / 4;     // vec4s of (max[R], sum[R]) at the end of a partial record
const uint REC = R * NCG * 2 + NSTAT;   // vec4s per partial record (t, g, c)
#define NEG_INF uintBitsToFloat(0xff800000u)

layout(std430, set = 0, binding = 0) readonly buffer Qkv { float qkv[]; };
layout(std430, set = 0, binding = 1) readonly buffer Pos { uint positions[]; };
#if TEXEL
layout(set = 0, binding = 2) uniform usamplerBuffer kcache_texels;
layout(set = 0, binding = 3) uniform usamplerBuffer vcache_texels;
uvec4 load_k(uint i) { return texelFetch(kcache_texels, int(i)); }
uvec4 load_v(uint i) { return texelFetch(vcache_texels, int(i)); }
#else
layout(std430, set = 0, binding = 2) readonly buffer KCache { uvec4 kcache[]; };
layout(std430, set = 0, binding = 3) readonly buffer VCache { uvec4 vcache[]; };
uvec4 load_k(uint i) { return kcache[i]; }
uvec4 load_v(uint i) { return vcache[i]; }
#endif
layout(std430, set = 0, binding = 4) writeonly buffer Out { float outp[]; };
layout(std430, set = 0, binding = 5) coherent buffer Part { vec4 part[]; };
layout(std430, set = 0, binding = 6) coherent buffer Count { uint counters[]; };
#if TEXEL
layout(set = 0, binding = 7) uniform usamplerBuffer qkv4_texels;  // binding 0 again, as texels
vec4 load_q4(uint i) { return uintBitsToFloat(texelFetch(qkv4_texels, int(i))); }
#else
layout(std430, set = 0, binding = 7) readonly buffer Qkv4 { vec4 qkv4[]; };  // binding 0 again
vec4 load_q4(uint i) { return qkv4[i]; }
#endif
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

shared uint arrival;

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint c = gl_WorkGroupID.x;
  const uint g = gl_WorkGroupID.y;
  const uint t = gl_WorkGroupID.z;
  const uint KVH = p.n_kv_heads;

  const uint live = min(positions[t], p.capacity - 1) + 1;
  const uint splits = clamp((live + p.min_split - 1) / p.min_split, 1, p.n_chunks);
  const uint per = ((live + splits - 1) / splits + KB - 1) / KB * KB;
  const uint n_live = (live + per - 1) / per;
  const uint kb = c * per;
  if (kb >= live) return;  // uniform: the whole workgroup leaves
  const uint ke = min(kb + per, live);
  const uint base = SLOTS ? min(seq_slots[t], p.max_slot) * p.slot_rows : 0;  // first row of t's slot

  // q of the R heads, this lane's column groups, in log2 units. Lanes past the head keep zeros
  // (their clamped loads then add nothing).
  vec4 q[R * CPL * 2];
  [[unroll]] for (uint h = 0; h < R; ++h) {
    [[unroll]] for (uint i = 0; i < CPL; ++i) {
      const uint cg = lid + i * WG;
      const uint o = t * p.q_stride + p.q_col + (g * R + h) * HD + min(cg, NCG - 1) * 8;
      const float f = cg < NCG ? p.scale_log2e : 0.0;
      // (on lavapipe every load is a per-lane loop per component: vec4 loads cost a quarter)
      if (Q_VEC4) {
        q[(h * CPL + i) * 2] = load_q4(o / 4) * f;
        q[(h * CPL + i) * 2 + 1] = load_q4(o / 4 + 1) * f;
      } else {
        q[(h * CPL + i) * 2] = vec4(qkv[o], qkv[o + 1], qkv[o + 2], qkv[o + 3]) * f;
        q[(h * CPL + i) * 2 + 1] = vec4(qkv[o + 4], qkv[o + 5], qkv[o + 6], qkv[o + 7]) * f;
      }
    }
  }
  uint col[CPL];
  [[unroll]] for (uint i = 0; i < CPL; ++i) col[i] = min(lid + i * WG, NCG - 1);

  float m[R], l[R];
  [[unroll]] for (uint h = 0; h < R; ++h) {
    m[h] = NEG_INF;
    l[h] = 0.0;
  }
  float acc[R * CPL * 8];
  [[unroll]] for (uint i = 0; i < R * CPL * 8; ++i) acc[i] = 0.0;

  for (uint k0 = kb; k0 < ke; k0 += KB) {
    // Scores of the block's keys (keys past ke re-read the last key and are masked out).
    float s[KB * R];
    [[unroll]] for (uint j = 0; j < KB; ++j) {
      const uint row = ((base + min(k0 + j, ke - 1)) * KVH + g) * NCG;
      float d[R];
      [[unroll]] for (uint h = 0; h < R; ++h) d[h] = 0.0;
      [[unroll]] for (uint i = 0; i < CPL; ++i) {
        const uvec4 w = load_k(row + col[i]);
        const vec4 k0v = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
        const vec4 k1v = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
        [[unroll]] for (uint h = 0; h < R; ++h)
          d[h] += dot(q[(h * CPL + i) * 2], k0v) + dot(q[(h * CPL + i) * 2 + 1], k1v);
      }
      const bool valid = k0 + j < ke;
      [[unroll]] for (uint h = 0; h < R; ++h) s[j * R + h] = valid ? subgroupAdd(d[h]) : NEG_INF;
    }
    // Online softmax over the block (every lane holds the same scores). The first key of a block
    // is always valid, so the new maximum is finite and exp2(m - new) is 0 on the first block.
    [[unroll]] for (uint h = 0; h < R; ++h) {
      float bm = s[h];
      [[unroll]] for (uint j = 1; j < KB; ++j) bm = max(bm, s[j * R + h]);
      const float nm = max(m[h], bm);
      const float corr = exp2(m[h] - nm);
      m[h] = nm;
      float sum = 0.0;
      [[unroll]] for (uint j = 0; j < KB; ++j) {
        const float pj = exp2(s[j * R + h] - nm);
        s[j * R + h] = pj;
        sum += pj;
      }
      l[h] = l[h] * corr + sum;
      [[unroll]] for (uint x = 0; x < CPL * 8; ++x) acc[h * CPL * 8 + x] *= corr;
    }
    [[unroll]] for (uint j = 0; j < KB; ++j) {
      const uint row = ((base + min(k0 + j, ke - 1)) * KVH + g) * NCG;
      [[unroll]] for (uint i = 0; i < CPL; ++i) {
        const uvec4 w = load_v(row + col[i]);
        const vec2 v0 = unpackHalf2x16(w.x), v1 = unpackHalf2x16(w.y), v2 = unpackHalf2x16(w.z),
                   v3 = unpackHalf2x16(w.w);
        [[unroll]] for (uint h = 0; h < R; ++h) {
          const float pj = s[j * R + h];
          const uint a = (h * CPL + i) * 8;
          acc[a + 0] += pj * v0.x;
          acc[a + 1] += pj * v0.y;
          acc[a + 2] += pj * v1.x;
          acc[a + 3] += pj * v1.y;
          acc[a + 4] += pj * v2.x;
          acc[a + 5] += pj * v2.y;
          acc[a + 6] += pj * v3.x;
          acc[a + 7] += pj * v3.y;
        }
      }
    }
  }

  if (n_live == 1) {
    [[unroll]] for (uint h = 0; h < R; ++h) {
      const float inv = 1.0 / l[h];
      [[unroll]] for (uint i = 0; i < CPL; ++i) {
        const uint cg = lid + i * WG;
        if (cg < NCG) {
          const uint o = t * p.out_stride + (g * R + h) * HD + cg * 8;
          [[unroll]] for (uint x = 0; x < 8; ++x) outp[o + x] = acc[(h * CPL + i) * 8 + x] * inv;
        }
      }
    }
    return;
  }

  // Partial of this split, then the last split of (t, g) to arrive merges all of them.
  const uint first = (t * KVH + g) * p.n_chunks;
  const uint rec = (first + c) * REC;
  [[unroll]] for (uint h = 0; h < R; ++h) {
    [[unroll]] for (uint i = 0; i < CPL; ++i) {
      const uint cg = lid + i * WG;
      if (cg < NCG) {
        const uint a = (h * CPL + i) * 8;
        part[rec + (h * NCG + cg) * 2] = vec4(acc[a], acc[a + 1], acc[a + 2], acc[a + 3]);
        part[rec + (h * NCG + cg) * 2 + 1] = vec4(acc[a + 4], acc[a + 5], acc[a + 6], acc[a + 7]);
      }
    }
  }
  if (lid == 0) {
    [[unroll]] for (uint s = 0; s < NSTAT; ++s) {
      vec4 v = vec4(0.0);
      [[unroll]] for (uint k = 0; k < 4; ++k) {
        const uint e = s * 4 + k;
        v[k] = e < R ? m[min(e, R - 1)] : (e < 2 * R ? l[min(e - R, R - 1)] : 0.0);
      }
      part[rec + R * NCG * 2 + s] = v;
    }
  }
  ARRIVAL_FENCE();
  if (lid == 0) arrival = ARRIVE(counters[t * KVH + g], 1u);
  ARRIVAL_FENCE();
  if (arrival != n_live - 1) return;  // uniform
  if (lid == 0) atomicExchange(counters[t * KVH + g], 0u);  // for the next dispatch (ordered by its barrier)

  // Stats as whole vec4s (max of head h at component h, sum at R + h).
  float gm[R];
  [[unroll]] for (uint h = 0; h < R; ++h) gm[h] = NEG_INF;
  for (uint cc = 0; cc < n_live; ++cc) {
    const uint st = (first + cc) * REC + R * NCG * 2;
    vec4 sv[NSTAT];
    [[unroll]] for (uint k = 0; k < NSTAT; ++k) sv[k] = part[st + k];
    [[unroll]] for (uint h = 0; h < R; ++h) gm[h] = max(gm[h], sv[h / 4][h % 4]);
  }
  float gl[R];
  [[unroll]] for (uint h = 0; h < R; ++h) gl[h] = 0.0;
  [[unroll]] for (uint i = 0; i < R * CPL * 8; ++i) acc[i] = 0.0;
  for (uint cc = 0; cc < n_live; ++cc) {
    const uint r0 = (first + cc) * REC;
    vec4 sv[NSTAT];
    [[unroll]] for (uint k = 0; k < NSTAT; ++k) sv[k] = part[r0 + R * NCG * 2 + k];
    [[unroll]] for (uint h = 0; h < R; ++h) {
      const float w = exp2(sv[h / 4][h % 4] - gm[h]);
      gl[h] += w * sv[(R + h) / 4][(R + h) % 4];
      [[unroll]] for (uint i = 0; i < CPL; ++i) {
        const uint a = (h * CPL + i) * 8, e = r0 + (h * NCG + col[i]) * 2;
        const vec4 x0 = part[e], x1 = part[e + 1];
        acc[a + 0] += w * x0.x;
        acc[a + 1] += w * x0.y;
        acc[a + 2] += w * x0.z;
        acc[a + 3] += w * x0.w;
        acc[a + 4] += w * x1.x;
        acc[a + 5] += w * x1.y;
        acc[a + 6] += w * x1.z;
        acc[a + 7] += w * x1.w;
      }
    }
  }
  [[unroll]] for (uint h = 0; h < R; ++h) {
    const float inv = 1.0 / gl[h];
    [[unroll]] for (uint i = 0; i < CPL; ++i) {
      const uint cg = lid + i * WG;
      if (cg < NCG) {
        const uint o = t * p.out_stride + (g * R + h) * HD + cg * 8;
        [[unroll]] for (uint x = 0; x < 8; ++x) outp[o + x] = acc[(h * CPL + i) * 8 + x] * inv;
      }
    }
  }
}

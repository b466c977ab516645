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
// Workgroup (x = split c, y = kv head g, z = token t), WG lanes in whole subgroups. Lanes go over
// keys: a key group of LPK lanes (a power of two within one subgroup) takes one key at a time, lane
// j reading the 16-byte column groups j, j + LPK, ... of the K and V rows, so the LPK lanes of a
// group read a row's consecutive bytes (coalesced) and each K/V row is read once for all R query
// heads of the kv head. Each group holds q of the R heads for its columns in registers, takes KB keys
// per step (the groups' blocks interleave: keys of step s are c's keys s*G*KB .. (s+1)*G*KB - 1),
// sums the R*KB partial dots over its LPK lanes with shuffle-xor butterflies, and keeps its own online
// softmax (max, sum, unnormalized output of its columns). No shared memory, no barrier in the loop.
// Then the groups merge: within a subgroup by shuffle-xor, across subgroups in shared memory.
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

const uint NCG = HD / 8;                    // 16-byte (8-half) column groups of a head
const uint CPL = (NCG + LPK - 1) / LPK;     // column groups per lane
const uint G = WG / LPK;                    // key groups per workgroup
const uint E4 = R * HD / 4;                 // vec4s of one (t, g) output: R heads, contiguous
const uint NSTAT = (2 * R + 3) / 4;         // vec4s of (max[R], sum[R]) after a partial's output
const uint REC = E4 + NSTAT;                // vec4s per partial record (t, g, c)
const uint UNROLL = 8;                      // partials in flight per lane in the merge
const float NEG_BIG = -1e30;                // "no key yet": exp2(NEG_BIG - s) == 0 for any score s

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

shared vec4 sh_acc[MAXSG * E4];  // per subgroup: unnormalized output of the R heads
shared float sh_m[MAXSG * R];
shared float sh_l[MAXSG * R];
shared float sh_w[MAXC * R];     // merge: weight of split c for head h
shared uint arrival;

// Online-softmax states (m, l, o) and (m2, l2, o2) of disjoint keys -> one state, with weights
// exp2(m - max) (0 for a state without keys, whose m is NEG_BIG).
void merge_weights(float m, float m2, out float w, out float w2, out float mx) {
  mx = max(m, m2);
  w = exp2(m - mx);
  w2 = exp2(m2 - mx);
}

void main() {
  const uint lid = gl_LocalInvocationIndex;
  const uint c = gl_WorkGroupID.x;
  const uint g = gl_WorkGroupID.y;
  const uint t = gl_WorkGroupID.z;
  const uint KVH = p.n_kv_heads;

  const uint live = min(positions[t], p.capacity - 1) + 1;
  const uint splits = clamp((live + p.min_split - 1) / p.min_split, 1, p.n_chunks);
  const uint STEP = G * KB;
  const uint per = ((live + splits - 1) / splits + STEP - 1) / STEP * STEP;
  const uint n_live = (live + per - 1) / per;
  const uint kb = c * per;
  if (kb >= live) return;  // uniform: the whole workgroup leaves
  const uint ke = min(kb + per, live);
  const uint base = SLOTS ? min(seq_slots[t], p.max_slot) * p.slot_rows : 0;

  const uint sgl = gl_SubgroupInvocationID;
  const uint grp = (gl_SubgroupID * gl_SubgroupSize + sgl) / LPK;
  const uint j = sgl % LPK;

  // q of the R heads for this lane's column groups (zeros past the head: their clamped loads add 0).
  vec4 q[R * CPL * 2];
  uint col[CPL];
  [[unroll]] for (uint i = 0; i < CPL; ++i) {
    const uint cg = j + i * LPK;
    col[i] = min(cg, NCG - 1);
    const float f = cg < NCG ? p.scale_log2e : 0.0;
    [[unroll]] for (uint h = 0; h < R; ++h) {
      const uint o = t * p.q_stride + p.q_col + (g * R + h) * HD + col[i] * 8;
      if (Q_VEC4) {
        q[(h * CPL + i) * 2] = qkv4[o / 4] * f;
        q[(h * CPL + i) * 2 + 1] = qkv4[o / 4 + 1] * f;
      } else {
        q[(h * CPL + i) * 2] = vec4(qkv[o], qkv[o + 1], qkv[o + 2], qkv[o + 3]) * f;
        q[(h * CPL + i) * 2 + 1] = vec4(qkv[o + 4], qkv[o + 5], qkv[o + 6], qkv[o + 7]) * f;
      }
    }
  }

  float m[R], l[R];
  float acc[R * CPL * 8];
  [[unroll]] for (uint h = 0; h < R; ++h) {
    m[h] = NEG_BIG;
    l[h] = 0.0;
  }
  [[unroll]] for (uint x = 0; x < R * CPL * 8; ++x) acc[x] = 0.0;

  const uint steps = (ke - kb + STEP - 1) / STEP;
  for (uint s = 0; s < steps; ++s) {  // uniform trip count: every lane takes part in the shuffles
    const uint k0 = kb + (s * G + grp) * KB;
    // The block's K and V words first: all its loads in flight at once (keys past ke re-read the
    // split's last key and weigh 0).
    uvec4 kw[KB * CPL], vw[KB * CPL];
    [[unroll]] for (uint b = 0; b < KB; ++b) {
      const uint row = ((base + min(k0 + b, ke - 1)) * KVH + g) * NCG;
      [[unroll]] for (uint i = 0; i < CPL; ++i) {
        kw[b * CPL + i] = kcache[row + col[i]];
        vw[b * CPL + i] = vcache[row + col[i]];
      }
    }
    float sc[KB * R];
    [[unroll]] for (uint b = 0; b < KB; ++b) {
      float d[R];
      [[unroll]] for (uint h = 0; h < R; ++h) d[h] = 0.0;
      [[unroll]] for (uint i = 0; i < CPL; ++i) {
        const uvec4 w = kw[b * CPL + i];
        const vec4 k0v = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
        const vec4 k1v = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
        [[unroll]] for (uint h = 0; h < R; ++h)
          d[h] += dot(q[(h * CPL + i) * 2], k0v) + dot(q[(h * CPL + i) * 2 + 1], k1v);
      }
      [[unroll]] for (uint h = 0; h < R; ++h) sc[b * R + h] = d[h];
    }
    // Sum each key's partial dots over the group's lanes: every lane gets the R*KB scores.
    [[unroll]] for (uint o = 1; o < LPK; o <<= 1)
      [[unroll]] for (uint x = 0; x < KB * R; ++x) sc[x] += subgroupShuffleXor(sc[x], o);
    // Online softmax over the block; keys past ke (the split's end) weigh 0.
    [[unroll]] for (uint h = 0; h < R; ++h) {
      float bm = NEG_BIG;
      [[unroll]] for (uint b = 0; b < KB; ++b)
        if (k0 + b < ke) bm = max(bm, sc[b * R + h]);
      const float nm = max(m[h], bm);
      const float corr = exp2(m[h] - nm);
      m[h] = nm;
      float sum = 0.0;
      [[unroll]] for (uint b = 0; b < KB; ++b) {
        const float pb = k0 + b < ke ? exp2(sc[b * R + h] - nm) : 0.0;
        sc[b * R + h] = pb;
        sum += pb;
      }
      l[h] = l[h] * corr + sum;
      [[unroll]] for (uint x = 0; x < CPL * 8; ++x) acc[h * CPL * 8 + x] *= corr;
    }
    [[unroll]] for (uint b = 0; b < KB; ++b) {
      [[unroll]] for (uint i = 0; i < CPL; ++i) {
        const uvec4 w = vw[b * CPL + i];
        const vec2 v0 = unpackHalf2x16(w.x), v1 = unpackHalf2x16(w.y), v2 = unpackHalf2x16(w.z),
                   v3 = unpackHalf2x16(w.w);
        [[unroll]] for (uint h = 0; h < R; ++h) {
          const float pb = sc[b * R + h];
          const uint a = (h * CPL + i) * 8;
          acc[a + 0] += pb * v0.x;
          acc[a + 1] += pb * v0.y;
          acc[a + 2] += pb * v1.x;
          acc[a + 3] += pb * v1.y;
          acc[a + 4] += pb * v2.x;
          acc[a + 5] += pb * v2.y;
          acc[a + 6] += pb * v3.x;
          acc[a + 7] += pb * v3.y;
        }
      }
    }
  }

  // Merge the key groups of each subgroup (lanes l and l ^ o own the same columns).
  for (uint o = LPK; o < gl_SubgroupSize; o <<= 1) {
    [[unroll]] for (uint h = 0; h < R; ++h) {
      const float m2 = subgroupShuffleXor(m[h], o), l2 = subgroupShuffleXor(l[h], o);
      float w, w2, mx;
      merge_weights(m[h], m2, w, w2, mx);
      m[h] = mx;
      l[h] = l[h] * w + l2 * w2;
      [[unroll]] for (uint x = 0; x < CPL * 8; ++x) {
        const uint a = h * CPL * 8 + x;
        acc[a] = acc[a] * w + subgroupShuffleXor(acc[a], o) * w2;
      }
    }
  }
  // ... then the subgroups, through shared memory: lanes go over the R*HD outputs.
  const uint sg = gl_SubgroupID;
  if (sgl < LPK) {
    [[unroll]] for (uint h = 0; h < R; ++h) {
      [[unroll]] for (uint i = 0; i < CPL; ++i) {
        const uint cg = j + i * LPK;
        if (cg < NCG) {
          const uint a = (h * CPL + i) * 8, e = sg * E4 + (h * HD + cg * 8) / 4;
          sh_acc[e] = vec4(acc[a], acc[a + 1], acc[a + 2], acc[a + 3]);
          sh_acc[e + 1] = vec4(acc[a + 4], acc[a + 5], acc[a + 6], acc[a + 7]);
        }
      }
    }
    if (sgl == 0) {
      [[unroll]] for (uint h = 0; h < R; ++h) {
        sh_m[sg * R + h] = m[h];
        sh_l[sg * R + h] = l[h];
      }
    }
  }
  barrier();
  const uint nsg = gl_NumSubgroups;
  const uint first = (t * KVH + g) * p.n_chunks;  // partial records of (t, g)
  for (uint e = lid; e < E4; e += WG) {
    const uint h = e / (HD / 4);
    float mx = NEG_BIG;
    for (uint s = 0; s < nsg; ++s) mx = max(mx, sh_m[s * R + h]);
    float sum = 0.0;
    vec4 o = vec4(0.0);
    for (uint s = 0; s < nsg; ++s) {
      const float w = exp2(sh_m[s * R + h] - mx);
      sum += w * sh_l[s * R + h];
      o += w * sh_acc[s * E4 + e];
    }
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
  memoryBarrierBuffer();
  barrier();
  if (lid == 0) arrival = atomicAdd(counters[t * KVH + g], 1u);
  barrier();
  if (arrival != n_live - 1) return;  // uniform
  if (lid == 0) atomicExchange(counters[t * KVH + g], 0u);
  memoryBarrierBuffer();

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

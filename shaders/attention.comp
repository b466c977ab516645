#version 450
// Causal GQA attention of T query tokens over the fp16 KV cache, flash-attention style.
//
// Workgroup (x = key chunk c, y = kv head g, z = token block): the R = n_heads / n_kv_heads query
// heads that share kv head g, for BT consecutive tokens (M = BT*R query rows), over the keys
// [c*chunk, min((c+1)*chunk, max position in the block + 1)), in tiles of KT keys with an online
// softmax. A token at position p attends to keys 0..p (causal; earlier cached keys included).
// Everything that changes per step comes from `positions`: a chunk that lies beyond the live length
// exits at once, so the dispatch can be recorded for the maximum context.
//
// q: fp32 activations, row t at t*q_stride + q_col, head h at + h*HD (fused QKV rows work).
// K, V cache: fp16 [sequences][slot_rows][n_kv_heads][HD] read as uvec4 (8 halves), so HD % 8 == 0.
// Token t reads the rows of its own sequence slot (SLOTS: seq_slots[t] clamped to max_slot, else 0),
// so the tokens of one block may belong to different sequences.
// SPLIT=0: out fp32 row t at t*out_stride, head h at + h*HD, normalized.
// SPLIT=1: part = [T][H][n_chunks][HD] unnormalized outputs, then at stats_offset [T][H][n_chunks]
//          pairs (running max in log2 units, sum); chunks beyond a token's position are not written.
// Scores are kept in log2 units (q is pre-multiplied by scale * log2(e)), softmax in fp32.
#extension GL_EXT_control_flow_attributes : enable
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint HD = 128;
layout(constant_id = 2) const uint R = 4;    // query heads per kv head
layout(constant_id = 3) const uint BT = 1;   // tokens per workgroup
layout(constant_id = 4) const uint KT = 64;  // keys per tile
// Decode on CPU devices (lavapipe): every lane keeps the q of all R heads in registers instead of
// reading it from shared memory for every key (shared loads are per-lane gathers there). Only used
// with BT == 1; the host sets it from DeviceInfo (CPU device type).
layout(constant_id = 5) const bool Q_REGS = false;
// Read each token's sequence slot from binding 5 (false: every token in slot 0, no load at all).
layout(constant_id = 6) const bool SLOTS = false;

const uint NCG = HD / 8;          // 8-element column groups of a head
const uint M = BT * R;            // query rows of a workgroup
const uint ITEMS = NCG * BT;      // P*V work items: (column group, token), each for all R heads
const uint NPL = (ITEMS + WG - 1) / WG;
#define NEG_INF uintBitsToFloat(0xff800000u)

layout(std430, set = 0, binding = 0) readonly buffer Qkv { float qkv[]; };
layout(std430, set = 0, binding = 1) readonly buffer Pos { uint positions[]; };
layout(std430, set = 0, binding = 2) readonly buffer KCache { uvec4 kcache[]; };
layout(std430, set = 0, binding = 3) readonly buffer VCache { uvec4 vcache[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Out { float outp[]; };
layout(std430, set = 0, binding = 5) readonly buffer Slots { uint seq_slots[]; };

layout(push_constant) uniform Params {
  uint tokens;
  uint q_stride;
  uint q_col;
  uint n_kv_heads;
  uint chunk;       // keys per workgroup (multiple of KT)
  uint n_chunks;
  uint capacity;    // positions are clamped to capacity - 1
  float scale_log2e;
  uint out_stride;  // SPLIT=0
  uint stats_offset;  // SPLIT=1
  uint slot_rows;   // cache rows per sequence slot
  uint max_slot;    // sequences - 1: slots are clamped to it
} p;

shared vec4 qs[M * HD / 4];  // vec4: one wide shared load per 4 elements
shared float sc[M * KT];
shared float row_max[M];
shared float row_sum[M];
shared float row_corr[M];
shared uint tok_pos[BT];
shared uint tok_base[BT];  // first cache row of each token's sequence slot (SLOTS)

void unpack8(uvec4 w, out float v[8]) {
  vec2 a = unpackHalf2x16(w.x), b = unpackHalf2x16(w.y), c = unpackHalf2x16(w.z), d = unpackHalf2x16(w.w);
  v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y; v[4] = c.x; v[5] = c.y; v[6] = d.x; v[7] = d.y;
}

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint c = gl_WorkGroupID.x;
  const uint g = gl_WorkGroupID.y;
  const uint t0 = gl_WorkGroupID.z * BT;
  const uint nt = min(BT, p.tokens - t0);
  const uint KVH = p.n_kv_heads;

  uint max_pos = 0;
  for (uint tt = 0; tt < nt; ++tt) max_pos = max(max_pos, min(positions[t0 + tt], p.capacity - 1));
  const uint kb = c * p.chunk;
  if (kb > max_pos) return;  // the whole chunk lies beyond the live length (uniform: before any barrier)
  const uint ke = min(kb + p.chunk, max_pos + 1);

  for (uint e = lid; e < M * HD / 4; e += WG) {
    uint m = e / (HD / 4), d = (e % (HD / 4)) * 4, tt = m / R, h = m % R;
    vec4 q = vec4(0.0);
    if (tt < nt) {
      uint o = (t0 + tt) * p.q_stride + p.q_col + (g * R + h) * HD + d;
      q = vec4(qkv[o], qkv[o + 1], qkv[o + 2], qkv[o + 3]) * p.scale_log2e;
    }
    qs[e] = q;
  }
  for (uint m = lid; m < M; m += WG) {
    row_max[m] = NEG_INF;
    row_sum[m] = 0.0;
  }
  for (uint tt = lid; tt < BT; tt += WG) {
    tok_pos[tt] = tt < nt ? min(positions[t0 + tt], p.capacity - 1) : 0;
    if (SLOTS) tok_base[tt] = tt < nt ? min(seq_slots[t0 + tt], p.max_slot) * p.slot_rows : 0;
  }
  barrier();

  vec4 qr[Q_REGS ? R * HD / 4 : 1];
  if (Q_REGS) {
    [[unroll]] for (uint i = 0; i < (Q_REGS ? R * HD / 4 : 1); ++i) qr[i] = qs[i];
  }
  float acc[NPL * R * 8];
  [[unroll]] for (uint i = 0; i < NPL * R * 8; ++i) acc[i] = 0.0;

  for (uint k0 = kb; k0 < ke; k0 += KT) {
    const uint nk = min(KT, ke - k0);
    // Scores of (token, key) pairs for all R heads at once: each K row is read once.
    for (uint e = lid; e < BT * KT; e += WG) {
      uint tt = e / KT, j = e % KT, key = k0 + j;
      bool valid = tt < nt && j < nk && key <= tok_pos[tt];
      float s[R];
      [[unroll]] for (uint h = 0; h < R; ++h) s[h] = 0.0;
      const uint krow = (SLOTS ? tok_base[tt] : 0) + key;
      if (valid && Q_REGS && BT == 1) {
        uint row = (krow * KVH + g) * NCG;
        [[unroll]] for (uint cg = 0; cg < NCG; ++cg) {
          uvec4 w = kcache[row + cg];
          vec4 kv0 = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
          vec4 kv1 = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
          [[unroll]] for (uint h = 0; h < R; ++h)
            s[h] += dot(qr[h * (HD / 4) + cg * 2], kv0) + dot(qr[h * (HD / 4) + cg * 2 + 1], kv1);
        }
      } else if (valid) {
        uint row = (krow * KVH + g) * NCG;
        for (uint cg = 0; cg < NCG; ++cg) {
          uvec4 w = kcache[row + cg];
          vec4 kv0 = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
          vec4 kv1 = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
          [[unroll]] for (uint h = 0; h < R; ++h) {
            uint q = ((tt * R + h) * HD + cg * 8) / 4;
            s[h] += dot(qs[q], kv0) + dot(qs[q + 1], kv1);
          }
        }
      }
      [[unroll]] for (uint h = 0; h < R; ++h) sc[(tt * R + h) * KT + j] = valid ? s[h] : NEG_INF;
    }
    barrier();
    // Online softmax statistics, one lane per query row; scores become probabilities in place.
    for (uint m = lid; m < M; m += WG) {
      float mx = NEG_INF;
      for (uint j = 0; j < nk; ++j) mx = max(mx, sc[m * KT + j]);
      float old_max = row_max[m];
      float new_max = max(old_max, mx);
      bool empty = new_max == NEG_INF;  // no valid key yet for this row
      float corr = empty ? 1.0 : exp2(old_max - new_max);
      float sum = 0.0;
      for (uint j = 0; j < nk; ++j) {
        float pj = empty ? 0.0 : exp2(sc[m * KT + j] - new_max);
        sc[m * KT + j] = pj;
        sum += pj;
      }
      row_max[m] = new_max;
      row_sum[m] = row_sum[m] * corr + sum;
      row_corr[m] = corr;
    }
    barrier();
    // P * V: a lane owns (column group, token) items for all R heads: each V load serves R heads.
    // The item loop is innermost so that it unrolls and acc[] stays in registers.
    uint lim[NPL], vbase[NPL];
    uint jmax = 0;
    [[unroll]] for (uint i = 0; i < NPL; ++i) {
      uint item = lid + i * WG;
      uint tt = min(item / NCG, BT - 1);
      [[unroll]] for (uint h = 0; h < R; ++h) {
        float corr = row_corr[tt * R + h];
        [[unroll]] for (uint x = 0; x < 8; ++x) acc[(i * R + h) * 8 + x] *= corr;
      }
      uint pos = tok_pos[tt];
      vbase[i] = SLOTS ? tok_base[tt] : 0;
      lim[i] = (item < ITEMS && item / NCG < nt && pos >= k0) ? min(nk, pos - k0 + 1) : 0;
      jmax = max(jmax, lim[i]);
    }
    for (uint j = 0; j < jmax; ++j) {
      [[unroll]] for (uint i = 0; i < NPL; ++i) {
        if (j < lim[i]) {
          uint item = lid + i * WG;
          uint cg = item % NCG, tt = item / NCG;
          float v[8];
          unpack8(vcache[((vbase[i] + k0 + j) * KVH + g) * NCG + cg], v);
          [[unroll]] for (uint h = 0; h < R; ++h) {
            float pj = sc[(tt * R + h) * KT + j];
            [[unroll]] for (uint x = 0; x < 8; ++x) acc[(i * R + h) * 8 + x] += pj * v[x];
          }
        }
      }
    }
    barrier();
  }

  const uint H = KVH * R;
  [[unroll]] for (uint i = 0; i < NPL; ++i) {
    uint item = lid + i * WG;
    if (item < ITEMS) {
      uint cg = item % NCG, tt = item / NCG;
      if (tt < nt && tok_pos[tt] >= kb) {
        uint t = t0 + tt;
        [[unroll]] for (uint h = 0; h < R; ++h) {
          uint m = tt * R + h, head = g * R + h;
#if SPLIT
          uint idx = (t * H + head) * p.n_chunks + c;
          [[unroll]] for (uint x = 0; x < 8; ++x) outp[idx * HD + cg * 8 + x] = acc[(i * R + h) * 8 + x];
          if (cg == 0) {
            outp[p.stats_offset + idx * 2] = row_max[m];
            outp[p.stats_offset + idx * 2 + 1] = row_sum[m];
          }
#else
          float inv = 1.0 / row_sum[m];
          uint o = t * p.out_stride + head * HD + cg * 8;
          [[unroll]] for (uint x = 0; x < 8; ++x) outp[o + x] = acc[(i * R + h) * 8 + x] * inv;
#endif
        }
      }
    }
  }
}

#version 450
// Rotary position embedding on the q and k heads of fp32 activations, in place, and (STORE_KV=1) the
// store of the rotated k heads and the v heads into the fp16 KV cache at each token's position.
//
// Activations: T rows of `row_stride` floats; q heads start at column q_col (n_heads * HD floats),
// k heads at k_col, v heads at v_col (n_kv_heads * HD floats each) -- the fused QKV layout
// [T, (H + 2*KVH) * HD] with q_col = 0, k_col = H*HD, v_col = (H+KVH)*HD, or separate buffers.
// Head slots: [0, H) = q heads, [H, H+KVH) = k heads, [H+KVH, H+2*KVH) = v heads; the dispatch
// covers slots [first_slot, first_slot + n_slots). One invocation handles 4 elements of one head
// (two rotation pairs), so HD must be a multiple of 4. Grid: x = slot*HD/4 items, y = token.
// KV cache: K and V fp16 [sequences][capacity][n_kv_heads][HD] as uint words (element 2i in the
// low half): token t of sequence slot s = seq_slots[t] (SLOTS, else 0) at position p goes to row
// s * capacity + p; tokens with p >= capacity or s >= sequences are not stored (never out of bounds).
// Frequencies: freq_i = theta_scale^i with theta_scale = theta^(-2/HD) (fp32, as llama.cpp), angle
// = float(pos) * freq_i in fp32, reduced to [-pi, pi] before cos/sin.
#extension GL_GOOGLE_include_directive : require
#include "rope_rotate.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint HD = 128;
layout(constant_id = 2) const bool NEOX = true;  // false: adjacent pairs (2i, 2i+1)
// STORE_KV: read each token's sequence slot from binding 4 (false: every token in slot 0, no load).
layout(constant_id = 3) const bool SLOTS = false;

layout(std430, set = 0, binding = 0) buffer Act { float act[]; };
layout(std430, set = 0, binding = 1) readonly buffer Pos { uint positions[]; };
#if STORE_KV
layout(std430, set = 0, binding = 2) writeonly buffer KCache { uint kcache[]; };
layout(std430, set = 0, binding = 3) writeonly buffer VCache { uint vcache[]; };
layout(std430, set = 0, binding = 4) readonly buffer Slots { uint seq_slots[]; };
#endif

layout(push_constant) uniform Params {
  uint row_stride;
  uint q_col;
  uint k_col;
  uint v_col;
  uint n_heads;
  uint n_kv_heads;
  uint first_slot;
  uint n_slots;
  uint flags;     // bit 0: rotate q, bit 1: rotate k
  uint capacity;  // KV cache rows; tokens at positions >= capacity are not stored
  float theta_scale;
  uint sequences;  // KV cache regions of `capacity` rows (STORE_KV)
} p;

vec2 rotate(vec2 xy, float pos, uint freq_index) { return rope_rotate(xy, pos, freq_index, p.theta_scale); }

void main() {
  const uint QUADS = HD / 4;
  uint item = gl_GlobalInvocationID.x;
  if (item >= p.n_slots * QUADS) return;
  uint slot = p.first_slot + item / QUADS;
  uint u = item % QUADS;
  uint t = gl_WorkGroupID.y;
  uint pos = positions[t];
  // Element offsets inside the head: a = (a0, a0+1), b = (b0, b0+1).
  uint a0 = NEOX ? 2 * u : 4 * u;
  uint b0 = NEOX ? 2 * u + HD / 2 : 4 * u + 2;

  uint H = p.n_heads, KVH = p.n_kv_heads;
  bool is_q = slot < H, is_k = !is_q && slot < H + KVH;
  uint head = is_q ? slot : (is_k ? slot - H : slot - H - KVH);
  uint col = is_q ? p.q_col : (is_k ? p.k_col : p.v_col);
  uint base = t * p.row_stride + col + head * HD;
  vec2 a = vec2(act[base + a0], act[base + a0 + 1]);
  vec2 b = vec2(act[base + b0], act[base + b0 + 1]);

  bool rot = is_q ? (p.flags & 1u) != 0 : (is_k && (p.flags & 2u) != 0);
  if (rot) {
    float fpos = float(pos);
    if (NEOX) {  // pairs (a.x, b.x) with frequency a0 and (a.y, b.y) with frequency a0+1
      vec2 r0 = rotate(vec2(a.x, b.x), fpos, a0);
      vec2 r1 = rotate(vec2(a.y, b.y), fpos, a0 + 1);
      a = vec2(r0.x, r1.x);
      b = vec2(r0.y, r1.y);
    } else {  // pairs (a.x, a.y) with frequency 2u and (b.x, b.y) with frequency 2u+1
      a = rotate(a, fpos, 2 * u);
      b = rotate(b, fpos, 2 * u + 1);
    }
    act[base + a0] = a.x;
    act[base + a0 + 1] = a.y;
    act[base + b0] = b.x;
    act[base + b0 + 1] = b.y;
  }
#if STORE_KV
  uint seq = SLOTS ? seq_slots[t] : 0;
  if (!is_q && pos < p.capacity && seq < p.sequences) {
    uint w = ((seq * p.capacity + pos) * KVH + head) * (HD / 2);
    if (is_k) {
      kcache[w + a0 / 2] = packHalf2x16(a);
      kcache[w + b0 / 2] = packHalf2x16(b);
    } else {
      vcache[w + a0 / 2] = packHalf2x16(a);
      vcache[w + b0 / 2] = packHalf2x16(b);
    }
  }
#endif
}

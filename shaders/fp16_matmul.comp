#version 450
// FP16-weight GEMV (TOKENS = 1) and small-T GEMM: y[t, n] (=|+=) sum_k W[n,k] x[t,k], fp32
// activations, fp16 weights (rows padded to a multiple of 8 with zeros, read as uint words through
// unpackHalf2x16: no 16-bit storage needed), fp32 accumulation. The output head and the FP16
// baseline model run on it.
//
// Work split as in ternary_matmul.comp: LANES lanes share a row, lane l takes the 8-element chunks
// l, l + LANES, ... (one uvec4 of weights, two vec4 of activations per token); a lane group owns
// ROWS rows; partial sums meet by subgroupAdd (REDUCE = 0) or a shuffle-xor butterfly (REDUCE = 1).
//
// Build-time variant X_VEC4: activations read as vec4 (needs K % 4 == 0 so that rows are
// 16-byte aligned), else as floats. Either way the last, partial chunk (K % 8 != 0) masks the
// elements past K, so the next token's values (or the end of the buffer) are never used.
// Bindings: 0 weights uvec4 [rows][chunks] (one segment); 1 x fp32 [tokens, K]; 2 y fp32.
// Build-time variant TEXEL = 1: the weights (and, with X_VEC4, the activations, as uvec4 of float
// bits) are uniform texel buffers read with texelFetch: the fast read path on CPU devices.
// Dispatch: (ceil(rows / rows per workgroup), ceil(tokens / TOKENS), 1).
#ifndef TEXEL
#define TEXEL 0
#endif
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_GOOGLE_include_directive : require
#include "lane_slot.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint LANES = 8;
layout(constant_id = 2) const uint ROWS = 16;
layout(constant_id = 3) const uint TOKENS = 1;
layout(constant_id = 4) const uint ACCUMULATE = 0;
layout(constant_id = 5) const uint REDUCE = 0;

#if TEXEL
layout(set = 0, binding = 0) uniform usamplerBuffer w_texels;
uvec4 load_w(uint i) { return texelFetch(w_texels, int(i)); }
#else
layout(std430, set = 0, binding = 0) readonly buffer Weights { uvec4 w[]; };
uvec4 load_w(uint i) { return w[i]; }
#endif
#if X_VEC4 && TEXEL
layout(set = 0, binding = 1) uniform usamplerBuffer x_texels;
vec4 load_x4(uint i) { return uintBitsToFloat(texelFetch(x_texels, int(i))); }
#elif X_VEC4
layout(std430, set = 0, binding = 1) readonly buffer X { vec4 x[]; };
vec4 load_x4(uint i) { return x[i]; }
#else
layout(std430, set = 0, binding = 1) readonly buffer X { float x[]; };
#endif
layout(std430, set = 0, binding = 2) buffer Out { float y[]; };
layout(push_constant) uniform Params {
  uint cols;      // K
  uint chunks;    // round_up(K, 8) / 8
  uint rows;      // rows in this segment
  uint row_base;  // first row of this segment in the whole matrix
  uint tokens;
  uint y_stride;
  uint y_offset;
} p;

const uint GROUPS = gl_WorkGroupSize.x / LANES;
const uint OWNED = (ROWS + LANES - 1) / LANES;  // rows each lane stores

float reduce_lanes(float v) {
  if (REDUCE == 0) return subgroupAdd(v);
  [[unroll]] for (uint m = LANES / 2; m > 0; m >>= 1) v += subgroupShuffleXor(v, m);
  return v;
}

// Element k of token row `xrow` (an element index), for the masked tail.
float x_at(uint xrow, uint k) {
#if X_VEC4
  const uint e = xrow + k;
  return load_x4(e >> 2)[e & 3];
#else
  return x[xrow + k];
#endif
}

void main() {
  const uint lane = lane_slot() % LANES;
  const uint row0 = (gl_WorkGroupID.x * GROUPS + lane_slot() / LANES) * ROWS;
  const uint t0 = gl_WorkGroupID.y * TOKENS;
  const uint chunks = p.chunks;
  const uint full = p.cols / 8;  // chunks without padding

  float acc[ROWS * TOKENS];
  [[unroll]] for (uint i = 0; i < ROWS * TOKENS; ++i) acc[i] = 0.0;
  uint wbase[ROWS];
  [[unroll]] for (uint r = 0; r < ROWS; ++r) wbase[r] = min(row0 + r, p.rows - 1) * chunks;
  uint xrow[TOKENS];  // element index of each token's row
  [[unroll]] for (uint t = 0; t < TOKENS; ++t) xrow[t] = min(t0 + t, p.tokens - 1) * p.cols;

  // Full chunks, then (K % 8 != 0) the partial last chunk, whose activations past K are read as 0
  // (its weights there are zero padding). One loop, so the tile is compiled once.
  const uint last = full < chunks && full % LANES == lane ? full : full - 1;
  for (uint c = lane; c <= last && c < chunks; c += LANES) {
    vec4 xa[TOKENS], xb[TOKENS];
    if (c < full) {
      [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
#if X_VEC4
        const uint v = (xrow[t] >> 2) + 2 * c;
        xa[t] = load_x4(v);
        xb[t] = load_x4(v + 1);
#else
        const uint e = xrow[t] + 8 * c;
        xa[t] = vec4(x[e], x[e + 1], x[e + 2], x[e + 3]);
        xb[t] = vec4(x[e + 4], x[e + 5], x[e + 6], x[e + 7]);
#endif
      }
    } else {
      const uint valid = p.cols - 8 * c;
      [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
        float v[8];
        [[unroll]] for (uint k = 0; k < 8; ++k) v[k] = k < valid ? x_at(xrow[t], 8 * c + k) : 0.0;
        xa[t] = vec4(v[0], v[1], v[2], v[3]);
        xb[t] = vec4(v[4], v[5], v[6], v[7]);
      }
    }
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uvec4 wv = load_w(wbase[r] + c);
      const vec4 wa = vec4(unpackHalf2x16(wv.x), unpackHalf2x16(wv.y));
      const vec4 wb = vec4(unpackHalf2x16(wv.z), unpackHalf2x16(wv.w));
      [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
        float a = acc[r * TOKENS + t];
        a = fma(wa.x, xa[t].x, a);
        a = fma(wa.y, xa[t].y, a);
        a = fma(wa.z, xa[t].z, a);
        a = fma(wa.w, xa[t].w, a);
        a = fma(wb.x, xb[t].x, a);
        a = fma(wb.y, xb[t].y, a);
        a = fma(wb.z, xb[t].z, a);
        a = fma(wb.w, xb[t].w, a);
        acc[r * TOKENS + t] = a;
      }
    }
  }

  // Row r goes to lane r % LANES by selects; each lane then stores ROWS / LANES rows with plain
  // vector code (as in ternary_matmul.comp).
  [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
    float owned[OWNED];
    [[unroll]] for (uint i = 0; i < OWNED; ++i) owned[i] = 0.0;
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const float total = reduce_lanes(acc[r * TOKENS + t]);
      if (r % LANES == lane) owned[r / LANES] = total;
    }
    const uint token = t0 + t;
    [[unroll]] for (uint i = 0; i < OWNED; ++i) {
      const uint row = row0 + i * LANES + lane;
      if (i * LANES + lane >= ROWS || row >= p.rows || token >= p.tokens) continue;
      const uint o = token * p.y_stride + p.y_offset + p.row_base + row;
      if (ACCUMULATE != 0) y[o] += owned[i];
      else y[o] = owned[i];
    }
  }
}

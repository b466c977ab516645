#version 450
// Int8-weight GEMV (TOKENS = 1) and small-T GEMM: y[t, n] (=|+=) scale[n] * sum_k q[n,k] x[t,k], with
// int8 weights and one float scale per row (w = q * scale), fp32 activations and accumulation. The
// optional int8 output head runs on it: half the bytes of the FP16 head, whose read dominates a
// decode token (docs/performance.md).
//
// Work split as in fp16_matmul.comp: LANES lanes share a row, lane l takes the 16-element chunks
// l, l + LANES, ... (one uvec4 of weights, four vec4 of activations per token); a lane group owns
// ROWS rows; partial sums meet by subgroupAdd (REDUCE = 0) or a shuffle-xor butterfly (REDUCE = 1).
// The epilogue hands row r to lane r % LANES by selects, so that each lane scales and stores
// ROWS / LANES rows with plain vector code (on CPU devices a store under a per-lane condition is a
// loop over the lanes; one such store per row cost as much as a sixth of a 2560-wide GEMV).
//
// Rows are padded with zero weights to a multiple of 16; the last, partial chunk (K % 16 != 0)
// masks the activations past K. K % 4 == 0 (activations read as vec4).
// Bindings: 0 weights uvec4 [rows][chunks] (one segment); 1 x fp32 [tokens, K]; 2 row scales fp32
// [rows of the whole matrix]; 3 y fp32. Dispatch: (ceil(rows / rows per workgroup), ceil(tokens / TOKENS), 1).
// Build-time variant TEXEL = 1: weights and activations are uniform texel buffers read with
// texelFetch (the fast read path on CPU devices).
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
layout(set = 0, binding = 1) uniform usamplerBuffer x_texels;
uvec4 load_w(uint i) { return texelFetch(w_texels, int(i)); }
vec4 load_x4(uint i) { return uintBitsToFloat(texelFetch(x_texels, int(i))); }
#else
layout(std430, set = 0, binding = 0) readonly buffer Weights { uvec4 w[]; };
layout(std430, set = 0, binding = 1) readonly buffer X { vec4 x[]; };
uvec4 load_w(uint i) { return w[i]; }
vec4 load_x4(uint i) { return x[i]; }
#endif
layout(std430, set = 0, binding = 2) readonly buffer Scales { float row_scale[]; };
layout(std430, set = 0, binding = 3) buffer Out { float y[]; };
layout(push_constant) uniform Params {
  uint cols;      // K
  uint chunks;    // round_up(K, 16) / 16
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

// The four int8 of a word as floats, low byte first.
vec4 bytes_to_floats(uint word) {
  const int v = int(word);
  return vec4(float((v << 24) >> 24), float((v << 16) >> 24), float((v << 8) >> 24), float(v >> 24));
}

void main() {
  const uint lane = lane_slot() % LANES;
  const uint row0 = (gl_WorkGroupID.x * GROUPS + lane_slot() / LANES) * ROWS;
  const uint t0 = gl_WorkGroupID.y * TOKENS;
  const uint chunks = p.chunks;
  const uint cols4 = p.cols / 4;

  float acc[ROWS * TOKENS];
  [[unroll]] for (uint i = 0; i < ROWS * TOKENS; ++i) acc[i] = 0.0;
  uint wbase[ROWS];
  [[unroll]] for (uint r = 0; r < ROWS; ++r) wbase[r] = min(row0 + r, p.rows - 1) * chunks;
  uint xbase[TOKENS];  // vec4 index of each token's row
  [[unroll]] for (uint t = 0; t < TOKENS; ++t) xbase[t] = min(t0 + t, p.tokens - 1) * cols4;

  for (uint c = lane; c < chunks; c += LANES) {
    vec4 xv[TOKENS * 4];
    [[unroll]] for (uint t = 0; t < TOKENS; ++t)
      [[unroll]] for (uint j = 0; j < 4; ++j) {
        // Past K (the partial last chunk) the weights are zero padding but the activations belong
        // to the next token or lie past the buffer: read a valid vec4 and zero it.
        const uint v = 4 * c + j;
        const vec4 a = load_x4(xbase[t] + min(v, cols4 - 1));
        xv[t * 4 + j] = v < cols4 ? a : vec4(0.0);
      }
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uvec4 wv = load_w(wbase[r] + c);
      [[unroll]] for (uint j = 0; j < 4; ++j) {
        const vec4 wf = bytes_to_floats(wv[j]);
        [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
          const vec4 xt = xv[t * 4 + j];
          float a = acc[r * TOKENS + t];
          a = fma(wf.x, xt.x, a);
          a = fma(wf.y, xt.y, a);
          a = fma(wf.z, xt.z, a);
          a = fma(wf.w, xt.w, a);
          acc[r * TOKENS + t] = a;
        }
      }
    }
  }

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
      const float v = owned[i] * row_scale[p.row_base + row];
      const uint o = token * p.y_stride + p.y_offset + p.row_base + row;
      if (ACCUMULATE != 0) y[o] += v;
      else y[o] = v;
    }
  }
}

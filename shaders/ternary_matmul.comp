#version 450
// Ternary GEMV (TOKENS = 1) and small-T GEMM: y[t, n] (=|+=) (sum_k w[n,k] q[t,k]) * scale[n] * s[t]
// on 2-bit packed weights and int8 activations (layouts: docs/architecture.md), int32 accumulation.
//
// Work split: a lane group of LANES invocations shares each row; lane l takes the 64-element chunks
// l, l + LANES, ... of K (one uvec4 of weights, four uvec4 of activations per token), so every
// activation load serves ROWS rows and every weight load serves TOKENS tokens. The group owns ROWS
// consecutive rows; a workgroup holds WG / LANES groups. Partial sums meet by subgroupAdd
// (REDUCE = 0: the workgroup is exactly one subgroup of LANES) or a shuffle-xor butterfly within the
// LANES-wide cluster (REDUCE = 1). No shared memory, no barriers.
//
// Inner products (build-time variant DOT):
//   DOT = 1: OpSDot on four codes c = w + 1 (bytes of (word >> 2i) & 0x03030303) and four int8 q:
//            sum w q = sum c q - sum_q.
//   DOT = 0: 16-bit SWAR, two products per 32-bit multiply: f = (word >> 2i) & 0x00030003 holds
//            c(4i) | c(4i+2) << 16 and P = u(2) | u(0) << 16 (u = q + 128 >= 0), so bits 16..31 of
//            f * P gain c(4i) u(0) + c(4i+2) u(2); the same with word >> (2i+8) and bytes 1, 3.
//            32 products (one chunk) add at most 32 * 1020 to the high half and 32 * 510 to the low
//            half: no overflow, no carry, flushed once per chunk.
//            sum w q = sum c u - 128 * row_code_sum - sum_q.
//
// Bindings: 0 weights uvec4 [rows][chunks] (one segment); 1 row_info {int code_sum, float scale}
// of the whole matrix; 2 activations uvec4 [tokens][chunks * 4]; 3 meta {float s, int sum_q}
// [tokens]; 4 y fp32. Dispatch: (ceil(rows / rows per workgroup), ceil(tokens / TOKENS), 1).
//
// Build-time variant TEXEL = 1: bindings 0, 1 and 2 are uniform texel buffers (R32G32B32A32_UINT
// views of the same bytes; row_info is padded to whole texels, two rows per texel) read with
// texelFetch. Same layout, same arithmetic; on CPU devices such as lavapipe the texture path loads a
// uvec4 per lane far faster than a storage-buffer load (docs/performance.md).
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#ifndef TEXEL
#define TEXEL 0
#endif
#if DOT
#extension GL_EXT_spirv_intrinsics : require
// OpSDot (SPV_KHR_integer_dot_product), operand PackedVectorFormat4x8Bit = 0.
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot_4x8_packed(uint a, uint b, spirv_literal int packed_vector_format);
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint LANES = 8;       // lanes that split one row (power of 2)
layout(constant_id = 2) const uint ROWS = 16;       // rows per lane group
layout(constant_id = 3) const uint TOKENS = 1;      // tokens per workgroup
layout(constant_id = 4) const uint ACCUMULATE = 0;  // 0: y = result, 1: y += result
layout(constant_id = 5) const uint REDUCE = 0;      // 0: subgroupAdd, 1: shuffle-xor within LANES

#if TEXEL
layout(set = 0, binding = 0) uniform usamplerBuffer w_texels;
layout(set = 0, binding = 1) uniform usamplerBuffer row_info_texels;
layout(set = 0, binding = 2) uniform usamplerBuffer xq_texels;
uvec4 load_w(uint i) { return texelFetch(w_texels, int(i)); }
uvec4 load_xq(uint i) { return texelFetch(xq_texels, int(i)); }
ivec2 load_row_info(uint row) {
  const uvec4 v = texelFetch(row_info_texels, int(row >> 1));
  return ivec2((row & 1u) != 0 ? v.zw : v.xy);
}
#else
layout(std430, set = 0, binding = 0) readonly buffer Weights { uvec4 w[]; };
layout(std430, set = 0, binding = 1) readonly buffer RowInfo { ivec2 row_info[]; };
layout(std430, set = 0, binding = 2) readonly buffer Values { uvec4 xq[]; };
uvec4 load_w(uint i) { return w[i]; }
uvec4 load_xq(uint i) { return xq[i]; }
ivec2 load_row_info(uint row) { return row_info[row]; }
#endif
layout(std430, set = 0, binding = 3) readonly buffer Meta { ivec2 meta[]; };
layout(std430, set = 0, binding = 4) buffer Out { float y[]; };
layout(push_constant) uniform Params {
  uint chunks;    // Kp / 64
  uint rows;      // rows in this segment
  uint row_base;  // first row of this segment in the whole matrix
  uint tokens;
  uint y_stride;  // floats between the outputs of consecutive tokens
  uint y_offset;  // output column of the matrix's row 0
} p;

const uint GROUPS = gl_WorkGroupSize.x / LANES;
const uint OWNED = (ROWS + LANES - 1) / LANES;  // rows each lane finishes

int reduce_lanes(int v) {
  if (REDUCE == 0) return subgroupAdd(v);
  [[unroll]] for (uint m = LANES / 2; m > 0; m >>= 1) v += subgroupShuffleXor(v, m);
  return v;
}

#include "ternary_epilogue.glsl"
#include "lane_slot.glsl"

void main() {
  const uint lane = lane_slot() % LANES;
  const uint row0 = (gl_WorkGroupID.x * GROUPS + lane_slot() / LANES) * ROWS;
  const uint t0 = gl_WorkGroupID.y * TOKENS;
  const uint chunks = p.chunks;

  int acc[ROWS * TOKENS];
  [[unroll]] for (uint i = 0; i < ROWS * TOKENS; ++i) acc[i] = 0;
  // Rows and tokens past the end are clamped so that every load stays in bounds; their results
  // are never stored.
  uint wbase[ROWS];
  [[unroll]] for (uint r = 0; r < ROWS; ++r) wbase[r] = min(row0 + r, p.rows - 1) * chunks;
  uint xbase[TOKENS];
  [[unroll]] for (uint t = 0; t < TOKENS; ++t) xbase[t] = min(t0 + t, p.tokens - 1) * chunks * 4;

  for (uint c = lane; c < chunks; c += LANES) {
#if DOT
    uvec4 a[TOKENS * 4];  // the chunk's 16 activation words per token
    [[unroll]] for (uint t = 0; t < TOKENS; ++t)
      [[unroll]] for (uint j = 0; j < 4; ++j) a[t * 4 + j] = load_xq(xbase[t] + c * 4 + j);
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uvec4 wv = load_w(wbase[r] + c);
      [[unroll]] for (uint j = 0; j < 4; ++j)
        [[unroll]] for (uint i = 0; i < 4; ++i) {
          const uint codes = (wv[j] >> (2 * i)) & 0x03030303u;
          [[unroll]] for (uint t = 0; t < TOKENS; ++t) acc[r * TOKENS + t] += sdot_4x8_packed(codes, a[t * 4 + j][i], 0);
        }
    }
#else
    uint pe[TOKENS * 16];  // u(0) << 16 | u(2) of activation word 4j + i
    uint po[TOKENS * 16];  // u(1) << 16 | u(3)
    [[unroll]] for (uint t = 0; t < TOKENS; ++t)
      [[unroll]] for (uint j = 0; j < 4; ++j) {
        const uvec4 u = load_xq(xbase[t] + c * 4 + j) ^ 0x80808080u;
        [[unroll]] for (uint i = 0; i < 4; ++i) {
          pe[t * 16 + j * 4 + i] = ((u[i] << 16) & 0x00ff0000u) | ((u[i] >> 16) & 0xffu);
          po[t * 16 + j * 4 + i] = ((u[i] << 8) & 0x00ff0000u) | (u[i] >> 24);
        }
      }
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uvec4 wv = load_w(wbase[r] + c);
      uint part[TOKENS];
      [[unroll]] for (uint t = 0; t < TOKENS; ++t) part[t] = 0;
      [[unroll]] for (uint j = 0; j < 4; ++j)
        [[unroll]] for (uint i = 0; i < 4; ++i) {
          const uint fe = (wv[j] >> (2 * i)) & 0x00030003u;
          const uint fo = (wv[j] >> (2 * i + 8)) & 0x00030003u;
          [[unroll]] for (uint t = 0; t < TOKENS; ++t) part[t] += fe * pe[t * 16 + j * 4 + i] + fo * po[t * 16 + j * 4 + i];
        }
      [[unroll]] for (uint t = 0; t < TOKENS; ++t) acc[r * TOKENS + t] += int(part[t] >> 16);
    }
#endif
  }

  // Row r goes to lane r % LANES by selects; each lane then finishes ROWS / LANES rows with plain
  // vector code (on CPU devices a store under a per-lane condition is a loop over the lanes: one such
  // store per row cost about a sixth of a 2560-wide GEMV).
  [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
    int owned[OWNED];
    [[unroll]] for (uint i = 0; i < OWNED; ++i) owned[i] = 0;
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const int total = reduce_lanes(acc[r * TOKENS + t]);
      if (r % LANES == lane) owned[r / LANES] = total;
    }
    const uint token = t0 + t;
    if (token >= p.tokens) continue;
    const ivec2 m = meta[token];
    [[unroll]] for (uint i = 0; i < OWNED; ++i) {
      const uint row = row0 + i * LANES + lane;
      if (i * LANES + lane >= ROWS || row >= p.rows) continue;
      const ivec2 info = load_row_info(p.row_base + row);
#if DOT
      const int wq = owned[i] - m.y;
#else
      const int wq = owned[i] - 128 * info.x - m.y;
#endif
      const float v = scaled_sum(wq, info.y, m.x);
      const uint o = token * p.y_stride + p.y_offset + p.row_base + row;
      if (ACCUMULATE != 0) y[o] += v;
      else y[o] = v;
    }
  }
}

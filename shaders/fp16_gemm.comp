#version 450
// Tiled FP16-weight GEMM for prefill: y[t, n] (=|+=) sum_k W[n,k] x[t,k], the inputs and outputs of
// fp16_matmul.comp (fp16 weights as uint words, fp32 activations, fp32 accumulation), with the
// GEMV's exact arithmetic: every output is the same sequence of fma()s and the same shuffle-xor
// butterfly as fp16_matmul.comp with REDUCE = 1 and the same LANES (the GPU shape), so the two
// kernels agree bit for bit there (and to fp32 rounding elsewhere). That keeps a sequence's
// logits independent of how many tokens share a pass, whichever kernel the token count picks.
//
// Tiling: a workgroup owns BM = ROW_GROUPS * ROWS rows by BN = TOKEN_GROUPS * TOKENS tokens. Its
// invocations form groups of LANES lanes; group (r, g) keeps ROWS x TOKENS fp32 sums per lane for
// rows m * ROW_GROUPS + r and tokens j * TOKEN_GROUPS + g of the tile. As in the GEMV, lane l of a
// group takes the 8-element chunks l, l + LANES, ... of K in order. K runs in blocks of KROUNDS
// rounds of LANES chunks: each block's weights (fp16, as staged) and activations (fp32: the
// baseline's numerics, no rounding to fp16) go to shared memory, then each lane multiplies its
// chunk of every round for its register block. Token groups are the fastest-varying, so the groups
// of one subgroup read the same weight rows (broadcasts); a group's lanes read consecutive 8- or
// 16-byte pieces. The next block's global loads are issued before the current block is multiplied.
// Finally each sum is reduced over its LANES lanes and one lane stores it.
//
// Build-time variant X_VEC4: activations read as vec4 (needs K % 4 == 0 and 16-byte aligned rows),
// else as floats; elements past K are staged as 0 (the weights there are zero padding, as in the
// GEMV's masked last chunk). Chunks past the padded row are skipped, as the GEMV never visits them.
// Bindings: 0 weights uvec4 [rows][chunks] (one segment); 1 x fp32 [tokens, K]; 2 y fp32.
// Dispatch: (ceil(rows / BM), ceil(tokens / BN), 1), one per segment.
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_GOOGLE_include_directive : require
#include "lane_slot.glsl"

layout(local_size_x_id = 0) in;  // LANES * ROW_GROUPS * TOKEN_GROUPS
layout(constant_id = 1) const uint ROW_GROUPS = 8;
layout(constant_id = 2) const uint TOKEN_GROUPS = 4;
layout(constant_id = 3) const uint ROWS = 8;        // rows per group
layout(constant_id = 4) const uint TOKENS = 8;      // tokens per group
layout(constant_id = 5) const uint KROUNDS = 1;     // rounds of LANES chunks per K block
layout(constant_id = 6) const uint ACCUMULATE = 0;  // 0: y = result, 1: y += result
layout(constant_id = 7) const uint LANES = 8;       // lanes that split K (power of 2, <= subgroup)

layout(std430, set = 0, binding = 0) readonly buffer Weights { uvec4 w[]; };
#if X_VEC4
layout(std430, set = 0, binding = 1) readonly buffer X { vec4 x[]; };
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

const uint GROUPS = ROW_GROUPS * TOKEN_GROUPS;
const uint WG = GROUPS * LANES;
const uint BM = ROW_GROUPS * ROWS;
const uint BN = TOKEN_GROUPS * TOKENS;
const uint KC = KROUNDS * LANES;    // chunks per block
const uint W_STRIDE = 2 * KC + 2;   // uvec2 (4 halves) per staged row, padded by 16 bytes
const uint X_STRIDE = 2 * KC + 1;   // vec4 per staged token row, padded by 16 bytes
const uint W_LOADS = (BM * KC + WG - 1) / WG;  // global uvec4 per invocation per block
#if X_VEC4
const uint X_PER_BLOCK = BN * KC * 2;  // vec4
#else
const uint X_PER_BLOCK = BN * KC * 8;  // floats
#endif
const uint X_LOADS = (X_PER_BLOCK + WG - 1) / WG;

// Weights: row-major, chunk c of the block at uvec2 2c (elements 0..3) and 2c + 1 (4..7).
shared uvec2 w_tile[BM * W_STRIDE];
// Activations: per token row, chunk c = round * LANES + l at vec4 round * 2 * LANES + h * LANES + l
// for its elements 4h .. 4h+3, so that the lanes of a group read consecutive vec4.
shared vec4 x_tile[BN * X_STRIDE];

uvec4 w_reg[W_LOADS];
#if X_VEC4
vec4 x_reg[X_LOADS];
#else
float x_reg[X_LOADS];
#endif

uint x_slot(uint c, uint h) { return (c / LANES) * 2 * LANES + h * LANES + c % LANES; }

void load_block(uint kb, uint row0, uint tok0) {
  const uint inv = gl_LocalInvocationID.x;
  [[unroll]] for (uint l = 0; l < W_LOADS; ++l) {
    const uint i = inv + l * WG;
    const uint row = min(row0 + i / KC, p.rows - 1);
    const uint chunk = kb * KC + i % KC;
    w_reg[l] = i < BM * KC && chunk < p.chunks ? w[row * p.chunks + chunk] : uvec4(0);
  }
  [[unroll]] for (uint l = 0; l < X_LOADS; ++l) {
    const uint i = inv + l * WG;
#if X_VEC4
    const uint token = min(tok0 + i / (KC * 2), p.tokens - 1);
    const uint e = kb * KC * 8 + (i % (KC * 2)) * 4;  // first element (K % 4 == 0: all four or none valid)
    x_reg[l] = i < X_PER_BLOCK && e < p.cols ? x[(token * p.cols + e) / 4] : vec4(0.0);
#else
    const uint token = min(tok0 + i / (KC * 8), p.tokens - 1);
    const uint e = kb * KC * 8 + i % (KC * 8);
    x_reg[l] = i < X_PER_BLOCK && e < p.cols ? x[token * p.cols + e] : 0.0;
#endif
  }
}

void stage_block() {
  const uint inv = gl_LocalInvocationID.x;
  [[unroll]] for (uint l = 0; l < W_LOADS; ++l) {
    const uint i = inv + l * WG;
    if (i >= BM * KC) continue;
    const uint base = (i / KC) * W_STRIDE + (i % KC) * 2;
    w_tile[base] = w_reg[l].xy;
    w_tile[base + 1] = w_reg[l].zw;
  }
  [[unroll]] for (uint l = 0; l < X_LOADS; ++l) {
    const uint i = inv + l * WG;
    if (i >= X_PER_BLOCK) continue;
#if X_VEC4
    const uint token = i / (KC * 2), v = i % (KC * 2);
    x_tile[token * X_STRIDE + x_slot(v / 2, v % 2)] = x_reg[l];
#else
    const uint token = i / (KC * 8), e = i % (KC * 8);
    x_tile[token * X_STRIDE + x_slot(e / 8, (e / 4) % 2)][e % 4] = x_reg[l];
#endif
  }
}

void main() {
  const uint lane = lane_slot() % LANES, group = lane_slot() / LANES;
  const uint g = group % TOKEN_GROUPS, r = group / TOKEN_GROUPS;
  const uint row0 = gl_WorkGroupID.x * BM, tok0 = gl_WorkGroupID.y * BN;
  const uint blocks = (p.chunks + KC - 1) / KC;

  float acc[ROWS * TOKENS];
  [[unroll]] for (uint i = 0; i < ROWS * TOKENS; ++i) acc[i] = 0.0;

  load_block(0, row0, tok0);
  for (uint kb = 0; kb < blocks; ++kb) {
    barrier();  // the previous block's reads of the tiles are done
    stage_block();
    barrier();
    if (kb + 1 < blocks) load_block(kb + 1, row0, tok0);
    [[unroll]] for (uint round = 0; round < KROUNDS; ++round) {
      const uint c = round * LANES + lane;
      if (kb * KC + c >= p.chunks) continue;
      [[unroll]] for (uint h = 0; h < 2; ++h) {  // elements 4h .. 4h+3 of the chunk, in order
        vec4 xh[TOKENS];
        [[unroll]] for (uint j = 0; j < TOKENS; ++j) xh[j] = x_tile[(j * TOKEN_GROUPS + g) * X_STRIDE + x_slot(c, h)];
        [[unroll]] for (uint m = 0; m < ROWS; ++m) {
          const uvec2 wv = w_tile[(m * ROW_GROUPS + r) * W_STRIDE + c * 2 + h];
          const vec4 wf = vec4(unpackHalf2x16(wv.x), unpackHalf2x16(wv.y));
          [[unroll]] for (uint j = 0; j < TOKENS; ++j) {
            float a = acc[m * TOKENS + j];
            a = fma(wf.x, xh[j].x, a);
            a = fma(wf.y, xh[j].y, a);
            a = fma(wf.z, xh[j].z, a);
            a = fma(wf.w, xh[j].w, a);
            acc[m * TOKENS + j] = a;
          }
        }
      }
    }
  }

  // The GEMV's butterfly (REDUCE = 1): every lane ends with the same total; lane (m * TOKENS + j)
  // % LANES stores it.
  [[unroll]] for (uint m = 0; m < ROWS; ++m)
    [[unroll]] for (uint j = 0; j < TOKENS; ++j) {
      float v = acc[m * TOKENS + j];
      [[unroll]] for (uint s = LANES / 2; s > 0; s >>= 1) v += subgroupShuffleXor(v, s);
      const uint row = row0 + m * ROW_GROUPS + r, token = tok0 + j * TOKEN_GROUPS + g;
      if ((m * TOKENS + j) % LANES != lane || row >= p.rows || token >= p.tokens) continue;
      const uint o = token * p.y_stride + p.y_offset + p.row_base + row;
      if (ACCUMULATE != 0) y[o] += v;
      else y[o] = v;
    }
}

#version 450
// Tiled ternary GEMM for prefill: y[t, n] (=|+=) (sum_k w[n,k] q[t,k]) * scale[n] * s[t], the same
// inputs, outputs and integer sums as ternary_matmul.comp (layouts: docs/architecture.md), so the
// results are bit-identical to it.
//
// Tiling: a workgroup owns a tile of BM = ROW_GROUPS * ROWS rows by BN = TOKEN_GROUPS * TOKENS
// tokens, held by KSPLIT slices of ROW_GROUPS * TOKEN_GROUPS invocations. Invocation i is row group
// r, token group g (r varies fastest) of slice i / (ROW_GROUPS * TOKEN_GROUPS); it keeps ROWS x
// TOKENS int32 sums in registers, for rows m * ROW_GROUPS + r and tokens j * TOKEN_GROUPS + g of the
// tile (interleaved, so that neighbouring invocations read neighbouring shared rows). K runs in
// blocks of KSPLIT * KCHUNKS 64-element chunks: each block's weights (2-bit codes decoded to one byte
// per element, (word >> 2i) & 0x03030303) and activations are staged in shared memory, then slice s
// multiplies its register block over chunks s * KCHUNKS .. of the block. The next block's global
// loads are issued before the current block is multiplied (register prefetch), so their latency
// hides behind it. With KSPLIT > 1 (small tiles, so that few tokens still make enough workgroups
// to fill a large GPU) the slices' sums meet in shared memory at the end, each slice finishing a
// share of the outputs; integer sums, so the split changes no result.
// Shared rows are padded by one uvec4 (a stride of 4 mod 8 words): the 8 invocations that share a
// 128-bit load phase read 8 different bank quads.
//
// Inner products (build-time variant DOT), as in ternary_matmul.comp:
//   DOT = 1: OpSDot of four codes c = w + 1 with four int8 q; sum w q = sum c q - sum_q.
//   DOT = 0: 16-bit SWAR. Activations are staged as pe = u0 << 16 | u2 and po = u1 << 16 | u3
//            (u = q + 128) per word, so (codes & 0x00ff00ff) * pe gains c0 u0 + c2 u2 in bits
//            16..31 and ((codes >> 8) & 0x00ff00ff) * po gains c1 u1 + c3 u3. A chunk is 32
//            products of at most 1020 (high half) and 510 (low half): flushed once per chunk.
//            sum w q = sum c u - 128 * row_code_sum - sum_q.
// Blocks past the padded row (K not a multiple of the block) stage code 0, which adds nothing on
// either path; rows and tokens past the end are clamped for loading and never stored.
//
// Bindings: 0 weights uvec4 [rows][chunks] (one segment); 1 row_info {int code_sum, float scale}
// of the whole matrix; 2 activations uvec4 [tokens][chunks * 4]; 3 meta {float s, int sum_q}
// [tokens]; 4 y fp32. Dispatch: (ceil(rows / BM), ceil(tokens / BN), 1), one per segment.
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#if DOT
#extension GL_EXT_spirv_intrinsics : require
// OpSDot (SPV_KHR_integer_dot_product), operand PackedVectorFormat4x8Bit = 0.
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot_4x8_packed(uint a, uint b, spirv_literal int packed_vector_format);
#endif

layout(local_size_x_id = 0) in;                     // ROW_GROUPS * TOKEN_GROUPS * KSPLIT
layout(constant_id = 1) const uint ROW_GROUPS = 16;
layout(constant_id = 2) const uint TOKEN_GROUPS = 16;
layout(constant_id = 3) const uint ROWS = 8;        // rows per invocation
layout(constant_id = 4) const uint TOKENS = 4;      // tokens per invocation
layout(constant_id = 5) const uint KCHUNKS = 2;     // 64-element chunks per slice per K block
layout(constant_id = 6) const uint ACCUMULATE = 0;  // 0: y = result, 1: y += result
layout(constant_id = 8) const uint KSPLIT = 1;      // slices that split each K block

layout(std430, set = 0, binding = 0) readonly buffer Weights { uvec4 w[]; };
layout(std430, set = 0, binding = 1) readonly buffer RowInfo { ivec2 row_info[]; };
layout(std430, set = 0, binding = 2) readonly buffer Values { uvec4 xq[]; };
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

const uint POSITIONS = ROW_GROUPS * TOKEN_GROUPS;  // invocations per slice
const uint WG = POSITIONS * KSPLIT;
const uint BM = ROW_GROUPS * ROWS;
const uint BN = TOKEN_GROUPS * TOKENS;
const uint SUMS = ROWS * TOKENS;     // per invocation
const uint KC = KCHUNKS * KSPLIT;    // chunks per K block
const uint W_STRIDE = KC * 4 + 1;    // uvec4 per staged weight row (4 per chunk + padding)
#if DOT
const uint X_PER_CHUNK = 4;  // uvec4 of int8 q per chunk
#else
const uint X_PER_CHUNK = 8;  // uvec4 of (pe, po) pairs per chunk
#endif
const uint X_STRIDE = KC * X_PER_CHUNK + 1;
const uint W_LOADS = (BM * KC + WG - 1) / WG;      // global weight uvec4 per invocation per block
const uint X_LOADS = (BN * KC * 4 + WG - 1) / WG;  // global activation uvec4 per invocation per block

// One array: the weight tile at 0, the activation tile at X_BASE; with KSPLIT > 1 it then holds
// every slice's sums (int i of it at [i / 4][i % 4]).
const uint X_BASE = BM * W_STRIDE;
const uint TILES = X_BASE + BN * X_STRIDE;
const uint PARTIALS = KSPLIT > 1 ? (WG * SUMS + 3) / 4 : 0;
shared uvec4 smem[TILES > PARTIALS ? TILES : PARTIALS];

uvec4 w_reg[W_LOADS];
uvec4 x_reg[X_LOADS];

// Global loads of block `kb` into registers.
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
    const uint token = min(tok0 + i / (KC * 4), p.tokens - 1);
    const uint word4 = kb * KC * 4 + i % (KC * 4);  // uvec4 index within the token's row
    x_reg[l] = i < BN * KC * 4 && word4 < p.chunks * 4 ? xq[token * p.chunks * 4 + word4] : uvec4(0);
  }
}

// The registers of the last load_block into shared memory: weights decoded to one code per byte.
void stage_block() {
  const uint inv = gl_LocalInvocationID.x;
  [[unroll]] for (uint l = 0; l < W_LOADS; ++l) {
    const uint i = inv + l * WG;
    if (i >= BM * KC) continue;
    const uint base = (i / KC) * W_STRIDE + (i % KC) * 4;
    // Word j of the chunk holds elements 16j .. 16j+15; (word >> 2i) & 0x03030303 is 16j+4i .. +3.
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      const uint v = w_reg[l][j];
      smem[base + j] = uvec4(v, v >> 2, v >> 4, v >> 6) & 0x03030303u;
    }
  }
  [[unroll]] for (uint l = 0; l < X_LOADS; ++l) {
    const uint i = inv + l * WG;
    if (i >= BN * KC * 4) continue;
    const uint base = X_BASE + (i / (KC * 4)) * X_STRIDE, part = i % (KC * 4);
#if DOT
    smem[base + part] = x_reg[l];
#else
    const uvec4 u = x_reg[l] ^ 0x80808080u;
    const uvec4 pe = ((u << 16) & 0x00ff0000u) | ((u >> 16) & 0xffu);
    const uvec4 po = ((u << 8) & 0x00ff0000u) | (u >> 24);
    smem[base + part * 2] = uvec4(pe.x, po.x, pe.y, po.y);
    smem[base + part * 2 + 1] = uvec4(pe.z, po.z, pe.w, po.w);
#endif
  }
}

#include "ternary_epilogue.glsl"

void main() {
  const uint inv = gl_LocalInvocationID.x;
  const uint pos = inv % POSITIONS, slice = inv / POSITIONS;
  const uint r = pos % ROW_GROUPS, g = pos / ROW_GROUPS;
  const uint row0 = gl_WorkGroupID.x * BM, tok0 = gl_WorkGroupID.y * BN;
  const uint blocks = (p.chunks + KC - 1) / KC;

  int acc[SUMS];
  [[unroll]] for (uint i = 0; i < SUMS; ++i) acc[i] = 0;

  load_block(0, row0, tok0);
  for (uint kb = 0; kb < blocks; ++kb) {
    barrier();  // the previous block's reads of the tiles are done
    stage_block();
    barrier();
    if (kb + 1 < blocks) load_block(kb + 1, row0, tok0);
    [[unroll]] for (uint cs = 0; cs < KCHUNKS; ++cs) {
      const uint c = slice * KCHUNKS + cs;  // chunk of the block
#if DOT
      [[unroll]] for (uint q = 0; q < 4; ++q) {  // k-words 4q .. 4q+3 of the chunk
        uvec4 a[TOKENS];
        [[unroll]] for (uint j = 0; j < TOKENS; ++j) a[j] = smem[X_BASE + (j * TOKEN_GROUPS + g) * X_STRIDE + c * 4 + q];
        [[unroll]] for (uint m = 0; m < ROWS; ++m) {
          const uvec4 codes = smem[(m * ROW_GROUPS + r) * W_STRIDE + c * 4 + q];
          [[unroll]] for (uint j = 0; j < TOKENS; ++j)
            acc[m * TOKENS + j] += sdot_4x8_packed(codes.x, a[j].x, 0) + sdot_4x8_packed(codes.y, a[j].y, 0) +
                                   sdot_4x8_packed(codes.z, a[j].z, 0) + sdot_4x8_packed(codes.w, a[j].w, 0);
        }
      }
#else
      uint part[SUMS];
      [[unroll]] for (uint i = 0; i < SUMS; ++i) part[i] = 0;
      [[unroll]] for (uint q = 0; q < 4; ++q) {
        uvec4 a[TOKENS * 2];  // (pe, po) of k-words 4q .. 4q+3
        [[unroll]] for (uint j = 0; j < TOKENS; ++j) {
          const uint base = X_BASE + (j * TOKEN_GROUPS + g) * X_STRIDE + c * 8 + q * 2;
          a[j * 2] = smem[base];
          a[j * 2 + 1] = smem[base + 1];
        }
        [[unroll]] for (uint m = 0; m < ROWS; ++m) {
          const uvec4 codes = smem[(m * ROW_GROUPS + r) * W_STRIDE + c * 4 + q];
          const uvec4 fe = codes & 0x00ff00ffu, fo = (codes >> 8) & 0x00ff00ffu;
          [[unroll]] for (uint j = 0; j < TOKENS; ++j)
            part[m * TOKENS + j] += fe.x * a[j * 2].x + fo.x * a[j * 2].y + fe.y * a[j * 2].z + fo.y * a[j * 2].w +
                                    fe.z * a[j * 2 + 1].x + fo.z * a[j * 2 + 1].y + fe.w * a[j * 2 + 1].z +
                                    fo.w * a[j * 2 + 1].w;
        }
      }
      [[unroll]] for (uint i = 0; i < SUMS; ++i) acc[i] += int(part[i] >> 16);
#endif
    }
  }

  // Sum i of invocation (slice s, position pos) sits at int (s * SUMS + i) * POSITIONS + pos: the
  // slices of one position read and write neighbouring ints. Slice s finishes sums i = s mod KSPLIT.
  if (KSPLIT > 1) {
    barrier();  // every slice is done with the tiles
    [[unroll]] for (uint i = 0; i < SUMS; ++i) {
      const uint at = (slice * SUMS + i) * POSITIONS + pos;
      smem[at / 4][at % 4] = uint(acc[i]);
    }
    barrier();
    [[unroll]] for (uint i = 0; i < SUMS; ++i) {
      if (i % KSPLIT != slice) continue;
      int total = 0;
      [[unroll]] for (uint s = 0; s < KSPLIT; ++s) {
        const uint at = (s * SUMS + i) * POSITIONS + pos;
        total += int(smem[at / 4][at % 4]);
      }
      acc[i] = total;
    }
  }

  // Neighbouring invocations store neighbouring rows of a token: coalesced.
  [[unroll]] for (uint j = 0; j < TOKENS; ++j) {
    const uint token = tok0 + j * TOKEN_GROUPS + g;
    if (token >= p.tokens) continue;
    const ivec2 mt = meta[token];
    [[unroll]] for (uint m = 0; m < ROWS; ++m) {
      const uint row = row0 + m * ROW_GROUPS + r;
      if ((m * TOKENS + j) % KSPLIT != slice || row >= p.rows) continue;
      const ivec2 info = row_info[p.row_base + row];
#if DOT
      const int wq = acc[m * TOKENS + j] - mt.y;
#else
      const int wq = acc[m * TOKENS + j] - 128 * info.x - mt.y;
#endif
      const float v = scaled_sum(wq, info.y, mt.x);
      const uint o = token * p.y_stride + p.y_offset + p.row_base + row;
      if (ACCUMULATE != 0) y[o] += v;
      else y[o] = v;
    }
  }
}

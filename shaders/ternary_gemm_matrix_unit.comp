#version 450
// Ternary GEMM for prefill on the GPU's matrix units (VK_NV_cooperative_matrix with int8 x int8 ->
// int32): the inputs, outputs and integer sums of ternary_gemm.comp (layouts: docs/architecture.md),
// so the results are its results, bit for bit (the sums are exact integers; the float epilogue is
// the same include).
//
// A = int8 activations (tokens x K), B = weight codes c = w + 1 in {0, 1, 2} (K x rows), both
// signed int8: sum w q = sum c q - sum_q, as the int8-dot GEMV. Tiling: a workgroup owns BM tokens x
// BN rows, held by SG_M x SG_N subgroups; subgroup (m, n) keeps FM x FN accumulator matrices of
// MM x NN for tokens (m * FM + i) * MM and rows (n * FN + j) * NN of the tile. K runs in blocks of
// KCHUNKS 64-element chunks: the block's global loads go to registers (issued before the previous
// block is multiplied, so their latency hides behind it), then to shared memory, weights decoded to
// one code a byte ((word >> 2i) & 0x03030303), each staged row one uvec4 longer than its data so that
// the rows a matrix load reads start in different banks. At the end the accumulators go through
// shared memory to an epilogue where neighbouring invocations write neighbouring rows of a token.
//
// Matrix sizes (MM, NN, KK) are the device's (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV),
// set as specialization constants; KK is 16, 32 or 64 and NN a multiple of 4. Loads and stores
// address shared memory in uvec4 units (SPV_NV_cooperative_matrix: strides count the pointer's
// element type, which may differ from the matrix's): element offsets and strides below count uvec4.
//
// Bindings: 0 weights uvec4 [rows][chunks] (one segment); 1 row_info {int code_sum, float scale};
// 2 activations uvec4 [tokens][chunks * 4]; 3 meta {float s, int sum_q} [tokens]; 4 y fp32.
// Dispatch: (ceil(rows / BN), ceil(tokens / BM), 1), one per segment. Workgroup: SG_M * SG_N full
// subgroups of SUBGROUP invocations (the pipeline requires that size where the device can vary it).
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_NV_cooperative_matrix : require
#extension GL_NV_integer_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int32 : require

layout(local_size_x_id = 0) in;                    // SUBGROUP * SG_M * SG_N
layout(constant_id = 1) const uint MM = 16;        // tokens of a matrix (A rows, C rows)
layout(constant_id = 2) const uint NN = 8;         // weight rows of a matrix (B and C columns)
layout(constant_id = 3) const uint KK = 32;        // K of one multiply
layout(constant_id = 4) const uint SG_M = 2;       // subgroups across the tile's tokens
layout(constant_id = 5) const uint SG_N = 2;       // ... and across its rows
layout(constant_id = 6) const uint ACCUMULATE = 0; // 0: y = result, 1: y += result
layout(constant_id = 7) const uint FM = 2;         // matrices a subgroup holds across tokens
layout(constant_id = 8) const uint FN = 8;         // ... and across rows
layout(constant_id = 9) const uint KCHUNKS = 2;    // 64-element chunks per K block
layout(constant_id = 10) const uint SUBGROUP = 32; // invocations per subgroup

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

const uint WG = SUBGROUP * SG_M * SG_N;
const uint BM = SG_M * FM * MM;  // tokens of the tile
const uint BN = SG_N * FN * NN;  // rows of the tile
const uint KB_VEC = KCHUNKS * 4; // uvec4 of int8 per staged row of a K block (64 bytes a chunk)
const uint STRIDE = KB_VEC + 1;  // staged row stride in uvec4
const uint X_BASE = BN * STRIDE; // the activation tile follows the weight tile
const uint TILES = X_BASE + BM * STRIDE;
const uint C_STRIDE = BN / 4 + 1;  // uvec4 per token row of the accumulator tile
const uint C_TILE = BM * C_STRIDE;
const uint W_LOADS = (BN * KCHUNKS + WG - 1) / WG;      // global weight uvec4 per invocation per block
const uint X_LOADS = (BM * KCHUNKS * 4 + WG - 1) / WG;  // global activation uvec4 per invocation per block

shared uvec4 smem[TILES > C_TILE ? TILES : C_TILE];

uvec4 w_reg[W_LOADS];
uvec4 x_reg[X_LOADS];

void load_block(uint kb, uint row0, uint tok0) {
  const uint inv = gl_LocalInvocationID.x;
  [[unroll]] for (uint l = 0; l < W_LOADS; ++l) {
    const uint i = inv + l * WG;
    const uint row = min(row0 + i / KCHUNKS, p.rows - 1);
    const uint chunk = kb * KCHUNKS + i % KCHUNKS;
    w_reg[l] = i < BN * KCHUNKS && chunk < p.chunks ? w[row * p.chunks + chunk] : uvec4(0);
  }
  [[unroll]] for (uint l = 0; l < X_LOADS; ++l) {
    const uint i = inv + l * WG;
    const uint token = min(tok0 + i / KB_VEC, p.tokens - 1);
    const uint word4 = kb * KB_VEC + i % KB_VEC;
    x_reg[l] = i < BM * KB_VEC && word4 < p.chunks * 4 ? xq[token * p.chunks * 4 + word4] : uvec4(0);
  }
}

void stage_block() {
  const uint inv = gl_LocalInvocationID.x;
  [[unroll]] for (uint l = 0; l < W_LOADS; ++l) {
    const uint i = inv + l * WG;
    if (i >= BN * KCHUNKS) continue;
    const uint base = (i / KCHUNKS) * STRIDE + (i % KCHUNKS) * 4;
    // Word j of a chunk holds elements 16j .. 16j+15; (word >> 2i) & 0x03030303 is 16j+4i .. +3.
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      const uint v = w_reg[l][j];
      smem[base + j] = uvec4(v, v >> 2, v >> 4, v >> 6) & 0x03030303u;
    }
  }
  [[unroll]] for (uint l = 0; l < X_LOADS; ++l) {
    const uint i = inv + l * WG;
    if (i >= BM * KB_VEC) continue;
    smem[X_BASE + (i / KB_VEC) * STRIDE + i % KB_VEC] = x_reg[l];
  }
}

#include "ternary_epilogue.glsl"

void main() {
  const uint sg = gl_SubgroupID;
  const uint sg_m = sg % SG_M, sg_n = sg / SG_M;
  const uint row0 = gl_WorkGroupID.x * BN, tok0 = gl_WorkGroupID.y * BM;
  const uint blocks = (p.chunks + KCHUNKS - 1) / KCHUNKS;

  icoopmatNV<32, gl_ScopeSubgroup, MM, NN> acc[FM * FN];
  [[unroll]] for (uint f = 0; f < FM * FN; ++f) acc[f] = icoopmatNV<32, gl_ScopeSubgroup, MM, NN>(0);

  load_block(0, row0, tok0);
  for (uint kb = 0; kb < blocks; ++kb) {
    barrier();  // the previous block's matrix loads are done
    stage_block();
    barrier();
    if (kb + 1 < blocks) load_block(kb + 1, row0, tok0);
    [[unroll]] for (uint k = 0; k < KB_VEC * 16; k += KK) {
      icoopmatNV<8, gl_ScopeSubgroup, MM, KK> a[FM];
      [[unroll]] for (uint i = 0; i < FM; ++i)
        coopMatLoadNV(a[i], smem, X_BASE + ((sg_m * FM + i) * MM) * STRIDE + k / 16, STRIDE, false);
      [[unroll]] for (uint j = 0; j < FN; ++j) {
        // B is K x NN with column n = staged weight row n: column-major.
        icoopmatNV<8, gl_ScopeSubgroup, KK, NN> b;
        coopMatLoadNV(b, smem, ((sg_n * FN + j) * NN) * STRIDE + k / 16, STRIDE, true);
        [[unroll]] for (uint i = 0; i < FM; ++i) acc[i * FN + j] = coopMatMulAddNV(a[i], b, acc[i * FN + j]);
      }
    }
  }

  barrier();  // every subgroup is done with the tiles
  [[unroll]] for (uint i = 0; i < FM; ++i)
    [[unroll]] for (uint j = 0; j < FN; ++j)
      coopMatStoreNV(acc[i * FN + j], smem, ((sg_m * FM + i) * MM) * C_STRIDE + ((sg_n * FN + j) * NN) / 4, C_STRIDE,
                     false);
  barrier();

  for (uint e = gl_LocalInvocationID.x; e < BM * BN; e += WG) {
    const uint t = e / BN, r = e % BN;
    const uint token = tok0 + t, row = row0 + r;
    if (token >= p.tokens || row >= p.rows) continue;
    const ivec2 mt = meta[token];
    const ivec2 info = row_info[p.row_base + row];
    const int wq = int(smem[t * C_STRIDE + r / 4][r % 4]) - mt.y;
    const float v = scaled_sum(wq, info.y, mt.x);
    const uint o = token * p.y_stride + p.y_offset + p.row_base + row;
    if (ACCUMULATE != 0) y[o] += v;
    else y[o] = v;
  }
}

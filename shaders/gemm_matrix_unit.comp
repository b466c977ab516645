#version 450
// GEMMs for prefill on the GPU's matrix units (VK_NV_cooperative_matrix), two build-time variants:
//
// - FP16 = 0 (ternary_gemm_matrix_unit): int8 x int8 -> int32. The inputs, outputs and integer sums
//   of ternary_gemm.comp (layouts: docs/architecture.md), so the results are its results, bit for
//   bit (the sums are exact integers; the float epilogue is the same include). A = int8 activations
//   (tokens x K), B = weight codes c = w + 1 in {0, 1, 2} (K x rows), both signed int8: sum w q =
//   sum c q - sum_q, as the int8-dot GEMV. Weights are decoded to one code a byte while staged
//   ((word >> 2i) & 0x03030303).
// - FP16 = 1 (fp16_gemm_matrix_unit): fp16 x fp16 -> fp32, the inputs and outputs of fp16_gemm.comp
//   (fp16 weight rows padded to 8 halves, fp32 activations with K % 4 == 0 read as vec4). The
//   activations are rounded to fp16 while staged (finite ones clamped to the fp16 range first), as FP16
//   inference does on matrix units, and the sums run in the units' order: the results are the
//   tiled GEMM's to within fp16 rounding of x plus fp32 rounding (matrix_unit_gemm.h states the
//   bound), not its bits. So only prompt chunks take this variant (fp16_matmul.h).
//
// Tiling: a workgroup owns BM tokens x BN rows, held by SG_M x SG_N subgroups; subgroup (m, n) keeps
// FM x FN accumulator matrices of MM x NN for tokens (m * FM + i) * MM and rows (n * FN + j) * NN of
// the tile. K runs in blocks of KCHUNKS 64-element chunks: the block's global loads go to registers
// (issued before the previous block is multiplied, so their latency hides behind it), then to shared
// memory, each staged row one uvec4 longer than its data so that the rows a matrix load reads start
// in different banks. At the end the accumulators go through shared memory to an epilogue where
// neighbouring invocations write neighbouring rows of a token.
//
// Matrix sizes (MM, NN, KK) are the device's (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV),
// set as specialization constants; KK divides 64 and is a whole uvec4 of elements, NN a multiple of
// 4. Loads and stores address shared memory in uvec4 units (SPV_NV_cooperative_matrix: strides count
// the pointer's element type, which may differ from the matrix's): element offsets and strides below
// count uvec4.
//
// Bindings, ternary: 0 weights uvec4 [rows][chunks] (one segment); 1 row_info {int code_sum, float
// scale}; 2 activations uvec4 [tokens][chunks * 4]; 3 meta {float s, int sum_q} [tokens]; 4 y fp32.
// fp16: 0 weights uvec4 [rows][chunks] (8 halves each); 1 x vec4 [tokens][cols / 4]; 2 y fp32.
// Dispatch: (ceil(rows / BN), ceil(tokens / BM), 1), one per segment. Workgroup: SG_M * SG_N full
// subgroups of SUBGROUP invocations (the pipeline requires that size where the device can vary it).
//
// EMULATED = 1 (the *_emulated variants): the same kernel with the matrix operations done by the
// shader cores, for devices without matrix units (TERNVK_EMULATE_MATRIX_UNITS; tests on lavapipe).
// Everything else (the staging, its offsets and strides, the K blocks, the epilogue) is the kernel
// the matrix units run; see emu_mul_add for what stands in for the matrix loads and multiply.
#ifndef EMULATED
#define EMULATED 0
#endif
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#if !EMULATED
#extension GL_KHR_memory_scope_semantics : require
#extension GL_NV_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_int32 : require
#if FP16
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#else
#extension GL_NV_integer_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#endif
#endif

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

#if FP16
layout(std430, set = 0, binding = 0) readonly buffer Weights { uvec4 w[]; };
layout(std430, set = 0, binding = 1) readonly buffer X { vec4 x[]; };
layout(std430, set = 0, binding = 2) buffer Out { float y[]; };
layout(push_constant) uniform Params {
  uint cols;      // K (a multiple of 4)
  uint chunks;    // uvec4 (8 halves) per weight row: round_up(K, 8) / 8
  uint rows;      // rows in this segment
  uint row_base;  // first row of this segment in the whole matrix
  uint tokens;
  uint y_stride;  // floats between the outputs of consecutive tokens
  uint y_offset;  // output column of the matrix's row 0
} p;
const uint ELEMS = 8;  // elements per staged uvec4
#if !EMULATED
#define A_MATRIX fcoopmatNV<16, gl_ScopeSubgroup, MM, KK>
#define B_MATRIX fcoopmatNV<16, gl_ScopeSubgroup, KK, NN>
#define C_MATRIX fcoopmatNV<32, gl_ScopeSubgroup, MM, NN>
#endif
#else
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
const uint ELEMS = 16;
#if !EMULATED
#define A_MATRIX icoopmatNV<8, gl_ScopeSubgroup, MM, KK>
#define B_MATRIX icoopmatNV<8, gl_ScopeSubgroup, KK, NN>
#define C_MATRIX icoopmatNV<32, gl_ScopeSubgroup, MM, NN>
#endif
#endif

const uint WG = SUBGROUP * SG_M * SG_N;
const uint BM = SG_M * FM * MM;  // tokens of the tile
const uint BN = SG_N * FN * NN;  // rows of the tile
const uint KB_VEC = KCHUNKS * 64 / ELEMS;  // staged uvec4 per row of a K block
const uint STRIDE = KB_VEC + 1;  // staged row stride in uvec4
const uint X_BASE = BN * STRIDE; // the activation tile follows the weight tile
const uint TILES = X_BASE + BM * STRIDE;
const uint C_STRIDE = BN / 4 + 1;  // uvec4 per token row of the accumulator tile
const uint C_TILE = BM * C_STRIDE;
#if FP16
const uint W_WORDS = BN * KB_VEC;  // global weight uvec4 per block: staged as they are
#else
const uint W_WORDS = BN * KCHUNKS; // global weight uvec4 per block: each decodes to 4 staged ones
#endif
const uint W_LOADS = (W_WORDS + WG - 1) / WG;           // global weight uvec4 per invocation per block
const uint X_LOADS = (BM * KB_VEC + WG - 1) / WG;       // staged activation uvec4 per invocation per block

shared uvec4 smem[TILES > C_TILE ? TILES : C_TILE];

uvec4 w_reg[W_LOADS];
#if FP16
vec4 x_reg[2 * X_LOADS];  // two fp32 vec4 become one staged uvec4 of halves
#else
uvec4 x_reg[X_LOADS];
#endif

void load_block(uint kb, uint row0, uint tok0) {
  const uint inv = gl_LocalInvocationID.x;
  [[unroll]] for (uint l = 0; l < W_LOADS; ++l) {
    const uint i = inv + l * WG;
#if FP16
    const uint row = min(row0 + i / KB_VEC, p.rows - 1);
    const uint word = kb * KB_VEC + i % KB_VEC;
    w_reg[l] = i < W_WORDS && word < p.chunks ? w[row * p.chunks + word] : uvec4(0);
#else
    const uint row = min(row0 + i / KCHUNKS, p.rows - 1);
    const uint chunk = kb * KCHUNKS + i % KCHUNKS;
    w_reg[l] = i < W_WORDS && chunk < p.chunks ? w[row * p.chunks + chunk] : uvec4(0);
#endif
  }
  [[unroll]] for (uint l = 0; l < X_LOADS; ++l) {
    const uint i = inv + l * WG;
    const uint token = min(tok0 + i / KB_VEC, p.tokens - 1);
    const uint word = kb * KB_VEC + i % KB_VEC;  // staged uvec4 of this token's row
#if FP16
    // Elements past K are 0 (the weights there are padding or past the row).
    const uint per_token = p.cols / 4;
    [[unroll]] for (uint h = 0; h < 2; ++h) {
      const uint v = 2 * word + h;
      x_reg[2 * l + h] = i < BM * KB_VEC && v < per_token ? x[token * per_token + v] : vec4(0.0);
    }
#else
    x_reg[l] = i < BM * KB_VEC && word < p.chunks * 4 ? xq[token * p.chunks * 4 + word] : uvec4(0);
#endif
  }
}

#if FP16
// fp32 -> fp16 bits. Finite values beyond the largest half are clamped to it, so that no finite
// activation becomes inf; inf and NaN pass as they are (found by their bits: no float controls are
// declared, so a driver may fold isnan away), so that bad activations still show in the output.
float to_half_range(float v) {
  return (floatBitsToUint(v) & 0x7f800000u) == 0x7f800000u ? v : clamp(v, -65504.0, 65504.0);
}
uint pack_halves(vec2 v) { return packHalf2x16(vec2(to_half_range(v.x), to_half_range(v.y))); }
#endif

void stage_block() {
  const uint inv = gl_LocalInvocationID.x;
  [[unroll]] for (uint l = 0; l < W_LOADS; ++l) {
    const uint i = inv + l * WG;
    if (i >= W_WORDS) continue;
#if FP16
    smem[(i / KB_VEC) * STRIDE + i % KB_VEC] = w_reg[l];
#else
    const uint base = (i / KCHUNKS) * STRIDE + (i % KCHUNKS) * 4;
    // Word j of a chunk holds elements 16j .. 16j+15; (word >> 2i) & 0x03030303 is 16j+4i .. +3.
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      const uint v = w_reg[l][j];
      smem[base + j] = uvec4(v, v >> 2, v >> 4, v >> 6) & 0x03030303u;
    }
#endif
  }
  [[unroll]] for (uint l = 0; l < X_LOADS; ++l) {
    const uint i = inv + l * WG;
    if (i >= BM * KB_VEC) continue;
#if FP16
    const vec4 a = x_reg[2 * l], b = x_reg[2 * l + 1];
    const uvec4 halves = uvec4(pack_halves(a.xy), pack_halves(a.zw), pack_halves(b.xy), pack_halves(b.zw));
#else
    const uvec4 halves = x_reg[l];  // int8, as they are
#endif
    smem[X_BASE + (i / KB_VEC) * STRIDE + i % KB_VEC] = halves;
  }
}

#if !FP16
#include "ternary_epilogue.glsl"
#endif

#if EMULATED
// A subgroup's accumulator matrices, each lane holding elements e = lane + q * SUBGROUP (row e / NN,
// column e % NN) of each. Where the units load A (row-major) and B (column-major) from the staged
// tiles, a lane reads its rows and columns at the same offsets and strides (in uvec4, elements in
// order within them) and adds its KK products in order: int32 sums are exact in any order, fp32 ones
// within the bound the units are held to (matrix_unit_gemm.h). lavapipe leaves a shader's loops after
// 65535 iterations in all, so the loops run over elements and the K of one multiply is unrolled:
// matrix_unit_gemm.cpp refuses an emulated GEMM whose loops would pass kShaderLoopBudget.
const uint EPL = (MM * NN + SUBGROUP - 1) / SUBGROUP;
#if FP16
float emu_acc[FM * FN * EPL];
uint emu_bits(float v) { return floatBitsToUint(v); }
// acc + the products of the two halves of a and b, in order.
float emu_dot_word(float acc, uint a, uint b) {
  const vec2 x = unpackHalf2x16(a), w = unpackHalf2x16(b);
  return acc + x.x * w.x + x.y * w.y;
}
#else
int emu_acc[FM * FN * EPL];
uint emu_bits(int v) { return uint(v); }
// acc + the products of the four signed bytes of a and b, in order.
int emu_dot_word(int acc, uint a, uint b) {
  [[unroll]] for (int i = 0; i < 4; ++i) acc += bitfieldExtract(int(a), 8 * i, 8) * bitfieldExtract(int(b), 8 * i, 8);
  return acc;
}
#endif

// C[f] += A B with A's row m at a_at + m * STRIDE and B's column n at b_at + n * STRIDE (uvec4).
void emu_mul_add(uint f, uint a_at, uint b_at) {
  [[dont_unroll]] for (uint q = 0; q < EPL; ++q) {
    const uint e = gl_SubgroupInvocationID + q * SUBGROUP;
    if (e >= MM * NN) continue;
    const uint a = a_at + (e / NN) * STRIDE, b = b_at + (e % NN) * STRIDE;
    [[unroll]] for (uint v = 0; v < KK / ELEMS; ++v) {
      const uvec4 av = smem[a + v], bv = smem[b + v];
      [[unroll]] for (uint c = 0; c < 4; ++c)
        emu_acc[f * EPL + q] = emu_dot_word(emu_acc[f * EPL + q], av[c], bv[c]);
    }
  }
}

// Stores C[f] row-major at `at`, rows C_STRIDE uvec4 apart, as coopMatStoreNV.
void emu_store(uint f, uint at) {
  [[dont_unroll]] for (uint q = 0; q < EPL; ++q) {
    const uint e = gl_SubgroupInvocationID + q * SUBGROUP;
    if (e >= MM * NN) continue;
    const uint m = e / NN, n = e % NN;
    smem[at + m * C_STRIDE + n / 4][n % 4] = emu_bits(emu_acc[f * EPL + q]);
  }
}
#endif

void main() {
  const uint sg = gl_SubgroupID;
  const uint sg_m = sg % SG_M, sg_n = sg / SG_M;
  const uint row0 = gl_WorkGroupID.x * BN, tok0 = gl_WorkGroupID.y * BM;
#if FP16
  const uint blocks = (p.chunks + KB_VEC - 1) / KB_VEC;
#else
  const uint blocks = (p.chunks + KCHUNKS - 1) / KCHUNKS;
#endif

#if EMULATED
  [[dont_unroll]] for (uint f = 0; f < FM * FN * EPL; ++f) emu_acc[f] = 0;
#else
  C_MATRIX acc[FM * FN];
  [[unroll]] for (uint f = 0; f < FM * FN; ++f) acc[f] = C_MATRIX(0);
#endif

  load_block(0, row0, tok0);
  for (uint kb = 0; kb < blocks; ++kb) {
    barrier();  // the previous block's matrix loads are done
    stage_block();
    barrier();
    if (kb + 1 < blocks) load_block(kb + 1, row0, tok0);
#if EMULATED
    // Loops, not unrolled: one copy of the multiply's code.
    [[dont_unroll]] for (uint k = 0; k < KB_VEC * ELEMS; k += KK)
      [[dont_unroll]] for (uint f = 0; f < FM * FN; ++f)
        emu_mul_add(f, X_BASE + ((sg_m * FM + f / FN) * MM) * STRIDE + k / ELEMS,
                    ((sg_n * FN + f % FN) * NN) * STRIDE + k / ELEMS);
#else
    [[unroll]] for (uint k = 0; k < KB_VEC * ELEMS; k += KK) {
      A_MATRIX a[FM];
      [[unroll]] for (uint i = 0; i < FM; ++i)
        coopMatLoadNV(a[i], smem, X_BASE + ((sg_m * FM + i) * MM) * STRIDE + k / ELEMS, STRIDE, false);
      [[unroll]] for (uint j = 0; j < FN; ++j) {
        // B is K x NN with column n = staged weight row n: column-major.
        B_MATRIX b;
        coopMatLoadNV(b, smem, ((sg_n * FN + j) * NN) * STRIDE + k / ELEMS, STRIDE, true);
        [[unroll]] for (uint i = 0; i < FM; ++i) acc[i * FN + j] = coopMatMulAddNV(a[i], b, acc[i * FN + j]);
      }
    }
#endif
  }

  barrier();  // every subgroup is done with the tiles
  [[unroll]] for (uint i = 0; i < FM; ++i)
    [[unroll]] for (uint j = 0; j < FN; ++j) {
      const uint at = ((sg_m * FM + i) * MM) * C_STRIDE + ((sg_n * FN + j) * NN) / 4;
#if EMULATED
      emu_store(i * FN + j, at);
#else
      coopMatStoreNV(acc[i * FN + j], smem, at, C_STRIDE, false);
#endif
    }
  barrier();

  for (uint e = gl_LocalInvocationID.x; e < BM * BN; e += WG) {
    const uint t = e / BN, r = e % BN;
    const uint token = tok0 + t, row = row0 + r;
    if (token >= p.tokens || row >= p.rows) continue;
#if FP16
    const float v = uintBitsToFloat(smem[t * C_STRIDE + r / 4][r % 4]);
#else
    const ivec2 mt = meta[token];
    const ivec2 info = row_info[p.row_base + row];
    const int wq = int(smem[t * C_STRIDE + r / 4][r % 4]) - mt.y;
    const float v = scaled_sum(wq, info.y, mt.x);
#endif
    const uint o = token * p.y_stride + p.y_offset + p.row_base + row;
    if (ACCUMULATE != 0) y[o] += v;
    else y[o] = v;
  }
}

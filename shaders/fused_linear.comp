#version 450
// A linear layer of the GPU decode plan, with its RMSNorm in front and its consumer behind, in one
// dispatch:  y = EPILOGUE( W · n(x) ),  n(x) = x * inversesqrt(mean(x^2) + eps) * norm_weight.
//
// Prologue: every workgroup normalizes its tokens' rows of x itself (K <= a few thousand floats: a
// cheap L2 read on a GPU) into shared memory; for ternary weights it also quantizes them to int8
// exactly as rmsnorm_quant.comp does (s = max(max|v|, 1e-5) / 127, q = clamp(roundEven(v / s)),
// sum q kept for the offset codes). No separate norm dispatch, no int8 round trip through memory.
// Main loop: as ternary_matmul.comp / fp16_matmul.comp / int8_matmul.comp (LANES lanes split a row's
// K, a lane group owns ROWS rows, one 16-byte weight load per lane and row per chunk), with the
// activations read from shared memory.
// Epilogue (spec constant EPILOGUE):
//   0 store          y[t, n] = v
//   1 accumulate     y[t, n] += v                      (the residual add of o and down)
//   2, 3 gated       y[t, i] = act(v[i]) * v[F + i]    (gate|up: act = relu^2 (2) or SiLU (3) as
//                                                       gated_activation.comp computes it)
//   4 rope + KV      (variant ROPE_KV) q|k|v rows: q and k rotated as rope.comp does (same include),
//                    all written to y, and k, v stored to the fp16 KV cache at each token's position
//                    and slot (layout of kv_cache.h)
// Paired epilogues (2-4) give each lane group ROWS / 2 pairs of rows: gated (i, F + i); RoPE NeoX
// (i, i + HD/2) of one head; RoPE adjacent pairs (2i, 2i + 1). The matrix must be one segment.
//
// Build-time variant ATTEND (with ROPE_KV, one-token steps): the decode attention folded into the
// qkv dispatch. Each workgroup counts the q|k|v pairs it stored toward their kv head (one arrival
// counter each); the workgroup that completes a kv head's R q heads, k and v runs that head's
// attention over the whole live context (attention_split.glsl, one split: the bits of
// attention_flash_decode wherever that uses one split) and resets the counter. One dispatch fewer a
// layer; meant for short contexts, where one workgroup per kv head suffices (the host picks it).
// Build-time variant ARGMAX (the head of a one-token step, float rows, store epilogue): the argmax
// of the row in the same dispatch. Each workgroup reduces its rows to their first maximum (the order
// of argmax.comp: larger value, then lower index; NaN never picked) and writes it as a partial; the
// last workgroup to arrive reduces the partials into the result and resets the counter. The order
// is total, so the pick is argmax.comp's, bit for bit.
// Build-time variant CHAIN (the plain, RoPE and attention variants of ternary and fp16 weights): the
// dispatch is recorded with no barrier before it, after another chained dispatch, and orders itself
// in the shader instead. Each workgroup requests its first weights (read-only, so any time will do),
// then waits until the dispatch before has counted all its workgroups done (chain[wait] reaches
// wait_count), then runs as usual, and at its end makes its stores visible and counts itself done
// (chain[signal] += 1). So a later matrix's workgroups start and load their weights while the one
// before is finishing, instead of after a full drain and a barrier. Everything a later dispatch may
// read or overwrite (x, y, the attention's output, the K/V rows) is accessed through coherent
// bindings: without a barrier an SM's L1 may still hold another layer's lines. Deadlock-free where a
// dispatch's workgroups all start before a later dispatch's (in-order launch, as on the GPUs it is
// for; not promised by Vulkan), so the wait is bounded: after chain_spin_limit polls it sets
// chain[0] (the host then redoes the pass with barriers) and goes on.
// Build-time variant WEIGHTS: 0 ternary, SWAR products; 1 ternary, OpSDot; 2 fp16; 3 int8 rows with
// a float scale each (the int8 head). Weight layouts: docs/architecture.md.
// Build-time variant NORM_ONLY: the prologue alone, its result written out: the ternary int8
// activations with {s, sum q} (QuantizedActivations, WEIGHTS 0) or the normalized fp32 rows (WEIGHTS 2),
// for the matmuls of steps too large to fuse. The same code as the fused prologue, so a token's
// activations have the same bits whichever path its step takes. Bindings: 2 x, 3 norm weight,
// 4 values uvec4 / normalized rows vec4, 5 (ternary) meta {float s, int sum q}. Dispatch: (1, tokens, 1)
// with TOKENS = 1.
// Bindings: 0 weights uvec4 [rows][chunks] (one segment); 1 (ternary) row_info {int code_sum, float
// scale} / (int8) float row_scale, of the whole matrix; (fp16: absent); 2 x fp32 [tokens][x_stride]
// (read as vec4: K % 4 == 0, x_stride % 4 == 0); 3 norm weight fp32 [K]; 4 y fp32.
// ROPE_KV adds: 5 positions uint [tokens]; 6 K cache, 7 V cache (uint words of fp16 pairs);
// 8 slots uint [tokens] (read only with SLOTS).
// ARGMAX adds: 5 partials uvec2 [workgroups], 6 arrival counter uint (0 before and after every
// dispatch), 7 result uvec2 (index, value bits: ops::ArgmaxResult).
// ATTEND adds: 9 y again (q|k|v read back, coherent), 10 K cache, 11 V cache (again, as 16-byte words),
// 12 attention output fp32, 13 arrival counters uint [n_kv_heads] (0 before and after every dispatch).
// Dispatch: (ceil(units / lane groups per workgroup), ceil(tokens / TOKENS), 1), units = rows / ROWS
// (plain) or pairs / (ROWS / 2) (paired).
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_GOOGLE_include_directive : require
#ifndef WEIGHTS
#define WEIGHTS 0
#endif
#ifndef ROPE_KV
#define ROPE_KV 0
#endif
#ifndef NORM_ONLY
#define NORM_ONLY 0
#endif
#ifndef ATTEND
#define ATTEND 0
#endif
#ifndef ARGMAX
#define ARGMAX 0
#endif
#ifndef CHAIN
#define CHAIN 0
#endif
#define TERNARY (WEIGHTS <= 1)
#if WEIGHTS == 1
#extension GL_EXT_spirv_intrinsics : require
// OpSDot (SPV_KHR_integer_dot_product), operand PackedVectorFormat4x8Bit = 0.
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot_4x8_packed(uint a, uint b, spirv_literal int packed_vector_format);
#endif

layout(local_size_x_id = 0) in;
#define SUBGROUP 1
#include "basic_reduce.glsl"
#include "rope_rotate.glsl"
#include "ternary_epilogue.glsl"
#include "lane_slot.glsl"
#include "arrival.glsl"

layout(constant_id = 1) const uint LANES = 8;      // lanes that split one row (power of 2)
layout(constant_id = 2) const uint ROWS = 2;       // rows per lane group (even for paired epilogues)
layout(constant_id = 3) const uint TOKENS = 1;     // tokens per workgroup
layout(constant_id = 4) const uint EPILOGUE = 0;
layout(constant_id = 5) const uint REDUCE = 0;     // 0: subgroupAdd over the workgroup's one subgroup, 1: shuffle-xor
layout(constant_id = 6) const uint X_UVEC4 = 160;  // shared uvec4 per token (>= activations of one row)
layout(constant_id = 7) const uint HD = 128;       // RoPE: head dim
layout(constant_id = 8) const bool NEOX = true;    // RoPE: NeoX pairs (i, i + HD/2), else (2i, 2i + 1)
layout(constant_id = 9) const bool SLOTS = false;  // RoPE: read each token's KV slot (else slot 0)
// Chunks per lane whose weights are loaded together, and the next such block is loaded while this one
// is multiplied (the first before the prologue): a lane keeps UNROLL * ROWS 16-byte loads in flight
// instead of waiting for each in turn, which is what bounds a small GEMV on a GPU.
layout(constant_id = 10) const uint UNROLL = 1;

#if !NORM_ONLY
layout(std430, set = 0, binding = 0) readonly buffer Weights { uvec4 w[]; };
#if TERNARY
layout(std430, set = 0, binding = 1) readonly buffer RowInfo { ivec2 row_info[]; };
#elif WEIGHTS == 3
layout(std430, set = 0, binding = 1) readonly buffer Scales { float row_scale[]; };
#endif
#endif
#if CHAIN
#define CHAINED coherent
#else
#define CHAINED
#endif
layout(std430, set = 0, binding = 2) CHAINED readonly buffer X { vec4 x4[]; };
layout(std430, set = 0, binding = 3) readonly buffer NormWeight { vec4 norm4[]; };
#if NORM_ONLY
layout(std430, set = 0, binding = 4) writeonly buffer Normed { uvec4 normed[]; };
#if TERNARY
layout(std430, set = 0, binding = 5) writeonly buffer Meta { ivec2 meta[]; };
#endif
#else
// ATTEND: q|k|v and the K/V rows stored coherent, so that the fence before the arrival makes them
// visible to the workgroup that attends (GLSL promises that for coherent stores only). CHAIN: also y
// (the residual stream is read back by later links, with no barrier between).
#if ATTEND || CHAIN
#define STORED coherent
#else
#define STORED
#endif
layout(std430, set = 0, binding = 4) STORED buffer Out { float y[]; };
#endif
#if ROPE_KV
layout(std430, set = 0, binding = 5) readonly buffer Pos { uint positions[]; };
layout(std430, set = 0, binding = 6) STORED writeonly buffer KCache { uint kcache[]; };
layout(std430, set = 0, binding = 7) STORED writeonly buffer VCache { uint vcache[]; };
layout(std430, set = 0, binding = 8) readonly buffer Slots { uint seq_slots[]; };
#endif
#if ARGMAX
layout(std430, set = 0, binding = 5) coherent buffer Partials { uvec2 partials[]; };
layout(std430, set = 0, binding = 6) coherent buffer ArgmaxCount { uint argmax_arrivals[]; };
layout(std430, set = 0, binding = 7) writeonly buffer ArgmaxOut { uvec2 argmax_result[]; };
shared uint argmax_arrival;
#endif
#if ATTEND
layout(std430, set = 0, binding = 9) coherent readonly buffer QkvDone { vec4 qkv_done4[]; };
layout(std430, set = 0, binding = 10) coherent readonly buffer KDone { uvec4 k_done[]; };
layout(std430, set = 0, binding = 11) coherent readonly buffer VDone { uvec4 v_done[]; };
layout(std430, set = 0, binding = 12) CHAINED writeonly buffer AttnOut { float attn_out[]; };
layout(std430, set = 0, binding = 13) coherent buffer Arrivals { uint arrivals[]; };
#endif
layout(push_constant) uniform Params {
  uint cols;       // K (a multiple of 4)
  uint chunks;     // 16-byte weight words per row: Kp/64 (ternary), round_up(K, 8)/8 (fp16), round_up(K, 16)/16 (int8)
  uint rows;       // rows in this segment
  uint row_base;   // first row of this segment in the whole matrix
  uint tokens;
  uint x_stride4;  // vec4 between tokens' rows of x
  uint y_stride;   // floats between tokens' rows of y
  uint y_offset;   // column of y for the matrix's row 0 (plain) / output 0 (gated)
  float eps;
  uint pairs;      // paired epilogues: row pairs of the whole matrix
  uint pair_offset;  // gated: the first up row (F)
  uint n_heads;    // RoPE: q heads, kv heads, cache rows per slot, slots
  uint n_kv_heads;
  uint capacity;
  uint sequences;
  float theta_scale;
  float scale_log2e;  // ATTEND: the attention's q scale times log2(e)
  uint chain_wait;         // CHAIN: the counter of the dispatch before, and the count to wait for (0: none)
  uint chain_wait_count;
  uint chain_signal;       // CHAIN: this dispatch's counter
  uint chain_spin_limit;   // CHAIN: polls before the wait gives up
} p;
#if CHAIN
// [0] the timed-out flag, then one done count per chained dispatch (0 before the pass).
layout(std430, set = 0, binding = 14) coherent buffer Chain { uint chain[]; };
// Waits (bounded) until the link before has counted p.chain_wait_count workgroups done. Reached by
// the whole workgroup.
void wait_for_previous_link() {
  if (p.chain_wait_count == 0) return;  // uniform: the first of a chain, ordered by a barrier
  if (gl_LocalInvocationID.x == 0) {
    uint polls = 0;
    while (LOAD_ARRIVALS(chain[p.chain_wait]) < p.chain_wait_count) {
      if (++polls >= p.chain_spin_limit) {
        atomicOr(chain[0], 1u);
        break;
      }
    }
  }
  ARRIVAL_FENCE();
}
// Counts this workgroup done once its stores are visible. Reached by the whole workgroup, last.
void count_link_done() {
  ARRIVAL_FENCE();
  if (gl_LocalInvocationID.x == 0) ARRIVE(chain[p.chain_signal], 1u);
}
#endif

const uint WG = gl_WorkGroupSize.x;
const uint XB = 8;  // the prologue's loads of x (and the norm weight) per lane in flight
const uint GROUPS = WG / LANES;
const bool PAIRED = EPILOGUE >= 2;
const uint HALF = ROWS / 2;
const uint OWNED = (ROWS + LANES - 1) / LANES;  // plain epilogue: rows each lane stores

#if ATTEND
// The attention's constants (attention_flash_decode's, from the same plan).
layout(constant_id = 11) const uint ATT_R = 4;      // q heads per kv head
layout(constant_id = 12) const uint ATT_KB = 4;     // keys per key group and step
layout(constant_id = 13) const uint ATT_LPK = 16;   // lanes per key
layout(constant_id = 14) const uint ATT_MAXSG = 4;  // subgroups per workgroup at the smallest subgroup size
#define ATT_WG WG
#define ATT_HD HD
vec4 att_q4(uint o) { return qkv_done4[o / 4]; }
uvec4 att_k(uint i) { return k_done[i]; }
uvec4 att_v(uint i) { return v_done[i]; }
#include "attention_split.glsl"
const uint MAX_DONE = 16;  // kv heads one workgroup may complete (the host checks its split)
shared uint done_heads[MAX_DONE];
shared uint n_done_heads;
#endif

shared uvec4 xs[TOKENS * X_UVEC4];  // the normalized (ternary: int8) activations of the tokens
float tok_s[TOKENS];   // ternary: each token's scale s
int tok_sum_q[TOKENS];  // ternary: each token's sum of q


// The sum over a lane group: subgroupAdd where the workgroup is one subgroup (REDUCE = 0, the CPU
// shapes, as the separate GEMVs reduce there); else lanes that share a subgroup reduce by shuffle-xor,
// and a group wider than the subgroup (allowed for any device, e.g. 32 lanes on an 8-wide one) then
// adds its subgroup-sized pieces through shared memory, in piece order. Reached by the whole workgroup
// (it may hold barriers).
#define REDUCE_LANES(T, v, SHARED, STORE_AS)                                                       \
  if (REDUCE == 0) return subgroupAdd(v);                                                          \
  [[unroll]] for (uint m = LANES / 2; m > 0; m >>= 1)                                              \
    if (m < gl_SubgroupSize) v += subgroupShuffleXor(v, m);                                        \
  if (LANES <= gl_SubgroupSize) return v;                                                          \
  const uint slot = lane_slot();                                                                   \
  const uint group_base = slot - slot % LANES;                                                     \
  SHARED[slot] = STORE_AS(v);                                                                      \
  barrier();                                                                                       \
  T total = T(SHARED[group_base]);                                                                 \
  for (uint piece = gl_SubgroupSize; piece < LANES; piece += gl_SubgroupSize)                      \
    total += T(SHARED[group_base + piece]);                                                        \
  barrier();                                                                                       \
  return total;
float reduce_lanes_f(float v) { REDUCE_LANES(float, v, red_v, float) }
int reduce_lanes_i(int v) { REDUCE_LANES(int, v, red_i, uint) }

// act(g) * u in the order of gated_activation.comp.
float gated(float g, float u) {
  float a;
  if (EPILOGUE == 2) {
    const float r = max(g, 0.0);
    a = r * r;
  } else {
    a = g / (1.0 + exp(-g));
  }
  return a * u;
}

// Row (of the whole matrix) of slot r of lane group `unit`.
uint row_of(uint unit, uint r) {
  if (!PAIRED) return unit * ROWS + r;
  const uint pair = min(unit * HALF + r % HALF, p.pairs - 1);
  const bool second = r >= HALF;
  if (EPILOGUE != 4) return second ? p.pair_offset + pair : pair;
  if (!NEOX) return 2 * pair + (second ? 1 : 0);
  const uint first = (pair / (HD / 2)) * HD + pair % (HD / 2);
  return second ? first + HD / 2 : first;
}

// The prologue: n(x) of tokens t0 .. t0 + TOKENS - 1 into shared memory (ternary: int8, with s and
// sum q). Reached by the whole workgroup (it holds barriers); ends with one.
//
// Its reductions wait on as few barriers as a GPU allows (on a GPU every barrier of a 4-subgroup
// workgroup is a round of waiting on the slowest subgroup, and the prologue is most of a decode
// GEMV's critical path): each subgroup puts its partial sums in slots of basic_reduce.glsl's red_v /
// red_i that no other use rewrites while they may be read, so one barrier serves the sum of squares
// and max |x * weight| together, and the int8 sum is read after the closing barrier instead of
// behind two of its own. The subgroups' partials are added in subgroup order, as wg_sum does, so
// the bits are those of wg_sum / wg_max / wg_sum_int. Slots: statistics of the current token in
// [0, nsg) (ss in red_v, max in red_i); the int8 sum of token t in red_v[(t + 1) * nsg + sg] (red_v
// is not used again by ternary variants; red_i is, by reduce_lanes_i, but only after the closing
// barrier, when every max has been read). Needs (TOKENS + 1) * nsg <= WG, else (subgroups of a few
// lanes) the int8 sum takes wg_sum_int.
void normalize_tokens(uint t0) {
  const uint lid = gl_LocalInvocationID.x;
  const uint K4 = p.cols / 4;
  const uint nsg = gl_NumSubgroups, sg = gl_SubgroupID;
  const bool one_subgroup = nsg == 1;  // uniform: no shared memory, no barrier for the sums
  const bool slots_apart = (TOKENS + 1) * nsg <= WG;
  [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
    if (t > 0 && !one_subgroup) barrier();  // the previous token's statistics slots have been read
    const uint xb = min(t0 + t, p.tokens - 1) * p.x_stride4;
    // One pass for the sum of squares and max |x * weight| (rmsnorm_quant.comp's reasoning), its
    // loads XB at a time per lane, all requested before any is used: a GPU compiler need not unroll
    // a loop with a run-time trip count, and each iteration would then wait a whole L2 round trip
    // (2B4T's down: 14 of them a lane). Each lane still adds its elements in ascending order.
    float ss = 0.0, amax = 0.0;
    for (uint i0 = lid; i0 < K4; i0 += XB * WG) {
      vec4 xv[XB];
#if TERNARY
      vec4 nv[XB];
#endif
      [[unroll]] for (uint u = 0; u < XB; ++u) {
        const uint i = min(i0 + u * WG, K4 - 1);  // past the row: loaded, never used
        xv[u] = x4[xb + i];
#if TERNARY
        nv[u] = norm4[i];
#endif
      }
      [[unroll]] for (uint u = 0; u < XB; ++u) {
        if (i0 + u * WG >= K4) break;
        const vec4 v = xv[u];
        ss += v.x * v.x;
        ss += v.y * v.y;
        ss += v.z * v.z;
        ss += v.w * v.w;
#if TERNARY
        const vec4 a = abs(v * nv[u]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
#endif
      }
    }
    // A shuffle-xor butterfly, not subgroupAdd: its order is fixed and every lane ends with the same
    // bits, so this prologue gives the same sum in every pipeline that runs it (the fused layers, the
    // prologue alone) on any implementation. subgroupAdd's order is the driver's: lavapipe's at 16
    // lanes differed between pipelines.
    for (uint m = gl_SubgroupSize / 2; m > 0; m >>= 1) ss += subgroupShuffleXor(ss, m);
#if TERNARY
    amax = subgroupMax(amax);
#endif
    if (!one_subgroup) {
      if (subgroupElect()) {
        red_v[sg] = ss;
        red_i[sg] = floatBitsToUint(amax);
      }
      barrier();
      ss = 0.0;
      for (uint g = 0; g < nsg; ++g) ss += red_v[g];
#if TERNARY
      amax = uintBitsToFloat(red_i[0]);
      for (uint g = 1; g < nsg; ++g) amax = max(amax, uintBitsToFloat(red_i[g]));
#endif
    }
    const float inv = inversesqrt(ss / float(p.cols) + p.eps);
#if TERNARY
    const float s = max(amax * inv, 1e-5) / 127.0;
    int sum_q = 0;
    for (uint g = lid; g < p.chunks * 4; g += WG) {  // 16 int8 per uvec4; zero past K
      uvec4 word = uvec4(0);
      [[unroll]] for (uint j = 0; j < 4; ++j) {
        const uint i = 4 * g + j;
        if (i < K4) {
          const vec4 v = x4[xb + i] * inv * norm4[i];
          const ivec4 qv = ivec4(clamp(roundEven(v / s), -128.0, 127.0));
          sum_q += (qv.x + qv.y) + (qv.z + qv.w);
          const uvec4 b = uvec4(qv) & 0xffu;
          word[j] = b.x | (b.y << 8) | (b.z << 16) | (b.w << 24);
        }
      }
      xs[t * X_UVEC4 + g] = word;
    }
    tok_s[t] = s;
    if (one_subgroup) {
      tok_sum_q[t] = subgroupAdd(sum_q);
    } else if (slots_apart) {
      sum_q = subgroupAdd(sum_q);
      if (subgroupElect()) red_v[(t + 1) * nsg + sg] = float(sum_q);  // exact: |sum q| <= 128 K <= 2^24
    } else {
      barrier();  // every max has been read before wg_sum_int writes red_i
      tok_sum_q[t] = wg_sum_int(sum_q);
    }
#else
    const uint per_token = WEIGHTS == 2 ? p.chunks * 2 : p.chunks * 4;  // vec4 of activations
    for (uint i = lid; i < per_token; i += WG)
      xs[t * X_UVEC4 + i] = floatBitsToUint(i < K4 ? x4[xb + i] * inv * norm4[i] : vec4(0.0));
    tok_s[t] = 1.0;
    tok_sum_q[t] = 0;
#endif
  }
  barrier();
#if TERNARY
  if (!one_subgroup && slots_apart)
    [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
      int sum_q = 0;
      for (uint g = 0; g < nsg; ++g) sum_q += int(red_v[(t + 1) * nsg + g]);
      tok_sum_q[t] = sum_q;
    }
#endif
}

#if NORM_ONLY
// The prologue's result for token gl_WorkGroupID.y (TOKENS = 1), written out.
void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint token = gl_WorkGroupID.y;
  normalize_tokens(token);
  const uint per_token = WEIGHTS == 2 ? p.cols / 4 : p.chunks * 4;  // fp32 rows of K; int8 rows of Kp
  for (uint i = lid; i < per_token; i += WG) normed[token * per_token + i] = xs[i];
#if TERNARY
  if (lid == 0) meta[token] = ivec2(floatBitsToInt(tok_s[0]), tok_sum_q[0]);
#endif
}
#else
void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint lane = lane_slot() % LANES;
  const uint unit = gl_WorkGroupID.x * GROUPS + lane_slot() / LANES;
  const uint t0 = gl_WorkGroupID.y * TOKENS;
  const uint chunks = p.chunks;
  const uint STEP = LANES * UNROLL;

  // The first block of this lane's weights is requested before the prologue: its latency overlaps
  // the norm. Chunks past the row are clamped (loaded, never used).
  uint wbase[ROWS];
  [[unroll]] for (uint r = 0; r < ROWS; ++r) wbase[r] = min(row_of(unit, r), p.rows - 1) * chunks;
  uvec4 cur[UNROLL * ROWS];
  [[unroll]] for (uint u = 0; u < UNROLL; ++u)
    [[unroll]] for (uint r = 0; r < ROWS; ++r) cur[u * ROWS + r] = w[wbase[r] + min(lane + u * LANES, chunks - 1)];

#if CHAIN
  wait_for_previous_link();  // the weights above are requested; what the link before wrote is not yet read
#endif
  // ---- Prologue ----
  normalize_tokens(t0);

  // ---- Main loop: each lane takes chunks lane, lane + LANES, ... of its rows, UNROLL at a time,
  // the next block's weights requested before this block is multiplied. ----
#if TERNARY
  int acc[ROWS * TOKENS];
  [[unroll]] for (uint i = 0; i < ROWS * TOKENS; ++i) acc[i] = 0;
#else
  float acc[ROWS * TOKENS];
  [[unroll]] for (uint i = 0; i < ROWS * TOKENS; ++i) acc[i] = 0.0;
#endif

  for (uint c0 = lane; c0 < chunks; c0 += STEP) {
    uvec4 next[UNROLL * ROWS];
    [[unroll]] for (uint i = 0; i < UNROLL * ROWS; ++i) next[i] = uvec4(0);
    if (c0 + STEP < chunks)
      [[unroll]] for (uint u = 0; u < UNROLL; ++u)
        [[unroll]] for (uint r = 0; r < ROWS; ++r)
          next[u * ROWS + r] = w[wbase[r] + min(c0 + STEP + u * LANES, chunks - 1)];
    [[unroll]] for (uint u = 0; u < UNROLL; ++u) {
    const uint c = c0 + u * LANES;
    if (c >= chunks) break;
#if WEIGHTS == 1
    uvec4 a[TOKENS * 4];
    [[unroll]] for (uint t = 0; t < TOKENS; ++t)
      [[unroll]] for (uint j = 0; j < 4; ++j) a[t * 4 + j] = xs[t * X_UVEC4 + c * 4 + j];
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uvec4 wv = cur[u * ROWS + r];
      [[unroll]] for (uint j = 0; j < 4; ++j)
        [[unroll]] for (uint i = 0; i < 4; ++i) {
          const uint codes = (wv[j] >> (2 * i)) & 0x03030303u;
          [[unroll]] for (uint t = 0; t < TOKENS; ++t) acc[r * TOKENS + t] += sdot_4x8_packed(codes, a[t * 4 + j][i], 0);
        }
    }
#elif WEIGHTS == 0
    // 16-bit SWAR products (ternary_matmul.comp explains the bounds).
    uint pe[TOKENS * 16], po[TOKENS * 16];
    [[unroll]] for (uint t = 0; t < TOKENS; ++t)
      [[unroll]] for (uint j = 0; j < 4; ++j) {
        const uvec4 u = xs[t * X_UVEC4 + c * 4 + j] ^ 0x80808080u;
        [[unroll]] for (uint i = 0; i < 4; ++i) {
          pe[t * 16 + j * 4 + i] = ((u[i] << 16) & 0x00ff0000u) | ((u[i] >> 16) & 0xffu);
          po[t * 16 + j * 4 + i] = ((u[i] << 8) & 0x00ff0000u) | (u[i] >> 24);
        }
      }
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uvec4 wv = cur[u * ROWS + r];
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
#elif WEIGHTS == 2
    vec4 xa[TOKENS], xb[TOKENS];
    [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
      xa[t] = uintBitsToFloat(xs[t * X_UVEC4 + 2 * c]);
      xb[t] = uintBitsToFloat(xs[t * X_UVEC4 + 2 * c + 1]);
    }
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uvec4 wv = cur[u * ROWS + r];
      const vec4 wa = vec4(unpackHalf2x16(wv.x), unpackHalf2x16(wv.y));
      const vec4 wb = vec4(unpackHalf2x16(wv.z), unpackHalf2x16(wv.w));
      [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
        float s = acc[r * TOKENS + t];
        s = fma(wa.x, xa[t].x, s);
        s = fma(wa.y, xa[t].y, s);
        s = fma(wa.z, xa[t].z, s);
        s = fma(wa.w, xa[t].w, s);
        s = fma(wb.x, xb[t].x, s);
        s = fma(wb.y, xb[t].y, s);
        s = fma(wb.z, xb[t].z, s);
        s = fma(wb.w, xb[t].w, s);
        acc[r * TOKENS + t] = s;
      }
    }
#else
    vec4 xv[TOKENS * 4];
    [[unroll]] for (uint t = 0; t < TOKENS; ++t)
      [[unroll]] for (uint j = 0; j < 4; ++j) xv[t * 4 + j] = uintBitsToFloat(xs[t * X_UVEC4 + 4 * c + j]);
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uvec4 wv = cur[u * ROWS + r];
      [[unroll]] for (uint j = 0; j < 4; ++j) {
        const int v = int(wv[j]);
        const vec4 wf = vec4(float((v << 24) >> 24), float((v << 16) >> 24), float((v << 8) >> 24), float(v >> 24));
        [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
          const vec4 xt = xv[t * 4 + j];
          float s = acc[r * TOKENS + t];
          s = fma(wf.x, xt.x, s);
          s = fma(wf.y, xt.y, s);
          s = fma(wf.z, xt.z, s);
          s = fma(wf.w, xt.w, s);
          acc[r * TOKENS + t] = s;
        }
      }
    }
#endif
    }
    [[unroll]] for (uint i = 0; i < UNROLL * ROWS; ++i) cur[i] = next[i];
  }

  // ---- Epilogue ----
#if ARGMAX
  float best_v = uintBitsToFloat(0xff800000u);  // -inf
  uint best_i = NONE;
#endif
  [[unroll]] for (uint t = 0; t < TOKENS; ++t) {
    const uint token = t0 + t;
    // Every lane of the group gets every row's total; v[r] is the row's output value.
    float v[ROWS];
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const uint row = min(row_of(unit, r), p.rows - 1);
#if TERNARY
      const int total = reduce_lanes_i(acc[r * TOKENS + t]);
      const ivec2 info = row_info[p.row_base + row];
#if WEIGHTS == 1
      const int wq = total - tok_sum_q[t];
#else
      const int wq = total - 128 * info.x - tok_sum_q[t];
#endif
      v[r] = scaled_sum(wq, info.y, floatBitsToInt(tok_s[t]));
#elif WEIGHTS == 3
      v[r] = reduce_lanes_f(acc[r * TOKENS + t]) * row_scale[p.row_base + row];
#else
      v[r] = reduce_lanes_f(acc[r * TOKENS + t]);
#endif
    }
#if ARGMAX
    if (t == 0)  // one token: its rows' first maximum (every lane of a group holds the group's values)
      [[unroll]] for (uint r = 0; r < ROWS; ++r) {
        const uint row = unit * ROWS + r;
        if (row < p.rows && !is_nan_bits(v[r]) && pair_before(v[r], p.row_base + row, best_v, best_i)) {
          best_v = v[r];
          best_i = p.row_base + row;
        }
      }
#endif
    if (token >= p.tokens) continue;
    const uint yrow = token * p.y_stride + p.y_offset;

    if (!PAIRED) {
      // Row r is stored by lane r % LANES (plain vector code on every lane; see ternary_matmul.comp).
      [[unroll]] for (uint i = 0; i < OWNED; ++i) {
        float mine = 0.0;
        [[unroll]] for (uint r = 0; r < ROWS; ++r)
          if (r / LANES == i && r % LANES == lane) mine = v[r];
        const uint r = i * LANES + lane;
        const uint row = unit * ROWS + r;
        if (r >= ROWS || row >= p.rows) continue;
        const uint o = yrow + p.row_base + row;
        if (EPILOGUE == 1) y[o] += mine;
        else y[o] = mine;
      }
    } else if (EPILOGUE != 4) {
      // Gated: pair h (gate row, up row) is stored by lane h % LANES.
      [[unroll]] for (uint h = 0; h < HALF; ++h) {
        const uint pair = unit * HALF + h;
        if (h % LANES == lane && pair < p.pairs) y[yrow + pair] = gated(v[h], v[HALF + h]);
      }
    }
#if ROPE_KV
    else {
      const uint H = p.n_heads, KVH = p.n_kv_heads;
      const uint pos = positions[token];
      const uint seq = SLOTS ? seq_slots[token] : 0;
      const bool store = pos < p.capacity && seq < p.sequences;
      float ra[HALF], rb[HALF];
      [[unroll]] for (uint h = 0; h < HALF; ++h) {
        const uint a_row = row_of(unit, h);
        vec2 ab = vec2(v[h], v[HALF + h]);
        if (a_row < (H + KVH) * HD) {  // q and k heads rotate; v heads do not
          const uint freq = NEOX ? a_row % HD : (a_row % HD) / 2;
          ab = rope_rotate(ab, float(pos), freq, p.theta_scale);
        }
        ra[h] = ab.x;
        rb[h] = ab.y;
        const uint pair = unit * HALF + h;
        if (h % LANES == lane && pair < p.pairs) {
          y[yrow + a_row] = ab.x;
          y[yrow + row_of(unit, HALF + h)] = ab.y;
        }
      }
      // K/V words of two adjacent elements: NeoX pairs h, h + 1 hold elements i, i + 1 on both sides
      // (HALF even, units start at even pairs); adjacent pairs are one word each.
      const uint WORDS = NEOX ? HALF / 2 : HALF;
      [[unroll]] for (uint u = 0; u < WORDS; ++u) {
        const uint h = NEOX ? 2 * u : u;
        const uint pair = unit * HALF + h;
        const uint a_row = row_of(unit, h);
        if (u % LANES != lane || pair >= p.pairs || !store || a_row < H * HD) continue;
        const bool is_k = a_row < (H + KVH) * HD;
        const uint in_kv = a_row - (is_k ? H * HD : (H + KVH) * HD);  // element of the k (v) heads
        const uint head = in_kv / HD, e = in_kv % HD;
        const uint base = ((seq * p.capacity + pos) * KVH + head) * (HD / 2);
        if (NEOX) {
          const uint wa = base + e / 2, wb = base + (e + HD / 2) / 2;
          const uint pa = packHalf2x16(vec2(ra[h], ra[h + 1])), pb = packHalf2x16(vec2(rb[h], rb[h + 1]));
          if (is_k) {
            kcache[wa] = pa;
            kcache[wb] = pb;
          } else {
            vcache[wa] = pa;
            vcache[wb] = pb;
          }
        } else {
          const uint packed = packHalf2x16(vec2(ra[h], rb[h]));
          if (is_k) kcache[base + e / 2] = packed;
          else vcache[base + e / 2] = packed;
        }
      }
    }
#endif
  }
#if ARGMAX
  // ---- The row's argmax: this workgroup's first maximum, then the last workgroup merges ----
  barrier();  // shared reduction slots free
  wg_best(best_v, best_i);
  if (lid == 0) partials[gl_WorkGroupID.x] = uvec2(best_i, floatBitsToUint(best_v));
  ARRIVAL_FENCE();
  if (lid == 0) argmax_arrival = ARRIVE(argmax_arrivals[0], 1u);
  ARRIVAL_FENCE();
  const uint workgroups = gl_NumWorkGroups.x;
  if (argmax_arrival == workgroups - 1) {  // uniform
    if (lid == 0) atomicExchange(argmax_arrivals[0], 0u);  // for the next dispatch (ordered by its barrier)
    float bv = uintBitsToFloat(0xff800000u);
    uint bi = NONE;
    for (uint j = lid; j < workgroups; j += WG) {
      const uvec2 e = partials[j];
      if (pair_before(uintBitsToFloat(e.y), e.x, bv, bi)) {
        bv = uintBitsToFloat(e.y);
        bi = e.x;
      }
    }
    wg_best(bv, bi);
    if (lid == 0) argmax_result[0] = uvec2(bi, floatBitsToUint(bv));
  }
#endif
#if ATTEND
  // ---- The attention of each kv head this workgroup completed (token 0: one-token steps) ----
  // Its pairs [p0, p1) count toward their heads' kv heads: q head h toward h / R, k and v head g
  // toward g. The add that reaches a kv head's (R + 2) * HD / 2 pairs is the last: its q, k and v
  // are all stored (made visible before the add; read back through coherent bindings).
  ARRIVAL_FENCE();
  const uint H = p.n_heads, KVH = p.n_kv_heads, PAIRS_PER_HEAD = HD / 2;
  if (lid == 0) {
    uint n = 0;
    const uint p0 = gl_WorkGroupID.x * GROUPS * HALF, p1 = min(p0 + GROUPS * HALF, p.pairs);
    for (uint pp = p0; pp < p1;) {
      const uint head = pp / PAIRS_PER_HEAD, end = min((head + 1) * PAIRS_PER_HEAD, p1);
      const uint g = head < H ? head / ATT_R : head < H + KVH ? head - H : head - H - KVH;
      const uint before = ARRIVE(arrivals[g], end - pp);
      if (before + (end - pp) == (ATT_R + 2) * PAIRS_PER_HEAD && n < MAX_DONE) done_heads[n++] = g;
      pp = end;
    }
    n_done_heads = n;
  }
  ARRIVAL_FENCE();
  const uint n_done = n_done_heads;
  const uint live = min(positions[0], p.capacity - 1) + 1;
  const uint base = SLOTS ? min(seq_slots[0], p.sequences - 1) * p.capacity : 0;
  for (uint i = 0; i < n_done; ++i) {  // uniform
    const uint g = done_heads[i];
    if (lid == 0) atomicExchange(arrivals[g], 0u);  // for the next qkv (ordered by a barrier or a chain link's fences)
    att_split(g * ATT_R * HD, g, 0, live, base, KVH, p.scale_log2e);
    for (uint e = lid; e < ATT_E4; e += WG) {
      float mx, sum;
      vec4 o;
      att_split_output(e, mx, sum, o);
      const uint dst = g * ATT_R * HD + e * 4;
      const vec4 r = o / sum;
      attn_out[dst] = r.x;
      attn_out[dst + 1] = r.y;
      attn_out[dst + 2] = r.z;
      attn_out[dst + 3] = r.w;
    }
    barrier();  // the shared states are read before the next head writes them
  }
#endif
#if CHAIN
  count_link_done();
#endif
}
#endif

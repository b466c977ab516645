#version 450
// RMSNorm fused with per-token int8 absmax quantization (docs/architecture.md), one workgroup per
// token: v = x * inversesqrt(mean(x^2) + eps) * weight (NORM = true) or v = x (NORM = false);
// s = max(max|v|, 1e-5) / 127 (max|v| computed as inv * max|x * weight|, equal to an ulp);
// q = clamp(roundEven(v / s), -128, 127) packed four to a word with zero padding up to
// Kp = round_up(K, 64); meta = {s, sum q}.
// GATING (spec constant 2) fuses the FFN's gated activation in front: the input is then the fused
// gate|up GEMV output, fp32 [tokens, 2K] (gate g in columns 0..K-1, up u in K..2K-1), and
// x = act(g) * u computed exactly as gated_activation.comp does (0: x as is; 1: relu(g)^2 * u;
// 2: g / (1 + exp(-g)) * u), so the norm and the quantization see the same values.
// Bindings: 0 x fp32 [tokens, K] (or gate|up [tokens, 2K]); 1 norm weight fp32 [K] (unused
// without NORM: bind anything); 2 values uint32 [tokens, Kp/4]; 3 meta {float s, int sum_q} [tokens].
// Dispatch: (tokens, 1, 1). Spec constant 0 = workgroup size.
//
// Build-time variant TEXEL = 1 (CPU devices such as lavapipe, where a storage-buffer load is a
// per-lane loop and a texel fetch one gather; docs/performance.md): x and the norm weight are
// uniform texel buffers (R32G32B32A32_UINT views holding float bits, K % 4 == 0), read four
// elements at a time; each lane quantizes 16 elements per step and writes them as one uvec4.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : require
#ifndef TEXEL
#define TEXEL 0
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const bool NORM = true;
layout(constant_id = 2) const uint GATING = 0;  // 0: none, 1: squared ReLU, 2: SiLU

#if TEXEL
layout(set = 0, binding = 0) uniform usamplerBuffer x_texels;
layout(set = 0, binding = 1) uniform usamplerBuffer norm_texels;
layout(std430, set = 0, binding = 2) writeonly buffer Values { uvec4 q4[]; };
#else
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer NormWeight { float norm_weight[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Values { uint q[]; };
#endif
layout(std430, set = 0, binding = 3) writeonly buffer Meta { ivec2 meta[]; };
layout(push_constant) uniform Params {
  uint cols;   // K
  uint words;  // Kp / 4
  float eps;
} p;

const uint WG = gl_WorkGroupSize.x;
shared float partial_f[WG];
shared int partial_i[WG];

// Workgroup reductions: subgroups first, then the subgroup results in a fixed order, so that every
// invocation gets the same value. A workgroup of one subgroup (CPU devices) skips the barriers.
float wg_sum(float v) {
  v = subgroupAdd(v);
  if (gl_NumSubgroups == 1) return v;
  if (subgroupElect()) partial_f[gl_SubgroupID] = v;
  barrier();
  float s = 0.0;
  for (uint g = 0; g < gl_NumSubgroups; ++g) s += partial_f[g];
  barrier();
  return s;
}
float wg_max(float v) {
  v = subgroupMax(v);
  if (gl_NumSubgroups == 1) return v;
  if (subgroupElect()) partial_f[gl_SubgroupID] = v;
  barrier();
  float m = 0.0;
  for (uint g = 0; g < gl_NumSubgroups; ++g) m = max(m, partial_f[g]);
  barrier();
  return m;
}
int wg_sum_int(int v) {
  v = subgroupAdd(v);
  if (gl_NumSubgroups == 1) return v;
  if (subgroupElect()) partial_i[gl_SubgroupID] = v;
  barrier();
  int s = 0;
  for (uint g = 0; g < gl_NumSubgroups; ++g) s += partial_i[g];
  return s;
}

// act(g) * u, in the order of gated_activation.comp.
float gated(float g, float u) {
  float a;
  if (GATING == 1) {
    const float r = max(g, 0.0);
    a = r * r;
  } else {
    a = g / (1.0 + exp(-g));
  }
  return a * u;
}

#if TEXEL
vec4 load_x4(uint i) { return uintBitsToFloat(texelFetch(x_texels, int(i))); }
vec4 load_w4(uint i) { return uintBitsToFloat(texelFetch(norm_texels, int(i))); }
// Elements 4i..4i+3 of the row whose first texel is `base` (before the norm).
vec4 input4(uint base, uint i) {
  if (GATING == 0) return load_x4(base + i);
  const vec4 g = load_x4(base + i), u = load_x4(base + p.cols / 4 + i);
  return vec4(gated(g.x, u.x), gated(g.y, u.y), gated(g.z, u.z), gated(g.w, u.w));
}

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint token = gl_WorkGroupID.x;
  const uint cols4 = p.cols / 4;
  const uint base = token * cols4 * (GATING == 0 ? 1 : 2);

  // One pass for the sum of squares and max |x * weight|: v = x * inv * weight with inv > 0, so
  // max |v| = inv * max |x * weight| (to an ulp; the tests allow for it).
  float ss = 0.0, amax = 0.0;
  for (uint i = lid; i < cols4; i += WG) {
    const vec4 v = input4(base, i);
    ss += v.x * v.x;
    ss += v.y * v.y;
    ss += v.z * v.z;
    ss += v.w * v.w;
    const vec4 a = abs(NORM ? v * load_w4(i) : v);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  const float total_ss = wg_sum(ss);  // outside the select: wg_sum has barriers
  const float inv = NORM ? inversesqrt(total_ss / float(p.cols) + p.eps) : 1.0;
  const float s = max(wg_max(amax) * inv, 1e-5) / 127.0;

  // 16 elements (one uvec4 of q) per lane and step; texels past K give zero bytes.
  int sum_q = 0;
  const uint groups = p.words / 4;
  for (uint g = lid; g < groups; g += WG) {
    uvec4 word = uvec4(0);
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      const uint i = 4 * g + j;
      if (i < cols4) {
        vec4 v = input4(base, i);
        if (NORM) v = v * inv * load_w4(i);
        const ivec4 qv = ivec4(clamp(roundEven(v / s), -128.0, 127.0));
        sum_q += (qv.x + qv.y) + (qv.z + qv.w);
        const uvec4 b = uvec4(qv) & 0xffu;
        word[j] = b.x | (b.y << 8) | (b.z << 16) | (b.w << 24);
      }
    }
    q4[token * groups + g] = word;
  }
  sum_q = wg_sum_int(sum_q);
  if (lid == 0) meta[token] = ivec2(floatBitsToInt(s), sum_q);
}

#else
// Element k of the row that starts at element `base` (before the norm).
float input_at(uint base, uint k) {
  if (GATING == 0) return x[base + k];
  return gated(x[base + k], x[base + p.cols + k]);
}

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint token = gl_WorkGroupID.x;
  const uint base = token * p.cols * (GATING == 0 ? 1 : 2);

  // One pass for the sum of squares and max |x * weight| (see the texel variant).
  float ss = 0.0, amax = 0.0;
  for (uint k = lid; k < p.cols; k += WG) {
    const float v = input_at(base, k);
    ss += v * v;
    amax = max(amax, abs(NORM ? v * norm_weight[k] : v));
  }
  const float total_ss = wg_sum(ss);  // outside the select: wg_sum has barriers
  const float inv = NORM ? inversesqrt(total_ss / float(p.cols) + p.eps) : 1.0;
  const float s = max(wg_max(amax) * inv, 1e-5) / 127.0;

  int sum_q = 0;
  for (uint j = lid; j < p.words; j += WG) {
    uint word = 0;
    for (uint b = 0; b < 4; ++b) {
      const uint k = 4 * j + b;
      if (k >= p.cols) break;
      const float v = NORM ? input_at(base, k) * inv * norm_weight[k] : input_at(base, k);
      const int qv = int(clamp(roundEven(v / s), -128.0, 127.0));
      sum_q += qv;
      word |= (uint(qv) & 0xffu) << (8 * b);
    }
    q[token * p.words + j] = word;
  }
  sum_q = wg_sum_int(sum_q);
  if (lid == 0) meta[token] = ivec2(floatBitsToInt(s), sum_q);
}
#endif

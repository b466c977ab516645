#version 450
// RMSNorm fused with per-token int8 absmax quantization (docs/architecture.md), one workgroup per
// token: v = x * inversesqrt(mean(x^2) + eps) * weight (NORM = true) or v = x (NORM = false);
// s = max(max|v|, 1e-5) / 127; q = clamp(roundEven(v / s), -128, 127) packed four to a word with
// zero padding up to Kp = round_up(K, 64); meta = {s, sum q}.
// Bindings: 0 x fp32 [tokens, K]; 1 norm weight fp32 [K] (unused without NORM: bind anything);
// 2 values uint32 [tokens, Kp/4]; 3 meta {float s, int sum_q} [tokens].
// Dispatch: (tokens, 1, 1). Spec constant 0 = workgroup size.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const bool NORM = true;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer NormWeight { float norm_weight[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Values { uint q[]; };
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
// invocation gets the same value.
float wg_sum(float v) {
  v = subgroupAdd(v);
  if (subgroupElect()) partial_f[gl_SubgroupID] = v;
  barrier();
  float s = 0.0;
  for (uint g = 0; g < gl_NumSubgroups; ++g) s += partial_f[g];
  barrier();
  return s;
}
float wg_max(float v) {
  v = subgroupMax(v);
  if (subgroupElect()) partial_f[gl_SubgroupID] = v;
  barrier();
  float m = 0.0;
  for (uint g = 0; g < gl_NumSubgroups; ++g) m = max(m, partial_f[g]);
  barrier();
  return m;
}
int wg_sum_int(int v) {
  v = subgroupAdd(v);
  if (subgroupElect()) partial_i[gl_SubgroupID] = v;
  barrier();
  int s = 0;
  for (uint g = 0; g < gl_NumSubgroups; ++g) s += partial_i[g];
  return s;
}

void main() {
  const uint lid = gl_LocalInvocationID.x;
  const uint token = gl_WorkGroupID.x;
  const uint base = token * p.cols;

  float inv = 1.0;
  if (NORM) {
    float ss = 0.0;
    for (uint k = lid; k < p.cols; k += WG) {
      const float v = x[base + k];
      ss += v * v;
    }
    inv = inversesqrt(wg_sum(ss) / float(p.cols) + p.eps);
  }

  float amax = 0.0;
  for (uint k = lid; k < p.cols; k += WG) {
    const float v = NORM ? x[base + k] * inv * norm_weight[k] : x[base + k];
    amax = max(amax, abs(v));
  }
  const float s = max(wg_max(amax), 1e-5) / 127.0;

  int sum_q = 0;
  for (uint j = lid; j < p.words; j += WG) {
    uint word = 0;
    for (uint b = 0; b < 4; ++b) {
      const uint k = 4 * j + b;
      if (k >= p.cols) break;
      const float v = NORM ? x[base + k] * inv * norm_weight[k] : x[base + k];
      const int qv = int(clamp(roundEven(v / s), -128.0, 127.0));
      sum_q += qv;
      word |= (uint(qv) & 0xffu) << (8 * b);
    }
    q[token * p.words + j] = word;
  }
  sum_q = wg_sum_int(sum_q);
  if (lid == 0) meta[token] = ivec2(floatBitsToInt(s), sum_q);
}

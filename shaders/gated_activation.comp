#version 450
// Gated activation of the fused gate|up GEMV output: in[t, 0:F] is the gate g, in[t, F:2F] the up
// projection u; out[t, f] = act(g) * u with act chosen by spec constant 1:
//   0 = squared ReLU, relu(g)^2 (BitNet b1.58 2B4T);  1 = SiLU, g / (1 + exp(-g)) (LLaMA-style).
// Bindings: 0 in fp32 [tokens, 2F]; 1 out fp32 [tokens, F]. Dispatch: (ceil(F / WG), tokens).
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint GATING = 0;

layout(std430, set = 0, binding = 0) readonly buffer In { float gate_up[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float act[]; };
layout(push_constant) uniform Params { uint features; } p;

void main() {
  const uint f = gl_GlobalInvocationID.x;
  const uint t = gl_GlobalInvocationID.y;
  if (f >= p.features) return;
  const uint src = t * 2 * p.features + f;
  const float g = gate_up[src];
  const float u = gate_up[src + p.features];
  float a;
  if (GATING == 0) {
    const float r = max(g, 0.0);
    a = r * r;
  } else {
    a = g / (1.0 + exp(-g));
  }
  act[t * p.features + f] = a * u;
}

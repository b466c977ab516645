// Gated activation of the feed-forward block. The input is the output of ONE fused gate|up GEMV:
// fp32 [tokens, 2F] whose first F columns of each row are the gate g and the next F the up
// projection u (so the engine stacks W_gate over W_up into one [2F, K] matrix). Separate gate and
// up buffers are not supported: fusing the two GEMVs saves a dispatch and an activation read.
//   out[t, f] = act(g[t, f]) * u[t, f]   (fp32 [tokens, F])
#pragma once
#include <cstdint>

#include "runtime/device/memory.h"
#include "runtime/device/recording.h"

namespace ternvk::ops {

enum class Gating : uint32_t {
  SquaredRelu = 0,  // relu(g)^2 * u: BitNet b1.58 2B4T
  Silu = 1,         // silu(g) * u = g / (1 + exp(-g)) * u: LLaMA-architecture BitNet models
};

struct GatedActivationArgs {
  BufferRange gate_up;    // fp32 [tokens, 2 * features]: gate columns, then up columns
  BufferRange out;        // fp32 [tokens, features]
  uint32_t tokens = 0;
  uint32_t features = 0;  // F
  Gating gating = Gating::SquaredRelu;
  uint32_t workgroup = 0;  // 0 picks from DeviceInfo
};

void record_gated_activation(Recording& rec, const GatedActivationArgs& args);

}  // namespace ternvk::ops

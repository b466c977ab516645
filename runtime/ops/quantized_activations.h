// What the matmul ops exchange: int8 activations quantized per token (written by RmsNormQuant, read
// by TernaryMatmul) and where a matmul writes its fp32 result (store, or add for a fused residual).
// Layouts are those of docs/architecture.md.
#pragma once
#include <cstdint>
#include <string>

#include "runtime/device/device.h"
#include "runtime/device/memory.h"

namespace ternvk::ops {

inline uint32_t round_up(uint32_t value, uint32_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Per token t: values row t = Kp/4 uint32 words of int8 q (element 4j+b in byte b of word j, zero
// padding up to Kp = round_up(K, 64)); meta[t] = {float s; int32 sum_q}. x ≈ q * s.
struct QuantizedActivations {
  BufferRange values;  // uint32 [tokens][padded_cols()/4]
  BufferRange meta;    // {float s, int32 sum_q} [tokens]
  uint32_t cols = 0;   // K, the unpadded row length

  uint32_t padded_cols() const { return round_up(cols, 64); }
  uint32_t words_per_token() const { return padded_cols() / 4; }
  static uint64_t values_bytes(uint32_t tokens, uint32_t cols) { return uint64_t(tokens) * round_up(cols, 64); }
  static uint64_t meta_bytes(uint32_t tokens) { return uint64_t(tokens) * 8; }
};

// Device-local buffers holding quantized activations for up to `max_tokens` tokens.
struct QuantizedActivationsBuffers {
  Buffer values;
  Buffer meta;
  uint32_t cols = 0;
  uint32_t max_tokens = 0;

  static QuantizedActivationsBuffers create(Device& device, uint32_t max_tokens, uint32_t cols,
                                            const std::string& what) {
    QuantizedActivationsBuffers b;
    b.values = device.create_buffer(QuantizedActivations::values_bytes(max_tokens, cols), MemoryKind::DeviceLocal,
                                    what + " (int8 values)");
    b.meta = device.create_buffer(QuantizedActivations::meta_bytes(max_tokens), MemoryKind::DeviceLocal,
                                  what + " (scales and sums)");
    b.cols = cols;
    b.max_tokens = max_tokens;
    return b;
  }
  QuantizedActivations view() const { return {values.range(), meta.range(), cols}; }
};

// The result of a matmul with N output rows for T tokens: element (t, n) is at
// buffer[t * stride + offset + n] (fp32). stride 0 means N, so a plain [T, N] output needs no setup;
// a larger stride and an offset let several matmuls write columns of one wider buffer.
struct MatmulOutput {
  BufferRange buffer;
  uint32_t stride = 0;
  uint32_t offset = 0;
};

enum class Epilogue : uint32_t {
  Store = 0,       // y = W x
  Accumulate = 1,  // y += W x (a fused residual add)
};

}  // namespace ternvk::ops

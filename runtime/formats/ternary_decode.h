// Decoders of every published BitNet weight layout to TernaryMatrix. Each checks what the layout
// cannot express (code 3, disagreeing block scales, non-positive scales) and throws ternvk::Error
// naming the tensor, so a wrong layout guess or a corrupt file fails loudly instead of producing
// a model that silently talks nonsense.
#pragma once
#include <span>

#include "runtime/formats/raw_tensor.h"
#include "runtime/formats/ternary_matrix.h"

namespace ternvk {

// llama.cpp TQ2_0 (type 35): 256-value blocks of 64 code bytes + fp16 d. cols % 256 == 0.
TernaryMatrix decode_tq2_0(const RawTensor& t);
// llama.cpp TQ1_0 (type 34): 256-value blocks of 48 + 4 base-3 bytes + fp16 d. cols % 256 == 0.
TernaryMatrix decode_tq1_0(const RawTensor& t);
// bitnet.cpp I2_S (type 36), x86 layout: flat 128-value blocks of 32 bytes, then one f32 scale,
// padded to n/4 + 32 bytes. rows * cols % 128 == 0.
TernaryMatrix decode_i2_s(const RawTensor& t);
// Floats that are already ternary x one scale (llama.cpp's converter output for 1bitLLM models):
// every value must be 0 or +-s (s = max |value|) within relative 1e-3.
TernaryMatrix ternary_from_floats(const RawTensor& t, std::span<const float> values);
// Hugging Face 2B4T packing: U8 [rows/4, cols]; packed row r holds rows r + i*(rows/4) at bits
// 2i..2i+1 as value + 1. `t.rows` is the PACKED row count; the result has 4x as many rows.
// `multiplier` is the effective scale (the caller applies the weight_scale convention).
TernaryMatrix decode_hf_packed(const RawTensor& t, float multiplier);

}  // namespace ternvk

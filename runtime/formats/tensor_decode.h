// GGUF tensors to canonical host forms: floats / fp16 bits for norms and embeddings, TernaryMatrix
// for BitNet linear weights, whatever layout the file stores them in.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/formats/gguf.h"
#include "runtime/formats/raw_tensor.h"
#include "runtime/formats/ternary_matrix.h"

namespace ternvk {

// The tensor's bytes and shape, labelled "<file>: tensor '<name>'" for errors.
RawTensor raw_tensor(const GgufFile& file, const GgufTensorInfo& info);

// F32, F16, BF16, Q8_0 -> float; also any ternary type (TQ1_0, TQ2_0, I2_S), dequantized.
std::vector<float> read_f32(const GgufFile& file, const GgufTensorInfo& info);
// F32, F16, BF16, Q8_0 -> fp16 bits (F16 copied exactly).
std::vector<uint16_t> read_f16_bits(const GgufFile& file, const GgufTensorInfo& info);
// TQ1_0, TQ2_0, I2_S, or F32/F16/BF16 holding ternary x one scale -> TernaryMatrix.
TernaryMatrix read_ternary(const GgufFile& file, const GgufTensorInfo& info);

}  // namespace ternvk

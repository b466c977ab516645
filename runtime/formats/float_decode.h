// Decoders of the higher-precision GGUF types (norms, embeddings) to host floats or fp16 bits.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/formats/ggml_types.h"
#include "runtime/formats/raw_tensor.h"

namespace ternvk {

// F32, F16, BF16 or Q8_0 (block of 32: fp16 d, 32 int8; value = d * q) to float.
std::vector<float> decode_to_f32(GgmlType type, const RawTensor& t);
// The same to IEEE fp16 bits (the GPU keeps embeddings in fp16). F16 is copied bit for bit.
std::vector<uint16_t> decode_to_f16_bits(GgmlType type, const RawTensor& t);

bool is_float_decodable(GgmlType type);  // one of F32, F16, BF16, Q8_0

}  // namespace ternvk

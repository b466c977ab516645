// Encoders for every ternary layout the decoders read: the inverse of ternary_decode.h. Tests use
// them to write small random models in every format; they follow the reference writers
// (llama.cpp quantize_row_tq*_ref, bitnet.cpp quantize_i2_s, transformers pack_weights).
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/formats/ternary_matrix.h"

namespace ternvk {

// Every block gets d = fp16(scale). cols % 256 == 0.
std::vector<uint8_t> encode_tq2_0(const TernaryMatrix& m);
std::vector<uint8_t> encode_tq1_0(const TernaryMatrix& m);
// n/4 packed bytes, the f32 scale, zero padding: n/4 + 32 bytes. rows * cols % 128 == 0.
std::vector<uint8_t> encode_i2_s(const TernaryMatrix& m);
// U8 [rows/4, cols] (rows % 4 == 0); the scale is stored separately as weight_scale.
std::vector<uint8_t> pack_hf_ternary(const TernaryMatrix& m);

}  // namespace ternvk

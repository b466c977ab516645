// Tensors of a Hugging Face BitNet folder to canonical host forms.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "runtime/formats/hf_config.h"
#include "runtime/formats/safetensors.h"
#include "runtime/formats/ternary_matrix.h"

namespace ternvk {

// F32, F16, BF16 -> float (norms, embeddings).
std::vector<float> read_hf_f32(const SafetensorsModel& model, std::string_view name);
// F32, F16, BF16 -> fp16 bits (F16 copied exactly).
std::vector<uint16_t> read_hf_f16_bits(const SafetensorsModel& model, std::string_view name);
// A BitLinear weight `<prefix>.weight`: U8 packed [out/4, in] with scalar `<prefix>.weight_scale`
// (BF16/F16/F32, one element) read under `convention`; or F32/F16/BF16 [out, in] already ternary x
// one scale (weight_scale then ignored).
TernaryMatrix read_hf_ternary(const SafetensorsModel& model, std::string_view weight_name,
                              WeightScaleConvention convention);

}  // namespace ternvk

// Reads the tokenizer.ggml.* keys of a GGUF file into a tokenizer (the keys llama.cpp's converters
// write; see /work/shared/docs/formats.md).
#pragma once
#include <memory>

#include "runtime/tokenizer/tokenizer.h"

namespace ternvk {

// tokenizer.ggml.model "llama": SentencePiece (tokens, scores, token_type, special ids,
// add_space_prefix). "gpt2": byte-level BPE (tokens, token_type, merges, pre = gpt-2 | llama-bpe).
// Throws ternvk::Error naming the file and key for anything missing or inconsistent.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& gguf);

}  // namespace ternvk

// Reads a Hugging Face tokenizer.json (byte-level BPE models: GPT-2, LLaMA 3) and, when present,
// the tokenizer_config.json beside it (BOS/EOS spellings, chat template).
#pragma once
#include <filesystem>
#include <memory>

#include "runtime/tokenizer/tokenizer.h"

namespace ternvk {

// Throws ternvk::Error naming the file and the JSON path for unreadable files and for tokenizer
// kinds this runtime does not implement (WordPiece, Unigram, BPE with byte fallback -- use the
// SentencePiece .model for those -- normalizers, prefix spaces).
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::filesystem::path& tokenizer_json);

// The chat template of a tokenizer_config.json (empty when it has none).
std::string read_chat_template(const std::filesystem::path& tokenizer_config_json);

}  // namespace ternvk

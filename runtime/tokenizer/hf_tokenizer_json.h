// Reads a Hugging Face tokenizer.json (byte-level BPE models: GPT-2, LLaMA 3) and, when present,
// the tokenizer_config.json beside it (BOS/EOS spellings, chat template).
#pragma once
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"

namespace ternvk {

// What ternvk takes from a tokenizer_config.json.
struct HfTokenizerConfig {
  std::optional<std::string> bos_token, eos_token;  // spellings
  std::string chat_template;                        // empty when it has none
};

// Throws ternvk::Error naming the file and the JSON path for unreadable files, values of the
// wrong type or out of range, and for tokenizer kinds this runtime does not implement (WordPiece,
// Unigram, BPE with byte fallback -- use the SentencePiece .model for those -- normalizers,
// prefix spaces).
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::filesystem::path& tokenizer_json);

// The same from the files' text; `source` names tokenizer.json in errors. `config` is what the
// tokenizer_config.json beside it holds, if there is one.
std::unique_ptr<Tokenizer> parse_hf_tokenizer_json(std::string_view text, const std::string& source,
                                                   const std::optional<HfTokenizerConfig>& config = std::nullopt);
HfTokenizerConfig parse_hf_tokenizer_config(std::string_view text, const std::string& source);

// The chat template of a tokenizer_config.json (empty when it has none).
std::string read_chat_template(const std::filesystem::path& tokenizer_config_json);

}  // namespace ternvk

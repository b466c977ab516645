// Cuts text into plain-text fragments and special tokens before the model-specific encoder runs.
// Which tokens are recognised is the security boundary of a chat runtime: with parse_special off,
// user text such as "<|eot_id|>" stays text, so a user cannot forge a turn. USER_DEFINED tokens are
// matched either way (they are ordinary vocabulary words that just must not be split), as in
// llama.cpp and Hugging Face tokenizers.
#pragma once
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/token_types.h"

namespace ternvk {

struct TextFragment {
  std::string_view text;  // plain text to encode (empty when this fragment is a token)
  TokenId token = -1;     // >= 0: a special token found in the text
  bool is_token() const { return token >= 0; }
};

class SpecialTokenSplitter {
 public:
  SpecialTokenSplitter() = default;
  // `text` is the token's literal spelling; empty spellings are ignored.
  void add(std::string_view text, TokenId id, TokenType type);

  // Leftmost-longest match, scanning left to right (the Hugging Face added-token rule).
  std::vector<TextFragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Candidate {
    std::string text;
    TokenId id;
    bool always;  // USER_DEFINED: matched even when parse_special is false
  };
  // Candidates grouped by first byte, longest first, so each text position checks only a few.
  std::array<std::vector<Candidate>, 256> by_first_byte_;
  bool empty_ = true;
};

}  // namespace ternvk

#include "runtime/tokenizer/special_token_splitter.h"

#include <algorithm>
#include <cstdint>

namespace ternvk {

void SpecialTokenSplitter::add(std::string_view text, TokenId id, TokenType type) {
  const bool always = type == TokenType::kUserDefined;
  const bool special = type == TokenType::kControl || type == TokenType::kUnknown;
  if (text.empty() || (!always && !special)) return;
  auto& bucket = by_first_byte_[static_cast<uint8_t>(text[0])];
  // Keep each bucket longest first; among equal lengths, the first added wins.
  const auto at = std::find_if(bucket.begin(), bucket.end(), [&](const Candidate& c) {
    return c.text.size() < text.size();
  });
  bucket.insert(at, {std::string(text), id, always});
  empty_ = false;
}

std::vector<TextFragment> SpecialTokenSplitter::split(std::string_view text,
                                                      bool parse_special) const {
  std::vector<TextFragment> out;
  size_t plain_start = 0;
  for (size_t pos = 0; !empty_ && pos < text.size();) {
    const Candidate* hit = nullptr;
    for (const auto& c : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      if ((c.always || parse_special) && text.substr(pos, c.text.size()) == c.text) {
        hit = &c;
        break;  // longest first
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    if (pos > plain_start) out.push_back({text.substr(plain_start, pos - plain_start), -1});
    out.push_back({{}, hit->id});
    pos += hit->text.size();
    plain_start = pos;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
  return out;
}

}  // namespace ternvk

#include "runtime/tokenizer/token_types.h"

namespace ternvk {

const char* token_type_name(TokenType type) {
  switch (type) {
    case TokenType::kNormal: return "NORMAL";
    case TokenType::kUnknown: return "UNKNOWN";
    case TokenType::kControl: return "CONTROL";
    case TokenType::kUserDefined: return "USER_DEFINED";
    case TokenType::kUnused: return "UNUSED";
    case TokenType::kByte: return "BYTE";
  }
  return "?";
}

std::optional<TokenType> token_type_from_int(int64_t raw) {
  if (raw < 1 || raw > 6) return std::nullopt;
  return static_cast<TokenType>(raw);
}

}  // namespace ternvk

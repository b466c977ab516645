#include "runtime/tokenizer/chat_template.h"

#include <cctype>

#include "runtime/core/error.h"

namespace ternvk {
namespace {

// Python's str.strip() / Jinja's trim on the whitespace that occurs in practice.
std::string trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return std::string(s.substr(first, s.find_last_not_of(kSpace) - first + 1));
}

// Jinja's capitalize: first letter upper case, the rest lower case.
std::string capitalize(std::string_view s) {
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i) {
    const auto c = static_cast<unsigned char>(out[i]);
    out[i] = static_cast<char>(i == 0 ? std::toupper(c) : std::tolower(c));
  }
  return out;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

class PromptBuilder {
 public:
  void text(std::string_view t) {
    if (t.empty()) return;
    if (!prompt_.segments.empty() && !prompt_.segments.back().is_control) {
      prompt_.segments.back().text += t;
    } else {
      prompt_.segments.push_back({std::string(t), false});
    }
  }
  void control(std::string_view spelling) {
    if (!spelling.empty()) prompt_.segments.push_back({std::string(spelling), true});
  }
  ChatPrompt take() { return std::move(prompt_); }

 private:
  ChatPrompt prompt_;
};

constexpr std::string_view kEotId = "<|eot_id|>";

void render_bitnet_2b4t(PromptBuilder& b, std::span<const ChatMessage> messages,
                        const ChatSpecialTokens& special, bool add_generation_prompt) {
  b.control(special.bos);
  for (const auto& m : messages) {
    b.text(capitalize(m.role) + ": " + trim(m.content));
    b.control(kEotId);
  }
  if (add_generation_prompt) b.text("Assistant: ");
}

void render_llama3(PromptBuilder& b, std::span<const ChatMessage> messages,
                   const ChatSpecialTokens& special, bool add_generation_prompt) {
  const auto header = [&](std::string_view role) {
    b.control("<|start_header_id|>");
    b.text(role);
    b.control("<|end_header_id|>");
    b.text("\n\n");
  };
  b.control(special.bos);
  for (const auto& m : messages) {
    header(m.role);
    b.text(trim(m.content));
    b.control(kEotId);
  }
  if (add_generation_prompt) header("assistant");
}

// Meta's LLaMA-2 chat template: a leading system message is folded into the first user turn.
void render_llama2(PromptBuilder& b, std::span<const ChatMessage> messages,
                   const ChatSpecialTokens& special) {
  std::string system;
  if (!messages.empty() && messages.front().role == "system") {
    system = trim(messages.front().content);
    messages = messages.subspan(1);
  }
  bool first_user = true;
  for (const auto& m : messages) {
    if (m.role == "assistant") {
      b.text(" ");  // three calls, not " " + s + " ": GCC 12 misreports that as -Wrestrict
      b.text(trim(m.content));
      b.text(" ");
      b.control(special.eos);
      continue;
    }
    std::string content = trim(m.content);
    if (first_user && !system.empty()) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    first_user = false;
    b.control(special.bos);
    b.text("[INST] " + trim(content) + " [/INST]");
  }
}

void render_plain(PromptBuilder& b, std::span<const ChatMessage> messages,
                  const ChatSpecialTokens& special, bool add_generation_prompt) {
  b.control(special.bos);
  std::string text;
  for (const auto& m : messages) text += capitalize(m.role) + ": " + trim(m.content) + "\n";
  if (add_generation_prompt) text += "Assistant:";
  b.text(text);
}

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != lower(prefix[i])) return false;
  return true;
}

// The length of the line break at `s`, 0 if none: \n, \r, \v, \f and Unicode's NEL, LS and PS (a
// tokenizer or model may take any of them for a new line).
size_t line_break_at(std::string_view s) {
  if (s.empty()) return 0;
  if (s[0] == '\n' || s[0] == '\r' || s[0] == '\v' || s[0] == '\f') return 1;
  if (s.substr(0, 2) == "\xC2\x85") return 2;
  if (s.substr(0, 3) == "\xE2\x80\xA8" || s.substr(0, 3) == "\xE2\x80\xA9") return 3;
  return 0;
}

// A line of `text` after its first that starts (after blanks) with a role name and ':'.
std::optional<std::string> plain_role_line(std::string_view text) {
  static constexpr std::string_view kRoles[] = {"user", "assistant", "system"};
  for (size_t i = 0; i < text.size(); ++i) {
    const size_t n = line_break_at(text.substr(i));
    if (n == 0) continue;
    size_t at = i + n;
    while (at < text.size() && (text[at] == ' ' || text[at] == '\t')) ++at;
    for (std::string_view role : kRoles) {
      if (!starts_with_nocase(text.substr(at), role)) continue;
      size_t colon = at + role.size();
      while (colon < text.size() && (text[colon] == ' ' || text[colon] == '\t')) ++colon;
      if (colon < text.size() && text[colon] == ':') return std::string(text.substr(at, colon + 1 - at));
    }
  }
  return std::nullopt;
}

std::optional<std::string> llama2_marker(std::string_view text) {
  static constexpr std::string_view kMarkers[] = {"[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"};
  for (size_t i = 0; i < text.size(); ++i)
    for (std::string_view marker : kMarkers)
      if (starts_with_nocase(text.substr(i), marker)) return std::string(text.substr(i, marker.size()));
  return std::nullopt;
}

}  // namespace

std::optional<TurnMarker> find_turn_marker(ChatFormat format, std::span<const ChatMessage> messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string content = trim(messages[i].content);  // as rendered
    std::optional<std::string> marker;
    if (format == ChatFormat::kPlain) marker = plain_role_line(content);
    if (format == ChatFormat::kLlama2) marker = llama2_marker(content);
    if (marker) return TurnMarker{i, *marker};
  }
  return std::nullopt;
}

std::string describe_turn_marker(ChatFormat format, const TurnMarker& marker, std::string_view where) {
  return std::string(where) + " contains '" + marker.marker + "', which in this model's " +
         std::string(chat_format_name(format)) +
         " chat format is a turn marker (it would start a turn of its own); rephrase it";
}

std::string_view chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::kBitnet2B4T: return "bitnet-2b4t";
    case ChatFormat::kLlama3: return "llama3";
    case ChatFormat::kLlama2: return "llama2";
    case ChatFormat::kPlain: return "plain";
  }
  return "?";
}

ChatFormat detect_chat_format(std::string_view template_text, std::string_view architecture) {
  if (contains(template_text, "<|start_header_id|>")) return ChatFormat::kLlama3;
  if (contains(template_text, "[INST]")) return ChatFormat::kLlama2;
  if (contains(template_text, "<|eot_id|>") &&
      (contains(template_text, "capitalize") || contains(template_text, "Assistant: "))) {
    return ChatFormat::kBitnet2B4T;
  }
  if (template_text.empty() && (architecture == "bitnet-b1.58" || architecture == "bitnet-25")) {
    return ChatFormat::kBitnet2B4T;
  }
  return ChatFormat::kPlain;
}

ChatFormat detect_chat_format(const Tokenizer& tokenizer, std::string_view architecture) {
  const ChatFormat format = detect_chat_format(tokenizer.chat_template(), architecture);
  if (format == ChatFormat::kBitnet2B4T && !tokenizer.find_token(kEotId)) return ChatFormat::kPlain;
  if (format == ChatFormat::kLlama3 && !tokenizer.find_token("<|start_header_id|>")) return ChatFormat::kPlain;
  return format;
}

std::string ChatPrompt::to_string() const {
  std::string out;
  for (const auto& s : segments) out += s.text;
  return out;
}

ChatSpecialTokens chat_special_tokens(const Tokenizer& tokenizer) {
  ChatSpecialTokens special;
  if (tokenizer.bos()) special.bos = tokenizer.token_piece(*tokenizer.bos());
  if (tokenizer.eos()) special.eos = tokenizer.token_piece(*tokenizer.eos());
  return special;
}

ChatPrompt render_chat(ChatFormat format, std::span<const ChatMessage> messages,
                       const ChatSpecialTokens& special, bool add_generation_prompt) {
  PromptBuilder b;
  switch (format) {
    case ChatFormat::kBitnet2B4T: render_bitnet_2b4t(b, messages, special, add_generation_prompt); break;
    case ChatFormat::kLlama3: render_llama3(b, messages, special, add_generation_prompt); break;
    case ChatFormat::kLlama2: render_llama2(b, messages, special); break;
    case ChatFormat::kPlain: render_plain(b, messages, special, add_generation_prompt); break;
  }
  return b.take();
}

std::vector<TokenId> encode_chat(const Tokenizer& tokenizer, const ChatPrompt& prompt) {
  std::vector<TokenId> ids;
  for (const auto& segment : prompt.segments) {
    if (!segment.is_control) {
      const auto part = tokenizer.encode(segment.text, /*add_bos=*/false, /*parse_special=*/false);
      ids.insert(ids.end(), part.begin(), part.end());
      continue;
    }
    const auto id = tokenizer.find_token(segment.text);
    if (!id || !tokenizer.is_special(*id)) {
      throw Error("chat template needs the control token '" + segment.text +
                  "', which this vocabulary does not have as a control token (wrong chat format "
                  "for this model?)");
    }
    ids.push_back(*id);
  }
  return ids;
}

}  // namespace ternvk

// Chat prompts for the formats ternvk's models use, without a Jinja engine: the format is recognised
// from the model's template text (distinctive substrings) or its architecture, then rendered by hand.
//
// A rendered prompt keeps control tokens (BOS, <|eot_id|>, ...) apart from text. encode_chat() turns
// only those into control tokens and encodes everything else as plain text, so a message containing
// "<|eot_id|>" cannot end its turn early or forge another one.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/tokenizer.h"

namespace ternvk {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatFormat {
  kBitnet2B4T,  // <bos>User: {content}<|eot_id|>Assistant: {content}<|eot_id|>...Assistant:_
  kLlama3,      // <bos><|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>...
  kLlama2,      // <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s>...
  kPlain,       // models without a template: <bos>User: {content}\nAssistant:
};

std::string_view chat_format_name(ChatFormat format);

// From the file's template text (tokenizer.chat_template / tokenizer_config.json); when that is
// empty, from the architecture ("bitnet-b1.58" and "bitnet-25" are 2B4T); otherwise kPlain.
ChatFormat detect_chat_format(std::string_view template_text, std::string_view architecture = {});
// The same, for a loaded tokenizer: a format whose control tokens the vocabulary lacks (2B4T's
// <|eot_id|>, e.g. a small BitNet-arch model trained with a SentencePiece vocabulary) falls back to
// the plain format instead of failing at the first message.
ChatFormat detect_chat_format(const Tokenizer& tokenizer, std::string_view architecture);

struct ChatSegment {
  std::string text;
  bool is_control = false;  // the spelling of one control token, e.g. "<|eot_id|>"
};

struct ChatPrompt {
  std::vector<ChatSegment> segments;
  // The prompt as one string, control tokens written out (for logs and tests).
  std::string to_string() const;
};

// Spellings of the vocabulary's BOS/EOS (empty: the vocabulary has none, leave them out).
struct ChatSpecialTokens {
  std::string bos;
  std::string eos;
};
ChatSpecialTokens chat_special_tokens(const Tokenizer& tokenizer);

// add_generation_prompt: end with the assistant's cue so the model writes the next answer.
// Message content is trimmed of surrounding whitespace, as all these templates do.
ChatPrompt render_chat(ChatFormat format, std::span<const ChatMessage> messages,
                       const ChatSpecialTokens& special, bool add_generation_prompt = true);

// In the plain and Llama-2 formats the turn markers are ordinary text (a line "Assistant: ...",
// "[/INST]"), so a message that contains one would start a turn of its own. The first message whose
// content holds such a marker (case-insensitive; in the plain format a role name and ':' at the
// start of any line but the first), and the marker as written; nullopt when there is none, and
// always in formats whose turns are delimited by control tokens.
struct TurnMarker {
  size_t message = 0;
  std::string marker;
};
std::optional<TurnMarker> find_turn_marker(ChatFormat format, std::span<const ChatMessage> messages);
// Why such a message is refused, for every front end alike: "<where> contains '<marker>', which in
// this model's <format> chat format is a turn marker (...); rephrase it". `where` names the
// message as its sender knows it ("messages[2].content", "the system prompt").
std::string describe_turn_marker(ChatFormat format, const TurnMarker& marker, std::string_view where);

// Control segments become their token (a ternvk::Error if the vocabulary lacks one); each run of
// text between them is encoded in one piece with parse_special off.
std::vector<TokenId> encode_chat(const Tokenizer& tokenizer, const ChatPrompt& prompt);

}  // namespace ternvk

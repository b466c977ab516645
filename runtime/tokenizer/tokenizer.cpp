#include "runtime/tokenizer/tokenizer.h"

#include "runtime/core/error.h"
#include "runtime/tokenizer/streaming_decoder.h"
#include "runtime/tokenizer/utf8.h"

namespace ternvk {

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  // Both encoders (the regex engine, SentencePiece's normalizer) assume valid UTF-8; refusing bad
  // input here gives one documented behaviour instead of two undocumented ones.
  require_valid_utf8(text, "text to encode");
  std::vector<TokenId> ids;
  if (add_bos) {
    if (!bos()) throw Error("encode(add_bos=true): this vocabulary defines no BOS token");
    ids.push_back(*bos());
  }
  for (const TextFragment& fragment : splitter_.split(text, parse_special)) {
    if (fragment.is_token()) {
      ids.push_back(fragment.token);
    } else {
      encode_plain(fragment.text, ids);
    }
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool render_special) const {
  StreamingDecoder decoder(*this, render_special);
  std::string text;
  for (const TokenId id : ids) text += decoder.feed(id);
  return text + decoder.flush();
}

void Tokenizer::check_id(TokenId id) const {
  if (id < 0 || id >= vocab_size()) {
    throw Error("token id " + std::to_string(id) + " is out of range: the vocabulary has " +
                std::to_string(vocab_size()) + " tokens");
  }
}

void Tokenizer::fill_missing_ids(std::optional<TokenId> bos, std::optional<TokenId> eos) {
  if (!metadata_.bos) metadata_.bos = bos;
  if (!metadata_.eos) metadata_.eos = eos;
  if (!metadata_.eot) metadata_.eot = metadata_.eos;
}

void Tokenizer::finish_setup(const std::string& source) {
  const auto check_meta = [&](const std::optional<TokenId>& id, const char* what) {
    if (id && (*id < 0 || *id >= vocab_size())) {
      throw Error(source + ": " + what + " token id " + std::to_string(*id) +
                  " is outside the vocabulary of " + std::to_string(vocab_size()) + " tokens");
    }
  };
  check_meta(metadata_.bos, "BOS");
  check_meta(metadata_.eos, "EOS");
  check_meta(metadata_.eot, "EOT");
  for (TokenId id = 0; id < vocab_size(); ++id) {
    splitter_.add(token_piece(id), id, token_type(id));
  }
}

}  // namespace ternvk

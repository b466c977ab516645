// UTF-8 handling: encode() refuses invalid UTF-8 (documented choice: a clear error, with
// sanitize_utf8() offered to callers who prefer U+FFFD); the streaming decoder never emits half a
// character and replaces what can never become valid.
#include <doctest/doctest.h>

#include "runtime/core/error.h"
#include "runtime/tokenizer/byte_level_alphabet.h"
#include "runtime/tokenizer/streaming_decoder.h"
#include "runtime/tokenizer/utf8.h"
#include "tokenizer/fixtures.h"

namespace ternvk::test {
namespace {

const std::string kFffd(kReplacementCharacter);

// SentencePiece byte-fallback ids: <0x00> is id 3 in the LLaMA-2 vocabulary.
TokenId spm_byte(uint8_t b) { return 3 + b; }

TokenId bpe_byte(const Tokenizer& t, uint8_t b) {
  static const ByteLevelAlphabet alphabet;
  return *t.find_token(alphabet.spelling(b));
}

}  // namespace

TEST_CASE("sanitize_utf8 replaces each maximal invalid subpart with one U+FFFD") {
  CHECK(sanitize_utf8("plain \xE2\x82\xAC") == "plain \xE2\x82\xAC");
  CHECK(sanitize_utf8("\xFF" "a") == kFffd + "a");
  CHECK(sanitize_utf8("\xE2\x82" "a") == kFffd + "a");              // truncated 3-byte sequence
  CHECK(sanitize_utf8("\xF0\x9F\x98") == kFffd);                     // truncated emoji at the end
  CHECK(sanitize_utf8("\xC0\xAF") == kFffd + kFffd);                 // overlong form
  CHECK(sanitize_utf8("\xED\xA0\x80") == kFffd + kFffd + kFffd);     // UTF-16 surrogate
  CHECK(sanitize_utf8("\xF4\x90\x80\x80") == kFffd + kFffd + kFffd + kFffd);  // above U+10FFFF
  CHECK(find_invalid_utf8("ok\xC3") == 2);
  CHECK_FALSE(find_invalid_utf8("\xF0\x9F\xA6\x99").has_value());
}

TEST_CASE("encode rejects invalid UTF-8 with an error naming the offset") {
  for (const Tokenizer* t : {&llama2_model_file(), &llama3_json()}) {
    try {
      t->encode("abc\xC3(", false, false);
      FAIL("expected ternvk::Error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("offset 3") != std::string::npos);
    }
    // The documented way out: sanitize first.
    CHECK(t->decode(t->encode(sanitize_utf8("abc\xC3("))) == "abc" + kFffd + "(");
  }
}

TEST_CASE("streaming: a character split over byte-fallback tokens comes out whole") {
  const Tokenizer& t = llama2_model_file();
  StreamingDecoder d(t);
  CHECK(d.feed(spm_byte(0xE2)).empty());
  CHECK(d.pending_bytes() == 1);
  CHECK(d.feed(spm_byte(0x82)).empty());
  CHECK(d.feed(spm_byte(0xAC)) == "\xE2\x82\xAC");  // €
  CHECK(d.pending_bytes() == 0);
  CHECK(d.flush().empty());
}

TEST_CASE("streaming: byte-level BPE pieces that end mid-character") {
  const Tokenizer& t = llama3_json();
  StreamingDecoder d(t);
  // "🦙" = F0 9F A6 99, fed as four single-byte tokens, then a whole word.
  CHECK(d.feed(bpe_byte(t, 0xF0)).empty());
  CHECK(d.feed(bpe_byte(t, 0x9F)).empty());
  CHECK(d.feed(bpe_byte(t, 0xA6)).empty());
  CHECK(d.feed(bpe_byte(t, 0x99)) == "\xF0\x9F\xA6\x99");
  CHECK(d.feed(1917) == " world");
}

TEST_CASE("streaming: every chunk is valid UTF-8 and the chunks add up to decode()") {
  for (const Tokenizer* t : {&llama3_json(), &llama2_model_file()}) {
    for (const std::string text : {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86",
                                   "emoji \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9 \xF0\x9F\xA6\x99 "
                                   "\xE1\x9E\x80\xE1\x9E\xB6\xE1\x9E\x93\xE1\x9F\x8B"}) {
      const auto ids = t->encode(text);
      StreamingDecoder d(*t);
      std::string joined;
      for (const TokenId id : ids) {
        const std::string chunk = d.feed(id);
        CHECK_FALSE(find_invalid_utf8(chunk).has_value());
        joined += chunk;
      }
      joined += d.flush();
      CHECK(joined == text);
    }
  }
}

TEST_CASE("streaming: invalid bytes become U+FFFD, an unfinished tail too on flush") {
  const Tokenizer& t = llama2_model_file();
  StreamingDecoder d(t);
  CHECK(d.feed(spm_byte(0xFF)) == kFffd);           // can never start a character: no waiting
  CHECK(d.feed(spm_byte(0xE2)).empty());
  CHECK(d.feed(spm_byte('a')) == kFffd + "a");      // the E2 was cut short by 'a'
  CHECK(d.feed(spm_byte(0xF0)).empty());
  CHECK(d.feed(spm_byte(0x9F)).empty());
  CHECK(d.flush() == kFffd);                        // one U+FFFD for the incomplete F0 9F
  CHECK(t.decode(std::vector<TokenId>{spm_byte(0xE2), spm_byte(0x82)}) == kFffd);
}

TEST_CASE("streaming: SentencePiece's dummy-prefix space is dropped once per sequence") {
  const Tokenizer& t = llama2_model_file();
  const auto ids = t.encode("Hello world", /*add_bos=*/true);
  StreamingDecoder d(t);
  std::string out;
  for (const TokenId id : ids) out += d.feed(id);
  CHECK(out + d.flush() == "Hello world");
  // After flush the decoder starts a new sequence.
  CHECK(d.feed(15043) == "Hello");
  CHECK(d.feed(15043) == " Hello");
}

TEST_CASE("ids out of range are errors") {
  const Tokenizer& t = llama3_json();
  CHECK_THROWS_AS(t.token_piece(-1), Error);
  CHECK_THROWS_AS(t.token_bytes(128256), Error);
  CHECK_THROWS_AS(t.decode(std::vector<TokenId>{5, 999999}), Error);
  StreamingDecoder d(llama2_model_file());
  CHECK_THROWS_AS(d.feed(32000), Error);
}

}  // namespace ternvk::test

#include "runtime/tokenizer/byte_level_bpe_tokenizer.h"

#include <queue>

#include "runtime/core/error.h"

namespace ternvk {

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(BpeVocab vocab, TokenizerMetadata metadata,
                                             const std::string& source)
    : Tokenizer(std::move(metadata)),
      regex_(vocab.pattern),
      ignore_merges_(vocab.ignore_merges),
      spellings_(std::move(vocab.tokens)),
      types_(std::move(vocab.types)) {
  if (types_.size() != spellings_.size()) {
    throw Error(source + ": " + std::to_string(spellings_.size()) + " tokens but " +
                std::to_string(types_.size()) + " token types");
  }
  bytes_.resize(spellings_.size());
  id_of_spelling_.reserve(spellings_.size());
  for (TokenId id = 0; id < vocab_size(); ++id) {
    id_of_spelling_.emplace(spellings_[id], id);  // on duplicates the lowest id wins
    if (types_[id] == TokenType::kNormal || types_[id] == TokenType::kByte) {
      auto raw = alphabet_.decode(spellings_[id]);
      if (!raw) {
        throw Error(source + ": token " + std::to_string(id) + " '" + spellings_[id] +
                    "' is not spelled in the byte-level BPE alphabet");
      }
      bytes_[id] = std::move(*raw);
    } else {
      bytes_[id] = spellings_[id];  // control / added tokens are stored as plain text
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = id_of_spelling_.find(alphabet_.spelling(static_cast<uint8_t>(b)));
    if (it == id_of_spelling_.end()) {
      throw Error(source + ": the vocabulary has no token for byte " + std::to_string(b) +
                  ", so some text could not be encoded (is this a byte-level BPE vocabulary?)");
    }
    byte_token_[b] = it->second;
  }
  merges_.reserve(vocab.merges.size());
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const auto& [left, right] = vocab.merges[rank];
    const auto l = id_of_spelling_.find(left);
    const auto r = id_of_spelling_.find(right);
    const auto m = id_of_spelling_.find(left + right);
    if (l == id_of_spelling_.end() || r == id_of_spelling_.end() || m == id_of_spelling_.end()) {
      throw Error(source + ": merge " + std::to_string(rank) + " '" + left + " " + right +
                  "' uses or makes a token that is not in the vocabulary");
    }
    // A repeated merge keeps its first (higher-priority) rank.
    merges_.emplace(pair_key(l->second, r->second),
                    Merge{static_cast<int32_t>(rank), m->second});
  }
  finish_setup(source);
}

std::string_view ByteLevelBpeTokenizer::token_piece(TokenId id) const {
  check_id(id);
  return spellings_[id];
}

std::string_view ByteLevelBpeTokenizer::token_bytes(TokenId id) const {
  check_id(id);
  return bytes_[id];
}

TokenType ByteLevelBpeTokenizer::token_type(TokenId id) const {
  check_id(id);
  return types_[id];
}

std::optional<TokenId> ByteLevelBpeTokenizer::find_token(std::string_view piece) const {
  const auto it = id_of_spelling_.find(std::string(piece));
  if (it == id_of_spelling_.end()) return std::nullopt;
  return it->second;
}

void ByteLevelBpeTokenizer::encode_plain(std::string_view text, std::vector<TokenId>& out) const {
  for (const std::string_view word : regex_.split(text)) {
    if (ignore_merges_) {
      // A control token never comes out of plain text, even if a word happens to spell one.
      const auto it = id_of_spelling_.find(alphabet_.encode(word));
      if (it != id_of_spelling_.end() && types_[it->second] != TokenType::kControl) {
        out.push_back(it->second);
        continue;
      }
    }
    merge_word(word, out);
  }
}

void ByteLevelBpeTokenizer::merge_word(std::string_view word, std::vector<TokenId>& out) const {
  // Symbols form a linked list over the word's bytes; a heap holds candidate merges ordered by
  // (rank, position). A candidate is stale once either side has changed, which is checked on pop.
  // This is O(n log n) per word, where rescanning for the best pair would be quadratic on long
  // words (a base64 blob or a run of digits-free symbols can be thousands of bytes).
  struct Symbol {
    TokenId id;
    int prev, next;  // -1: none
  };
  struct Candidate {
    int32_t rank;
    int left;
    TokenId left_id, right_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  const int n = static_cast<int>(word.size());
  std::vector<Symbol> symbols(n);
  for (int i = 0; i < n; ++i) {
    symbols[i] = {byte_token_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto consider = [&](int left) {
    if (left < 0 || symbols[left].next < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[l.next];
    const auto it = merges_.find(pair_key(l.id, r.id));
    if (it != merges_.end()) heap.push({it->second.rank, left, l.id, r.id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = symbols[c.left];
    if (l.id != c.left_id || l.next < 0 || symbols[l.next].id != c.right_id) continue;  // stale
    const int right = l.next;
    l.id = merges_.at(pair_key(c.left_id, c.right_id)).result;
    l.next = symbols[right].next;
    if (l.next >= 0) symbols[l.next].prev = c.left;
    symbols[right].id = -1;  // dead: never matches a candidate's id again
    consider(l.prev);
    consider(c.left);
  }
  for (int i = 0; i >= 0 && n > 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace ternvk

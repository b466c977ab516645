#include "runtime/tokenizer/hf_tokenizer_json.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/formats/json_input.h"
#include "runtime/tokenizer/byte_level_bpe_tokenizer.h"

namespace ternvk {
namespace {

using nlohmann::json;

// The largest tokenizer.json files (256k-token vocabularies) are a few tens of MiB.
constexpr uint64_t kMaxTokenizerJsonBytes = uint64_t{256} << 20;
constexpr uint64_t kMaxTokenizerConfigBytes = uint64_t{64} << 20;

// Errors name the file and the JSON path of the value: "<file>: model.vocab["x"] must be ...".
class Where {
 public:
  explicit Where(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }
  [[noreturn]] void fail(const std::string& path, const std::string& problem) const {
    throw Error(source_ + ": " + path + " " + problem);
  }
  // obj[key], or nullptr when it is absent or null.
  static const json* find(const json& obj, const char* key) {
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  const json& require(const json& obj, const char* key, const std::string& path) const {
    const json* v = find(obj, key);
    if (v == nullptr) fail(path, "is missing");
    return *v;
  }
  const json& object(const json& v, const std::string& path) const {
    if (!v.is_object()) fail(path, "must be an object, found " + json_preview(v));
    return v;
  }
  const json& array(const json& v, const std::string& path) const {
    if (!v.is_array()) fail(path, "must be an array, found " + json_preview(v));
    return v;
  }
  const std::string& string(const json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, "must be a string, found " + json_preview(v));
    return v.get_ref<const std::string&>();
  }
  bool boolean(const json& obj, const char* key, bool fallback, const std::string& path) const {
    const json* v = find(obj, key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) fail(path, "must be true or false, found " + json_preview(*v));
    return v->get<bool>();
  }
  // A token id that fits TokenId (its range against the vocabulary is checked once all are known).
  int64_t id(const json& v, const std::string& path) const {
    if (!v.is_number_integer()) fail(path, "must be an integer token id, found " + json_preview(v));
    if (!v.is_number_unsigned() && v.get<int64_t>() < 0) fail(path, "is a negative token id (" + json_preview(v) + ")");
    if (v.get<uint64_t>() > uint64_t(INT32_MAX)) fail(path, "is token id " + json_preview(v) + ", beyond any vocabulary");
    return v.get<int64_t>();
  }

 private:
  std::string source_;
};

// The single Split regex of the pre_tokenizer, with or without a Sequence around it.
std::string read_pattern(const json* pre, const Where& w) {
  const auto unsupported = [&](const std::string& what) {
    return Error(w.source() + ": pre_tokenizer " + what +
                 " is not supported (supported: Split(Regex, Isolated) followed by "
                 "ByteLevel(use_regex=false), or ByteLevel(use_regex=true))");
  };
  const auto type_of = [&](const json& step, const std::string& path) -> std::string {
    if (!step.is_object()) return "null";
    const json* t = Where::find(step, "type");
    return t ? w.string(*t, path + ".type") : "";
  };
  std::vector<std::pair<const json*, std::string>> steps;  // each step and its path
  if (pre != nullptr && type_of(*pre, "pre_tokenizer") == "Sequence") {
    const json& list = w.array(w.require(*pre, "pretokenizers", "pre_tokenizer.pretokenizers"),
                               "pre_tokenizer.pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) steps.emplace_back(&list[i], "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]");
  } else if (pre != nullptr) {
    steps.emplace_back(pre, "pre_tokenizer");
  }
  std::string pattern;
  for (const auto& [step, path] : steps) {
    const std::string type = type_of(*step, path);
    if (type == "Split") {
      const json* p = Where::find(*step, "pattern");
      const json* regex = p && p->is_object() ? Where::find(*p, "Regex") : nullptr;
      const json* behavior = Where::find(*step, "behavior");
      if (regex == nullptr || behavior == nullptr || !behavior->is_string() || *behavior != "Isolated" ||
          w.boolean(*step, "invert", false, path + ".invert")) {
        throw unsupported("Split other than {pattern: {Regex}, behavior: Isolated}");
      }
      if (!pattern.empty()) throw unsupported("with two Split steps");
      pattern = w.string(*regex, path + ".pattern.Regex");
      if (pattern.empty()) w.fail(path + ".pattern.Regex", "is empty");
    } else if (type == "ByteLevel") {
      if (w.boolean(*step, "add_prefix_space", false, path + ".add_prefix_space")) {
        throw unsupported("ByteLevel(add_prefix_space)");
      }
      if (w.boolean(*step, "use_regex", true, path + ".use_regex")) {
        if (!pattern.empty()) throw unsupported("Split + ByteLevel(use_regex=true)");
        pattern = kGpt2Pattern;
      }
    } else {
      throw unsupported("'" + type + "'");
    }
  }
  if (pattern.empty()) throw unsupported("without a regex");
  return pattern;
}

// "a b" (older files) or ["a", "b"] (tokenizers >= 0.20).
std::pair<std::string, std::string> read_merge(const json& merge, const std::string& path, const Where& w) {
  if (merge.is_array() && merge.size() == 2) {
    return {w.string(merge[0], path + "[0]"), w.string(merge[1], path + "[1]")};
  }
  if (merge.is_string()) {
    const std::string& text = merge.get_ref<const std::string&>();
    const size_t space = text.find(' ', 1);
    if (space != std::string::npos) return {text.substr(0, space), text.substr(space + 1)};
  }
  w.fail(path, "is " + json_preview(merge) + ", expected \"left right\" or [\"left\", \"right\"]");
}

// bos_token / eos_token are a string or an AddedToken object {"content": ...}.
std::optional<std::string> token_spelling(const json& config, const char* key, const Where& w) {
  const json* v = Where::find(config, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  if (v->is_object()) return w.string(w.require(*v, "content", std::string(key) + ".content"), std::string(key) + ".content");
  w.fail(key, "must be a token's text or an object with its \"content\", found " + json_preview(*v));
}

// chat_template is a string, or a list of {name, template} of which "default" is the chat one.
std::string chat_template_of(const json& config, const Where& w) {
  const json* t = Where::find(config, "chat_template");
  if (t == nullptr) return {};
  if (t->is_string()) return t->get<std::string>();
  const json& list = w.array(*t, "chat_template");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = "chat_template[" + std::to_string(i) + "]";
    const json& entry = w.object(list[i], path);
    const json* name = Where::find(entry, "name");
    if (name && w.string(*name, path + ".name") == "default") {
      return w.string(w.require(entry, "template", path + ".template"), path + ".template");
    }
  }
  return {};
}

// Ids may come from model.vocab or added_tokens; the vocabulary is as large as the largest. A file
// may leave a few ids undefined, but not so many that a tiny file could claim a huge vocabulary.
void check_id_range(int64_t max_id, const std::string& max_id_path, size_t defined, const Where& w) {
  const uint64_t limit = 2 * uint64_t(defined) + 1024;
  if (max_id < 0) w.fail("model.vocab", "is empty");
  if (uint64_t(max_id) >= limit) {
    w.fail(max_id_path, "is token id " + std::to_string(max_id) + ", far beyond the " + std::to_string(defined) +
                            " tokens the file defines (ids must stay below " + std::to_string(limit) + ")");
  }
}

std::unique_ptr<Tokenizer> tokenizer_from_json(const json& root, const Where& w,
                                               const std::optional<HfTokenizerConfig>& config) {
  w.object(root, "the top level");
  const json& model = w.object(w.require(root, "model", "model"), "model");
  const json* type = Where::find(model, "type");
  const std::string model_type = type ? w.string(*type, "model.type") : "";
  if (model_type != "BPE") {
    w.fail("model.type", "= '" + model_type +
                             "' is not supported; only byte-level BPE tokenizer.json files are (for "
                             "SentencePiece models load the tokenizer.model file instead)");
  }
  if (w.boolean(model, "byte_fallback", false, "model.byte_fallback")) {
    throw Error(w.source() + ": BPE with byte_fallback is a SentencePiece conversion; load the "
                "tokenizer.model file instead");
  }
  if (const json* normalizer = Where::find(root, "normalizer")) {
    const json* t = normalizer->is_object() ? Where::find(*normalizer, "type") : nullptr;
    throw Error(w.source() + ": normalizer " + (t ? json_preview(*t) : json_preview(*normalizer)) +
                " is not supported (byte-level BPE models have none)");
  }

  const json& vocab_json = w.object(w.require(model, "vocab", "model.vocab"), "model.vocab");
  static const json kNone = json::array();
  const json* added_json = Where::find(root, "added_tokens");
  const json& added = added_json ? w.array(*added_json, "added_tokens") : kNone;
  int64_t max_id = -1;
  std::string max_id_path;
  std::vector<std::pair<const std::string*, int64_t>> vocab_ids;
  vocab_ids.reserve(vocab_json.size());
  for (const auto& [spelling, id] : vocab_json.items()) {
    const std::string path = "model.vocab" + json_key(spelling);
    vocab_ids.emplace_back(&spelling, w.id(id, path));
    if (vocab_ids.back().second > max_id) max_id = vocab_ids.back().second, max_id_path = path;
  }
  struct Added {
    int64_t id;
    const std::string* content;
    bool special;
  };
  std::vector<Added> added_tokens;
  for (size_t i = 0; i < added.size(); ++i) {
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    const json& t = w.object(added[i], path);
    added_tokens.push_back({w.id(w.require(t, "id", path + ".id"), path + ".id"),
                            &w.string(w.require(t, "content", path + ".content"), path + ".content"),
                            w.boolean(t, "special", false, path + ".special")});
    if (added_tokens.back().id > max_id) max_id = added_tokens.back().id, max_id_path = path + ".id";
  }
  check_id_range(max_id, max_id_path, vocab_ids.size() + added_tokens.size(), w);

  BpeVocab vocab;
  vocab.tokens.resize(size_t(max_id) + 1);
  vocab.types.assign(size_t(max_id) + 1, TokenType::kUnused);
  for (const auto& [spelling, id] : vocab_ids) {
    vocab.tokens[size_t(id)] = *spelling;
    vocab.types[size_t(id)] = TokenType::kNormal;
  }
  for (const Added& t : added_tokens) {
    vocab.tokens[size_t(t.id)] = *t.content;
    vocab.types[size_t(t.id)] = t.special ? TokenType::kControl : TokenType::kUserDefined;
  }
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    // Ids that neither list defines: a placeholder no text can produce.
    if (vocab.types[i] == TokenType::kUnused) vocab.tokens[i] = "<unused_id_" + std::to_string(i) + ">";
  }
  const json& merges = w.array(w.require(model, "merges", "model.merges"), "model.merges");
  vocab.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    vocab.merges.push_back(read_merge(merges[i], "model.merges[" + std::to_string(i) + "]", w));
  }
  vocab.ignore_merges = w.boolean(model, "ignore_merges", false, "model.ignore_merges");
  vocab.pattern = read_pattern(Where::find(root, "pre_tokenizer"), w);

  // BOS/EOS by spelling: from tokenizer_config.json when it is there, else the usual names.
  TokenizerMetadata meta;
  const auto id_of = [&](std::initializer_list<std::string_view> names) -> std::optional<TokenId> {
    for (const auto name : names) {
      const auto it = std::find(vocab.tokens.begin(), vocab.tokens.end(), name);
      if (it != vocab.tokens.end()) return static_cast<TokenId>(it - vocab.tokens.begin());
    }
    return std::nullopt;
  };
  const std::optional<std::string> bos = config ? config->bos_token : std::nullopt;
  const std::optional<std::string> eos = config ? config->eos_token : std::nullopt;
  if (config) meta.chat_template = config->chat_template;
  meta.bos = bos ? id_of({*bos}) : id_of({"<|begin_of_text|>", "<s>"});
  meta.eos = eos ? id_of({*eos}) : id_of({"<|end_of_text|>", "</s>", "<|endoftext|>"});
  // End of turn: the chat formats' own marker, else the end of text.
  meta.eot = id_of({"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"});
  if (!meta.eot) meta.eot = meta.eos;
  try {
    return std::make_unique<ByteLevelBpeTokenizer>(std::move(vocab), std::move(meta), w.source());
  } catch (const Error& e) {
    // Some checks (the pre-tokenizer regex) do not know the file; every error must name it.
    if (std::string_view(e.what()).starts_with(w.source())) throw;
    throw Error(w.source() + ": " + e.what());
  }
}

HfTokenizerConfig config_from_json(const json& root, const Where& w) {
  w.object(root, "the top level");
  return {token_spelling(root, "bos_token", w), token_spelling(root, "eos_token", w), chat_template_of(root, w)};
}

HfTokenizerConfig read_tokenizer_config(const std::filesystem::path& path) {
  return config_from_json(read_json_file(path, kMaxTokenizerConfigBytes), Where(path.string()));
}

}  // namespace

HfTokenizerConfig parse_hf_tokenizer_config(std::string_view text, const std::string& source) {
  return config_from_json(parse_json_text(text, source), Where(source));
}

std::unique_ptr<Tokenizer> parse_hf_tokenizer_json(std::string_view text, const std::string& source,
                                                   const std::optional<HfTokenizerConfig>& config) {
  return tokenizer_from_json(parse_json_text(text, source), Where(source), config);
}

std::string read_chat_template(const std::filesystem::path& tokenizer_config_json) {
  return read_tokenizer_config(tokenizer_config_json).chat_template;
}

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::filesystem::path& path) {
  const json root = read_json_file(path, kMaxTokenizerJsonBytes);
  std::optional<HfTokenizerConfig> config;
  const auto config_path = path.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(config_path, ec)) config = read_tokenizer_config(config_path);
  return tokenizer_from_json(root, Where(path.string()), config);
}

}  // namespace ternvk

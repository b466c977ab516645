#include "runtime/tokenizer/hf_tokenizer_json.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/tokenizer/byte_level_bpe_tokenizer.h"

namespace ternvk {
namespace {

using nlohmann::json;

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(path.string() + ": not valid JSON (" + e.what() + ")");
  }
}

// The single Split regex of the pre_tokenizer, with or without a Sequence around it.
std::string read_pattern(const json& pre, const std::string& where) {
  const auto unsupported = [&](const std::string& what) {
    return Error(where + ": pre_tokenizer " + what +
                 " is not supported (supported: Split(Regex, Isolated) followed by "
                 "ByteLevel(use_regex=false), or ByteLevel(use_regex=true))");
  };
  std::vector<json> steps;
  if (pre.is_object() && pre.value("type", "") == "Sequence") {
    for (const auto& step : pre.at("pretokenizers")) steps.push_back(step);
  } else {
    steps.push_back(pre);
  }
  std::string pattern;
  for (const auto& step : steps) {
    const std::string type = step.is_object() ? step.value("type", "") : "null";
    if (type == "Split") {
      if (!step.contains("pattern") || !step["pattern"].contains("Regex") ||
          step.value("behavior", "") != "Isolated" || step.value("invert", false)) {
        throw unsupported("Split other than {pattern: {Regex}, behavior: Isolated}");
      }
      if (!pattern.empty()) throw unsupported("with two Split steps");
      pattern = step["pattern"]["Regex"].get<std::string>();
    } else if (type == "ByteLevel") {
      if (step.value("add_prefix_space", false)) throw unsupported("ByteLevel(add_prefix_space)");
      if (step.value("use_regex", true)) {
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
std::pair<std::string, std::string> read_merge(const json& merge, size_t index,
                                               const std::string& where) {
  if (merge.is_array() && merge.size() == 2) return {merge[0], merge[1]};
  if (merge.is_string()) {
    const std::string text = merge;
    const size_t space = text.find(' ', 1);
    if (space != std::string::npos) return {text.substr(0, space), text.substr(space + 1)};
  }
  throw Error(where + ": model.merges[" + std::to_string(index) + "] is " + merge.dump() +
              ", expected \"left right\" or [\"left\", \"right\"]");
}

// bos_token / eos_token are a string or an AddedToken object {"content": ...}.
std::optional<std::string> token_spelling(const json& config, const char* key) {
  if (!config.contains(key) || config[key].is_null()) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v["content"].get<std::string>();
  return std::nullopt;
}

// chat_template is a string, or a list of {name, template} of which "default" is the chat one.
std::string chat_template_of(const json& config) {
  if (!config.contains("chat_template")) return {};
  const json& t = config["chat_template"];
  if (t.is_string()) return t;
  if (t.is_array()) {
    for (const auto& entry : t) {
      if (entry.value("name", "") == "default") return entry.value("template", "");
    }
  }
  return {};
}

}  // namespace

std::string read_chat_template(const std::filesystem::path& tokenizer_config_json) {
  return chat_template_of(read_json(tokenizer_config_json));
}

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::filesystem::path& path) {
  const std::string where = path.string();
  const json root = read_json(path);
  try {
    const json& model = root.at("model");
    if (model.value("type", "") != "BPE") {
      throw Error(where + ": model.type = '" + model.value("type", "?") +
                  "' is not supported; only byte-level BPE tokenizer.json files are (for "
                  "SentencePiece models load the tokenizer.model file instead)");
    }
    if (model.value("byte_fallback", false)) {
      throw Error(where + ": BPE with byte_fallback is a SentencePiece conversion; load the "
                  "tokenizer.model file instead");
    }
    if (root.contains("normalizer") && !root["normalizer"].is_null()) {
      throw Error(where + ": normalizer '" + root["normalizer"].value("type", "?") +
                  "' is not supported (byte-level BPE models have none)");
    }

    // Ids may come from model.vocab or added_tokens; the vocabulary is as large as the largest.
    const json& vocab_json = model.at("vocab");
    const json empty = json::array();
    const json& added = root.contains("added_tokens") ? root["added_tokens"] : empty;
    int64_t max_id = -1;
    for (const auto& [spelling, id] : vocab_json.items()) max_id = std::max<int64_t>(max_id, id);
    for (const auto& t : added) max_id = std::max<int64_t>(max_id, t.at("id").get<int64_t>());
    if (max_id < 0 || max_id > (int64_t{1} << 30)) {
      throw Error(where + ": model.vocab is empty or its ids are implausible (max id " +
                  std::to_string(max_id) + ")");
    }
    BpeVocab vocab;
    vocab.tokens.resize(max_id + 1);
    vocab.types.assign(max_id + 1, TokenType::kUnused);
    for (const auto& [spelling, id] : vocab_json.items()) {
      const int64_t i = id.get<int64_t>();
      if (i < 0) throw Error(where + ": model.vocab['" + spelling + "'] has negative id");
      vocab.tokens[i] = spelling;
      vocab.types[i] = TokenType::kNormal;
    }
    for (const auto& t : added) {
      const int64_t i = t.at("id").get<int64_t>();
      if (i < 0) throw Error(where + ": added_tokens has a negative id");
      vocab.tokens[i] = t.at("content").get<std::string>();
      vocab.types[i] = t.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
    }
    for (size_t i = 0; i < vocab.tokens.size(); ++i) {
      // Ids that neither list defines: a placeholder no text can produce.
      if (vocab.types[i] == TokenType::kUnused) {
        vocab.tokens[i] = "<unused_id_" + std::to_string(i) + ">";
      }
    }
    const json& merges = model.at("merges");
    vocab.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      vocab.merges.push_back(read_merge(merges[i], i, where));
    }
    vocab.ignore_merges = model.value("ignore_merges", false);
    vocab.pattern = read_pattern(root.value("pre_tokenizer", json()), where);

    // BOS/EOS by spelling: from tokenizer_config.json when it is there, else the usual names.
    TokenizerMetadata meta;
    std::optional<std::string> bos, eos;
    const auto config_path = path.parent_path() / "tokenizer_config.json";
    if (std::filesystem::exists(config_path)) {
      const json config = read_json(config_path);
      bos = token_spelling(config, "bos_token");
      eos = token_spelling(config, "eos_token");
      meta.chat_template = chat_template_of(config);
    }
    const auto id_of = [&](std::initializer_list<std::string_view> names) -> std::optional<TokenId> {
      for (const auto name : names) {
        const auto it = std::find(vocab.tokens.begin(), vocab.tokens.end(), name);
        if (it != vocab.tokens.end()) return static_cast<TokenId>(it - vocab.tokens.begin());
      }
      return std::nullopt;
    };
    meta.bos = bos ? id_of({*bos}) : id_of({"<|begin_of_text|>", "<s>"});
    meta.eos = eos ? id_of({*eos}) : id_of({"<|end_of_text|>", "</s>", "<|endoftext|>"});
    // End of turn: the chat formats' own marker, else the end of text.
    meta.eot = id_of({"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"});
    if (!meta.eot) meta.eot = meta.eos;
    return std::make_unique<ByteLevelBpeTokenizer>(std::move(vocab), std::move(meta), where);
  } catch (const json::exception& e) {
    throw Error(where + ": unexpected tokenizer.json structure (" + e.what() + ")");
  }
}

}  // namespace ternvk

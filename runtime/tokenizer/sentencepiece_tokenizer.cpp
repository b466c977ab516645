#include "runtime/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>

#include "runtime/core/error.h"
#include "runtime/tokenizer/hf_tokenizer_json.h"
#include "runtime/tokenizer/protobuf_wire.h"
#include "runtime/tokenizer/spm_model_proto.h"

namespace ternvk {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's space
// What sentencepiece prints for <unk> (TrainerSpec.unk_surface default, U+2047 "⁇").
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";

// "<0x0A>" -> "\n"; nullopt when the piece is not in that form.
std::optional<char> parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    const int digit = (c >= '0' && c <= '9')   ? c - '0'
                      : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                      : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                               : -1;
    if (digit < 0) return std::nullopt;
    value = value * 16 + digit;
  }
  return static_cast<char>(value);
}

std::string unescape_spaces(std::string_view piece) {
  std::string out;
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.substr(pos, kSpaceMarker.size()) == kSpaceMarker) {
      out.push_back(' ');
      pos += kSpaceMarker.size();
    } else {
      out.push_back(piece[pos++]);
    }
  }
  return out;
}

// The normalizer's add_dummy_prefix, read from the serialized model (the processor does not expose
// it). proto2 default: true.
bool read_add_dummy_prefix(std::string_view model) {
  const auto normalizer = protobuf::find_bytes(model, spm_proto::kNormalizerSpec);
  if (!normalizer) return true;
  return protobuf::find_varint(*normalizer, spm_proto::kAddDummyPrefix).value_or(1) != 0;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(std::string_view serialized_model,
                                               TokenizerMetadata metadata,
                                               const std::string& source)
    : Tokenizer(std::move(metadata)),
      processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()),
      source_(source) {
  const auto status = processor_->LoadFromSerializedProto(
      absl::string_view(serialized_model.data(), serialized_model.size()));
  if (!status.ok()) {
    throw Error(source + ": not a usable SentencePiece model (" + status.ToString() + ")");
  }
  adds_dummy_prefix_ = read_add_dummy_prefix(serialized_model);
  const int n = processor_->GetPieceSize();
  bytes_.resize(n);
  types_.resize(n);
  for (int id = 0; id < n; ++id) {
    const std::string& piece = processor_->IdToPiece(id);
    if (processor_->IsByte(id)) {
      const auto byte = parse_byte_piece(piece);
      if (!byte) throw Error(source + ": byte token " + std::to_string(id) + " is spelled '" +
                             piece + "', expected the form <0xAB>");
      types_[id] = TokenType::kByte;
      bytes_[id] = std::string(1, *byte);
    } else if (processor_->IsUnknown(id)) {
      types_[id] = TokenType::kUnknown;
      bytes_[id] = kUnknownSurface;
    } else if (processor_->IsControl(id)) {
      types_[id] = TokenType::kControl;
      bytes_[id] = piece;
    } else {
      types_[id] = processor_->IsUnused(id) ? TokenType::kUnused : TokenType::kNormal;
      bytes_[id] = unescape_spaces(piece);
    }
  }
  const auto id_or_none = [](int id) { return id >= 0 ? std::optional<TokenId>(id) : std::nullopt; };
  fill_missing_ids(id_or_none(processor_->bos_id()), id_or_none(processor_->eos_id()));
  finish_setup(source);
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

int32_t SentencePieceTokenizer::vocab_size() const { return static_cast<int32_t>(types_.size()); }

std::string_view SentencePieceTokenizer::token_piece(TokenId id) const {
  check_id(id);
  return processor_->IdToPiece(id);
}

std::string_view SentencePieceTokenizer::token_bytes(TokenId id) const {
  check_id(id);
  return bytes_[id];
}

TokenType SentencePieceTokenizer::token_type(TokenId id) const {
  check_id(id);
  return types_[id];
}

std::optional<TokenId> SentencePieceTokenizer::find_token(std::string_view piece) const {
  const int id = processor_->PieceToId(absl::string_view(piece.data(), piece.size()));
  // PieceToId answers unk_id for unknown pieces: only trust it if the spelling really matches.
  if (id < 0 || processor_->IdToPiece(id) != piece) return std::nullopt;
  return id;
}

void SentencePieceTokenizer::encode_plain(std::string_view text, std::vector<TokenId>& out) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(absl::string_view(text.data(), text.size()), &ids);
  if (!status.ok()) throw Error(source_ + ": SentencePiece failed to encode: " + status.ToString());
  out.insert(out.end(), ids.begin(), ids.end());
}

std::unique_ptr<Tokenizer> load_sentencepiece_model_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open the SentencePiece model file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  TokenizerMetadata meta;
  const auto config_path = path.parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) meta.chat_template = read_chat_template(config_path);
  return std::make_unique<SentencePieceTokenizer>(bytes.str(), std::move(meta), path.string());
}

}  // namespace ternvk

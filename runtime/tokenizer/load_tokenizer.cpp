// The factories declared in tokenizer.h: pick the loader from the GGUF key or the file name.
#include <fstream>

#include "runtime/core/error.h"
#include "runtime/tokenizer/gguf_tokenizer.h"
#include "runtime/tokenizer/hf_tokenizer_json.h"
#include "runtime/tokenizer/sentencepiece_tokenizer.h"
#include "runtime/tokenizer/tokenizer.h"

namespace ternvk {

std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GgufFile& gguf) {
  return load_gguf_tokenizer(gguf);
}

std::unique_ptr<Tokenizer> load_tokenizer_from_files(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
      if (fs::exists(path / name)) return load_tokenizer_from_files(path / name);
    }
    throw Error(path.string() + ": no tokenizer.json or tokenizer.model in this directory");
  }
  if (!fs::exists(path)) throw Error(path.string() + ": no such tokenizer file");
  if (path.extension() == ".json") return load_hf_tokenizer_json(path);
  if (path.extension() == ".model") return load_sentencepiece_model_file(path);
  throw Error(path.string() +
              ": unknown tokenizer file type; expected a SentencePiece .model or a Hugging Face "
              "tokenizer.json (or a directory holding one)");
}

}  // namespace ternvk

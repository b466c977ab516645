// `ternvk tokenize`: the ids and pieces a model's tokenizer gives for a text (like llama-tokenize).
#include <cstdio>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "runtime/engine/model_source.h"

namespace ternvk::cli {

Action add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Print the tokens of a text under a model's tokenizer");
  struct Opts { std::string model, prompt; bool no_bos = false, special = false, ids_only = false; };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model, "GGUF file, HF folder, tokenizer.model or tokenizer.json");
  cmd->add_option("-p,--prompt", o->prompt, "Text to tokenize")->required();
  cmd->add_flag("--no-bos", o->no_bos, "Do not add the BOS token");
  cmd->add_flag("--parse-special", o->special, "Recognise special tokens written in the text");
  cmd->add_flag("--ids", o->ids_only, "Print only the ids, space separated");
  return [o] {
    const std::string path = o->model.empty() ? default_model_path() : o->model;
    std::unique_ptr<Tokenizer> tok;
    if (path.ends_with(".model") || path.ends_with(".json")) tok = load_tokenizer_from_files(path);
    else tok = open_model(path)->tokenizer();
    auto ids = tok->encode(o->prompt, !o->no_bos && tok->bos().has_value(), o->special);
    if (o->ids_only) {
      for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", int(ids[i]));
      std::printf("\n");
    } else {
      for (auto id : ids) std::printf("%6d -> '%s'\n", int(id), std::string(tok->token_piece(id)).c_str());
    }
    return 0;
  };
}

}  // namespace ternvk::cli

// `ternvk perplexity`: perplexity of a model over a text file (like llama-perplexity).
// The text is tokenized once and scored in windows of --ctx tokens moved by --stride: every token
// is predicted from at least (ctx - stride) tokens of context, except in the first window.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "apps/ternvk/model_flags.h"
#include "runtime/engine/perplexity.h"

namespace ternvk::cli {

Action add_perplexity_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("perplexity", "Perplexity of a model over a text file");
  struct Opts { ModelFlags model; std::string file; int window = 0, stride = 0; bool bos = true;
                uint64_t offset = 0, length = 0; };
  auto o = std::make_shared<Opts>();
  o->model.add(*cmd);
  cmd->add_option("-f,--file", o->file, "Text file to score")->required();
  cmd->add_option("--window", o->window, "Tokens per window (default: the context)");
  cmd->add_option("--stride", o->stride, "Tokens between window starts (default: the window: no overlap)");
  cmd->add_option("--byte-offset", o->offset, "Score the file from this byte");
  cmd->add_option("--byte-length", o->length, "Score this many bytes (0: to the end)");
  cmd->add_flag("!--no-bos", o->bos, "Do not start each window with BOS");
  return [o] {
    std::ifstream in(o->file, std::ios::binary);
    if (!in) throw ternvk::Error(o->file + ": cannot open the text file");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    if (o->offset > text.size()) throw ternvk::Error(o->file + ": --byte-offset is past the end of the file");
    text = text.substr(o->offset, o->length ? o->length : std::string::npos);
    Instance instance;
    const auto loaded = load_engine(instance, o->model.model_path(), o->model.engine_options(int(instance.devices().size())));
    Engine& engine = *loaded;
    PerplexityOptions po{.window = o->window, .stride = o->stride, .bos = o->bos};
    auto result = compute_perplexity(engine, text, po, [](int done, int total, double running) {
      std::fprintf(stderr, "\r[%d/%d] running perplexity %.4f", done, total, running);
      std::fflush(stderr);
    });
    std::fprintf(stderr, "\n");
    std::printf("perplexity: %.4f over %lld tokens (window %d, stride %d, %s) on %s\n", result.perplexity,
                (long long)result.scored_tokens, result.window, result.stride, o->bos ? "BOS" : "no BOS",
                engine.device().info().name.c_str());
    return 0;
  };
}

}  // namespace ternvk::cli

// `ternvk run`: generate text from a prompt, streamed, then report speed and GPU memory.
#include <cstdio>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "apps/ternvk/model_flags.h"
#include "runtime/tokenizer/streaming_decoder.h"

namespace ternvk::cli {

namespace {
constexpr const char* kDefaultPrompt = "ROMEO:\n";
}

Action add_run_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt");
  struct Opts { ModelFlags model; SamplingFlags sampling; std::optional<std::string> prompt; bool quiet = false; };
  auto o = std::make_shared<Opts>();
  o->model.add(*cmd);
  add_greedy_chain_flag(*cmd, o->model.greedy_chain);
  o->sampling.add(*cmd);
  cmd->add_option("-p,--prompt", o->prompt, std::string("Prompt text (default: \"") + "ROMEO:\\n\")");
  cmd->add_flag("--no-stats", o->quiet, "Do not print the speed and memory line");
  return [o] {
    const std::string prompt = o->prompt.value_or(kDefaultPrompt);
    if (prompt.empty()) throw ternvk::Error("the prompt is empty (-p): give some text to continue");
    Instance instance;
    const auto loaded = load_engine(instance, o->model.model_path(), o->model.engine_options(int(instance.devices().size())));
    Engine& engine = *loaded;
    Tokenizer& tok = engine.tokenizer();
    auto ids = Engine::ids(tok.encode(prompt, tok.bos().has_value()));
    if (int(ids.size()) >= engine.context())
      throw ternvk::Error("the prompt is " + std::to_string(ids.size()) + " tokens, which does not fit the context of " +
                  std::to_string(engine.context()) + " tokens (-c)");
    Sampler sampler(o->sampling.resolved());
    StreamingDecoder decoder(tok);
    std::string output;
    std::printf("%s", prompt.c_str());
    std::fflush(stdout);
    const auto& stops = o->sampling.stop;
    auto stats = engine.generate(ids, o->sampling.n_predict, sampler, [&](uint32_t id) {
      std::string piece = decoder.feed(id);
      output += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      for (const auto& s : stops)
        if (!s.empty() && output.find(s) != std::string::npos) return false;
      return true;
    });
    std::string tail = decoder.flush();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::printf("\n");
    if (!o->quiet)
      std::fprintf(stderr,
                   "\n[%s] prompt: %d tokens, %.1f tokens/s | generated: %d tokens, %.1f tokens/s (%s) | peak GPU "
                   "memory %.1f MiB\n",
                   engine.device().info().name.c_str(), stats.prompt_tokens, stats.prompt_tokens_per_second(),
                   stats.generated_tokens, stats.decode_tokens_per_second(), stats.stop_reason.c_str(),
                   engine.peak_gpu_bytes() / 1048576.0);
    // Under the GPU plan the chained layers are a choice (measured under auto on GPUs): say what it was.
    if (!o->quiet && engine.stage().plan() == ExecutionPlan::Gpu)
      std::fprintf(stderr, "layers chained %s\nmatrix splits %s\n", engine.layer_chain_note().c_str(),
                   engine.matrix_split_note().c_str());
    if (const int redos = engine.chain_redos())
      std::fprintf(stderr, "--chain-layers: a chained wait timed out on this device (%d step%s redone with barriers); "
                           "the layers ran unchained from then on\n", redos, redos == 1 ? "" : "s");
    return 0;
  };
}

}  // namespace ternvk::cli

// `ternvk chat`: an interactive terminal chat with history and the model's chat template.
// Ctrl-C stops the current answer; at the prompt it (or Ctrl-D, or /quit) ends the chat.
// In chat formats whose turn markers are plain text, a line that holds one is refused (it would
// open a turn of its own): the chat says why and asks again, the conversation as it was.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"
#include "apps/ternvk/model_flags.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/streaming_decoder.h"

namespace ternvk::cli {
namespace {

std::atomic<Engine*> g_generating{nullptr};

void on_sigint(int) {
  if (Engine* e = g_generating.load()) e->cancel();
  else std::_Exit(130);
}

}  // namespace

Action add_chat_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "Chat with a model in the terminal");
  struct Opts { ModelFlags model; SamplingFlags sampling; std::string system; };
  auto o = std::make_shared<Opts>();
  o->model.add(*cmd);
  add_greedy_chain_flag(*cmd, o->model.greedy_chain);
  o->sampling.add(*cmd);
  o->sampling.n_predict = 256;
  cmd->add_option("--system", o->system, "System prompt");
  return [o] {
    Instance instance;
    const auto loaded = load_engine(instance, o->model.model_path(), o->model.engine_options(int(instance.devices().size())));
    Engine& engine = *loaded;
    Tokenizer& tok = engine.tokenizer();
    const ChatFormat format = detect_chat_format(tok, engine.config().arch_name);
    Sampler sampler(o->sampling.resolved());
    std::vector<ChatMessage> messages;
    if (!o->system.empty()) messages.push_back({"system", o->system});
    if (auto m = find_turn_marker(format, messages)) throw Error(describe_turn_marker(format, *m, "--system"));
    std::signal(SIGINT, on_sigint);
    std::fprintf(stderr, "ternvk chat on %s (%s template). Ctrl-C stops an answer; Ctrl-D or /quit ends.\n",
                 engine.device().info().name.c_str(), std::string(chat_format_name(format)).c_str());
    std::string line;
    while (true) {
      std::printf("\n> ");
      std::fflush(stdout);
      if (!std::getline(std::cin, line) || line == "/quit") break;
      if (line.empty()) continue;
      const ChatMessage next{"user", line};
      if (auto m = find_turn_marker(format, std::span(&next, 1))) {
        std::fprintf(stderr, "ternvk chat: not sent: %s\n", describe_turn_marker(format, *m, "the message").c_str());
        continue;
      }
      messages.push_back(next);
      auto prompt = Engine::ids(encode_chat(tok, render_chat(format, messages, chat_special_tokens(tok))));
      if (int(prompt.size()) + 1 >= engine.context()) {
        std::fprintf(stderr, "the conversation no longer fits the context of %d tokens; keeping only the last message\n",
                     engine.context());
        messages.erase(messages.begin() + (o->system.empty() ? 0 : 1), messages.end() - 1);
        prompt = Engine::ids(encode_chat(tok, render_chat(format, messages, chat_special_tokens(tok))));
        if (int(prompt.size()) + 1 >= engine.context()) {
          std::fprintf(stderr, "that message alone is %zu tokens, more than the context of %d (-c)\n", prompt.size(),
                       engine.context());
          messages.pop_back();
          continue;
        }
      }
      // Reuse the KV cache for the part of the conversation it already holds.
      const auto& cached = engine.sequence();
      size_t common = 0;
      while (common < cached.size() && common + 1 < prompt.size() && cached[common] == prompt[common]) ++common;
      engine.truncate(int(common));
      std::vector<uint32_t> fresh(prompt.begin() + long(common), prompt.end());
      StreamingDecoder decoder(tok);
      std::string answer;
      g_generating = &engine;
      auto stats = engine.generate(fresh, o->sampling.n_predict, sampler, [&](uint32_t id) {
        std::string piece = decoder.feed(id);
        answer += piece;
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        for (const auto& s : o->sampling.stop)
          if (!s.empty() && answer.find(s) != std::string::npos) return false;
        return true;
      });
      g_generating = nullptr;
      answer += decoder.flush();
      std::printf("\n");
      if (stats.stop_reason == "cancelled") std::fprintf(stderr, "[stopped]\n");
      messages.push_back({"assistant", answer});
    }
    std::signal(SIGINT, SIG_DFL);
    return 0;
  };
}

}  // namespace ternvk::cli

// ternvk: run BitNet b1.58 ternary LLMs on any GPU through Vulkan.
#include <cstdio>
#include <exception>
#include <vector>

#include "apps/ternvk/commands.h"
#include "apps/ternvk/model_flags.h"
#include "runtime/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"ternvk: BitNet b1.58 ternary LLMs on any Vulkan GPU"};
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, ternvk::cli::Action>> actions;
  auto add = [&](ternvk::cli::Action (*add_command)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    auto action = add_command(app);
    actions.emplace_back(app.get_subcommands({})[before], std::move(action));
  };
  add(ternvk::cli::add_run_command);
  add(ternvk::cli::add_chat_command);
  add(ternvk::cli::add_info_command);
  add(ternvk::cli::add_devices_command);
  add(ternvk::cli::add_tokenize_command);
  add(ternvk::cli::add_perplexity_command);
  add(ternvk::cli::add_bench_command);
  add(ternvk::cli::add_batched_bench_command);
  add(ternvk::cli::add_profile_command);
  add(ternvk::cli::add_serve_command);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [cmd, action] : actions)
      if (cmd->parsed()) return action();
  } catch (const ternvk::cli::Interrupted& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "ternvk: %s\n", e.what());
    return e.exit_code();  // as a shell reports a process stopped by the signal
  } catch (const ternvk::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "ternvk: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "ternvk: unexpected error: %s\n", e.what());
    return 2;
  }
  return 0;
}

// Each `ternvk` subcommand registers its flags on the CLI11 app and runs when chosen.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>

namespace ternvk::cli {

// A subcommand's work; returns the process exit code. Runs only if the subcommand was chosen.
using Action = std::function<int()>;

Action add_devices_command(CLI::App& app);
Action add_info_command(CLI::App& app);
Action add_tokenize_command(CLI::App& app);
Action add_run_command(CLI::App& app);
Action add_chat_command(CLI::App& app);
Action add_perplexity_command(CLI::App& app);
Action add_bench_command(CLI::App& app);
Action add_batched_bench_command(CLI::App& app);
Action add_profile_command(CLI::App& app);
Action add_serve_command(CLI::App& app);

// The model that ships in the repo, used when -m is not given.
std::string default_model_path();

// --device N, shared by every command that runs a model.
void add_device_flag(CLI::App& cmd, std::optional<int>& device);

}  // namespace ternvk::cli

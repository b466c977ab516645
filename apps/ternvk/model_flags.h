// Flags shared by the commands that load a model and generate (llama.cpp spellings).
#pragma once
#include <CLI/CLI.hpp>
#include <signal.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/common/placement_flags.h"
#include "runtime/core/error.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"

namespace ternvk::cli {

struct ModelFlags {
  std::string model;
  std::optional<int> device;
  int context = 0;
  int batch = 64;
  std::string dot = "auto";
  std::string devices;  // "I,J,..." or "all": a pipeline of stages, one per entry
  std::string split = "auto";
  std::string head = "f16";  // output head precision: f16 or int8
  std::string plan = "auto";  // forward pass: auto, gpu or cpu
  std::string fold_attention = "auto";  // GPU plan: the attention inside qkv at short contexts (auto, on, off)
  std::string chain_layers = "auto";  // GPU plan: one-token steps' fused dispatches chained (auto, on, off, measure)
  std::string matrix_splits = "auto";  // GPU plan: the fused matrices' split rule (auto, rule, measure)
  int greedy_chain = EngineOptions{}.greedy_chain;  // a flag of the commands that generate (run, chat)
  void add(CLI::App& cmd);
  EngineOptions engine_options(int device_count) const;
  std::string model_path() const;
};

struct SamplingFlags {
  SamplingParams params;
  int n_predict = 128;
  std::vector<std::string> stop;
  bool greedy = false;
  void add(CLI::App& cmd);
  SamplingParams resolved() const;
};

// Adds `--head f16|int8` (the output head's precision on the GPU) to a command.
void add_head_flag(CLI::App& cmd, std::string& head);
HeadPrecision parse_head(const std::string& head);
// Adds `--plan auto|gpu|cpu` (which forward pass the stages record; ExecutionPlan).
void add_plan_flag(CLI::App& cmd, std::string& plan);
ExecutionPlan parse_plan(const std::string& plan);
// Adds `--fold-attention auto|on|off` (EngineOptions::fold_attention).
void add_fold_attention_flag(CLI::App& cmd, std::string& fold);
std::optional<bool> parse_fold_attention(const std::string& fold);
// Adds `--chain-layers auto|on|off|measure` (EngineOptions::chain_layers).
void add_chain_layers_flag(CLI::App& cmd, std::string& chain);
LayerChain parse_layer_chain(const std::string& chain);
// Adds `--matrix-splits auto|rule|measure` (EngineOptions::matrix_splits).
void add_matrix_splits_flag(CLI::App& cmd, std::string& splits);
MatrixSplits parse_matrix_splits(const std::string& splits);
// Parses a `--gemm-units` value: auto, vector or matrix (EngineOptions::gemm_units).
ops::GemmUnits parse_gemm_units(const std::string& units);
// Adds `--greedy-chain N` (EngineOptions::greedy_chain: greedy steps a submit, chained on the GPU).
void add_greedy_chain_flag(CLI::App& cmd, int& steps);

// Prints a loading progress line on stderr (only when stderr is a terminal).
std::function<void(int, int)> progress_printer();

// Thrown when a signal stops a model load; main() exits with exit_code(): 128 + the signal, as a
// shell reports a process the signal stopped (130 for Ctrl-C).
class Interrupted : public Error {
 public:
  Interrupted(const std::string& message, int exit_code) : Error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// Loads a model with Ctrl-C handled: SIGINT during the load stops it at its next layer (freeing
// what was uploaded) and throws Interrupted; before and after, SIGINT does what it did.
// `blocked`: for a command that keeps its stop signals blocked in every thread and takes them with
// sigtimedwait (serve), where a handler would never run: a thread takes these signals during the
// load instead, and any of them stops it (SIGINT as Ctrl-C, SIGTERM as a stop request). One that
// arrives after the load stays pending for the command.
// Test hook: TERNVK_TEST_PAUSE_LOAD=N holds the load after its Nth layer until a signal arrives
// (at most a minute), so a test can interrupt a load however fast the machine loads.
std::unique_ptr<Engine> load_engine(Instance& instance, const std::string& model, EngineOptions options,
                                    const sigset_t* blocked = nullptr);

}  // namespace ternvk::cli

// Flags shared by the commands that load a model and generate (llama.cpp spellings).
#pragma once
#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "apps/common/placement_flags.h"
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

// Prints a loading progress line on stderr (only when stderr is a terminal).
std::function<void(int, int)> progress_printer();

}  // namespace ternvk::cli

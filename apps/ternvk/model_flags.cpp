#include "apps/ternvk/model_flags.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

#include "apps/ternvk/commands.h"
#include "runtime/core/error.h"

namespace ternvk::cli {

namespace {

// The signal that stopped the load (0: none). Lock-free, so the SIGINT handler may set it too.
std::atomic<int> g_load_signal{0};

void on_sigint_while_loading(int) { g_load_signal = SIGINT; }

[[noreturn]] void throw_interrupted(int signal) {
  if (signal == SIGINT) throw Interrupted("interrupted (Ctrl-C) while loading the model; nothing was run", 128 + signal);
  throw Interrupted("stopped by " + std::string(signal == SIGTERM ? "SIGTERM" : "signal " + std::to_string(signal)) +
                        " while loading the model; nothing was run",
                    128 + signal);
}

// While it lives, SIGINT runs on_sigint_while_loading; then the previous disposition is back.
class SigintHandler {
 public:
  SigintHandler() {
    struct sigaction on_interrupt {};
    on_interrupt.sa_handler = on_sigint_while_loading;
    sigemptyset(&on_interrupt.sa_mask);
    sigaction(SIGINT, &on_interrupt, &previous_);
  }
  ~SigintHandler() { sigaction(SIGINT, &previous_, nullptr); }
  SigintHandler(const SigintHandler&) = delete;
  SigintHandler& operator=(const SigintHandler&) = delete;

 private:
  struct sigaction previous_ {};
};

// While it lives, a thread takes `signals` (blocked in every thread, so no handler could) and
// notes the first; the rest stay pending.
class BlockedSignalWatch {
 public:
  explicit BlockedSignalWatch(const sigset_t& signals) : signals_(signals), thread_([this] { watch(); }) {}
  ~BlockedSignalWatch() {
    done_ = true;
    thread_.join();
  }
  BlockedSignalWatch(const BlockedSignalWatch&) = delete;
  BlockedSignalWatch& operator=(const BlockedSignalWatch&) = delete;

 private:
  void watch() {
    const timespec tick{0, 20'000'000};
    while (!done_ && g_load_signal == 0) {
      const int signal = sigtimedwait(&signals_, nullptr, &tick);
      if (signal > 0) g_load_signal = signal;
    }
  }
  sigset_t signals_;
  std::atomic<bool> done_{false};
  std::thread thread_;  // last: starts once the rest exists
};

// TERNVK_TEST_PAUSE_LOAD: after this many layers, wait for the signal a test sends.
void pause_for_test(int done) {
  const char* env = std::getenv("TERNVK_TEST_PAUSE_LOAD");
  if (env == nullptr || std::atoi(env) != done) return;
  std::fprintf(stderr, "ternvk: loading paused after layer %d (TERNVK_TEST_PAUSE_LOAD)\n", done);
  std::fflush(stderr);
  for (int i = 0; i < 6000 && g_load_signal == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace

std::unique_ptr<Engine> load_engine(Instance& instance, const std::string& model, EngineOptions options,
                                    const sigset_t* blocked) {
  g_load_signal = 0;
  std::optional<SigintHandler> handler;
  std::optional<BlockedSignalWatch> watch;
  if (blocked) watch.emplace(*blocked);
  else handler.emplace();
  // The engine calls progress after every layer it uploads: the place to stop.
  options.progress = [print = std::move(options.progress)](int done, int total) {
    pause_for_test(done);
    if (const int signal = g_load_signal) throw_interrupted(signal);
    if (print) print(done, total);
  };
  auto engine = std::make_unique<Engine>(instance, model, std::move(options));
  if (const int signal = g_load_signal) throw_interrupted(signal);  // after the last layer: still honoured
  return engine;
}

void ModelFlags::add(CLI::App& cmd) {
  cmd.add_option("-m,--model", model, "GGUF file or Hugging Face folder (default: the model shipped in the repo)");
  add_device_flag(cmd, device);
  cmd.add_option("-c,--ctx-size", context, "Context length in tokens (default: the model's, at most 4096)")
      ->check(CLI::Range(0, 1 << 22));
  cmd.add_option("-b,--batch-size", batch, "Prompt tokens per prefill step")->check(CLI::Range(1, 4096));
  cmd.add_option("--dot", dot, "Ternary inner product: auto, swar (portable) or int8 (packed int8 dot)")
      ->check(CLI::IsMember({"auto", "swar", "int8"}));
  cmd.add_option("--devices", devices,
                 "Run the model as a pipeline over these devices: indices from `ternvk devices` (may repeat) or all");
  cmd.add_option("--split", split, "Layers per device with --devices: auto (even) or N,N,...");
  add_head_flag(cmd, head);
  add_plan_flag(cmd, plan);
  add_fold_attention_flag(cmd, fold_attention);
  add_chain_layers_flag(cmd, chain_layers);
  add_matrix_splits_flag(cmd, matrix_splits);
}

void add_matrix_splits_flag(CLI::App& cmd, std::string& splits) {
  cmd.add_option("--matrix-splits", splits,
                 "GPU plan on GPUs: how each fused matrix is split into workgroups: auto (on GPUs, measured while "
                 "the model loads: the argued rule, 2 workgroups a compute unit and 8 loads in flight a lane, and "
                 "its neighbours each time a one-token pass, the fastest kept if it wins by 2%; the same bits "
                 "whichever), measure (the same on any device whose fused layers fit their splits), or rule (no "
                 "trial)")
      ->check(CLI::IsMember({"auto", "rule", "measure"}));
}

MatrixSplits parse_matrix_splits(const std::string& splits) {
  return splits == "rule" ? MatrixSplits::Rule : splits == "measure" ? MatrixSplits::Measure : MatrixSplits::Auto;
}

void add_chain_layers_flag(CLI::App& cmd, std::string& chain) {
  cmd.add_option("--chain-layers", chain,
                 "GPU plan, one token a step: the fused dispatches of all layers with no barriers between them, "
                 "each waiting in its shader for the one before: auto (on GPUs, measured while the model loads: "
                 "scratch steps run both ways, and the chain stays if it gives the same bits and wins by 2%), "
                 "measure (the same on any device), on or off (a wait that times out turns it off and redoes the "
                 "step with barriers)")
      ->check(CLI::IsMember({"auto", "on", "off", "measure"}));
}

LayerChain parse_layer_chain(const std::string& chain) {
  return chain == "on" ? LayerChain::On
         : chain == "off" ? LayerChain::Off
         : chain == "measure" ? LayerChain::Measure
                              : LayerChain::Auto;
}

void add_fold_attention_flag(CLI::App& cmd, std::string& fold) {
  cmd.add_option("--fold-attention", fold,
                 "GPU plan, one token a step at short contexts: the attention inside the qkv dispatch (four "
                 "dispatches a layer, the same bits): auto (where the device can), on (required) or off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
}

std::optional<bool> parse_fold_attention(const std::string& fold) {
  if (fold == "auto") return std::nullopt;
  return fold == "on";
}

void add_greedy_chain_flag(CLI::App& cmd, int& steps) {
  cmd.add_option("--greedy-chain", steps,
                 "Greedy decoding: up to N tokens a submit, each step's pick fed to the next on the GPU (the "
                 "host waits once a chain; fewer when a token is slow, so text still streams); 1: a submit a token")
      ->check(CLI::Range(1, 64));
}

void add_plan_flag(CLI::App& cmd, std::string& plan) {
  cmd.add_option("--plan", plan,
                 "Forward pass: auto (by device type), gpu (decode in five dispatches a layer, four at short "
                 "contexts; norms fused into the matmuls) or cpu (one dispatch per op, for CPU devices)")
      ->check(CLI::IsMember({"auto", "gpu", "cpu"}));
}

ops::GemmUnits parse_gemm_units(const std::string& units) {
  return units == "vector"   ? ops::GemmUnits::Vector
         : units == "matrix" ? ops::GemmUnits::MatrixUnits
                             : ops::GemmUnits::Auto;
}

ExecutionPlan parse_plan(const std::string& plan) {
  return plan == "gpu" ? ExecutionPlan::Gpu : plan == "cpu" ? ExecutionPlan::Cpu : ExecutionPlan::Auto;
}

void add_head_flag(CLI::App& cmd, std::string& head) {
  cmd.add_option("--head", head,
                 "Output head (and tied embedding) on the GPU: f16 (the file's values) or int8 (one scale per row, "
                 "half the bytes; see docs/performance.md)")
      ->check(CLI::IsMember({"f16", "int8"}));
}

HeadPrecision parse_head(const std::string& head) { return head == "int8" ? HeadPrecision::Int8 : HeadPrecision::F16; }

EngineOptions ModelFlags::engine_options(int device_count) const {
  EngineOptions o;
  if (!devices.empty()) o.devices = parse_device_list(devices, device_count);
  o.split = parse_split(split);
  if (!o.split.empty() && o.devices.empty())
    throw Error("--split needs --devices (the devices the stages run on)");
  o.device = device;
  o.context = context;
  o.prefill_chunk = batch;
  o.dot = dot == "swar" ? ops::TernaryDot::Swar : dot == "int8" ? ops::TernaryDot::PackedInt8 : ops::TernaryDot::Auto;
  o.head = parse_head(head);
  o.plan = parse_plan(plan);
  o.fold_attention = parse_fold_attention(fold_attention);
  o.chain_layers = parse_layer_chain(chain_layers);
  o.matrix_splits = parse_matrix_splits(matrix_splits);
  o.greedy_chain = greedy_chain;
  o.progress = progress_printer();
  if (o.devices.size() > 1)  // the placement, before anything is uploaded
    o.on_plan = [](const std::string& plan) { std::fprintf(stderr, "%s", plan.c_str()); };
  return o;
}

std::string ModelFlags::model_path() const { return model.empty() ? default_model_path() : model; }

void SamplingFlags::add(CLI::App& cmd) {
  cmd.add_option("-n,--n-predict", n_predict, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
  cmd.add_option("--temp", params.temperature, "Temperature (0: greedy)");
  cmd.add_option("--top-k", params.top_k, "Top-k (0: off)");
  cmd.add_option("--top-p", params.top_p, "Top-p (1: off)");
  cmd.add_option("--min-p", params.min_p, "Min-p (0: off)");
  cmd.add_option("--repeat-penalty", params.repeat_penalty, "Repetition penalty (1: off)");
  cmd.add_option("--repeat-last-n", params.repeat_last_n, "Tokens the penalties look back at");
  cmd.add_option("--frequency-penalty", params.frequency_penalty, "Frequency penalty");
  cmd.add_option("--presence-penalty", params.presence_penalty, "Presence penalty");
  cmd.add_option("-s,--seed", params.seed, "Random seed");
  cmd.add_option("--stop", stop, "Stop when the output contains this text (repeatable)");
  cmd.add_flag("--greedy", greedy, "Greedy decoding (same as --temp 0)");
}

SamplingParams SamplingFlags::resolved() const {
  SamplingParams p = params;
  if (greedy) p.temperature = 0;
  return p;
}

std::function<void(int, int)> progress_printer() {
  if (!isatty(STDERR_FILENO)) return {};
  return [](int done, int total) {
    std::fprintf(stderr, "\rloading: %d/%d%s", done, total, done == total ? "\n" : "");
    std::fflush(stderr);
  };
}

}  // namespace ternvk::cli

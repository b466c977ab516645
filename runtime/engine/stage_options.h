// What a stage is asked to be: its layers (StageSpec) and how it holds and runs them (StageOptions,
// with the plan family and the head precision). Shared by the stage, its memory plan and placement.
#pragma once
#include <cstdint>
#include <optional>

#include "runtime/device/device_info.h"
#include "runtime/device/recording.h"
#include "runtime/ops/fused_linear.h"
#include "runtime/ops/ternary_matmul.h"

namespace ternvk {

// How the output head (and the tied embedding) is held on the GPU: FP16 (the file's values, the
// default) or int8 rows with one scale per row (half the bytes; an explicit choice, never silent).
enum class HeadPrecision { F16, Int8 };

// Which forward pass a stage records (docs/architecture.md, "Plans"). The CPU plan runs each op as its
// own dispatch with the kernels tuned for CPU devices (every dispatch costs ~35 us on lavapipe, but
// a separate norm pass is cheaper there than recomputing it per workgroup). The GPU plan records a
// decode step as five dispatches per layer (qkv with RoPE and the KV store, attention, o, gate|up
// with the gating, down; each norm in the next matmul's prologue) because on a GPU a token's time
// goes to dependent dispatches. Both give the same tokens; tests force each plan on every device.
enum class ExecutionPlan {
  Auto,  // Gpu on GPUs, Cpu on CPU devices (by the device type)
  Gpu,
  Cpu,
};
// The plan `plan` means on this device (Auto resolved).
ExecutionPlan resolve_plan(ExecutionPlan plan, const DeviceInfo& info);
const char* plan_name(ExecutionPlan plan);

// Whether a stage chains its layers (StageOptions::chain_layers).
enum class LayerChain {
  Off,      // never
  On,       // always (an error names why a stage cannot)
  // Where the stage can (else an error names why): its first one-token steps run both ways from the same
  // inputs, checked for the same bits and timed (LayerChainTrial); the chain stays only if it wins.
  Measure,
  Auto,  // Measure on GPUs where the stage can chain; Off on CPU devices, which run dispatches in turn
};
const char* layer_chain_name(LayerChain chain);  // "off", "on", "measure", "auto"

// Which rule splits the GPU plan's fused matrices (StageOptions::matrix_splits).
enum class MatrixSplits {
  Rule,     // the argued rule (ops::FusedLinearShape::pick), no trial
  // Where the fused layers fit their splits to the device: the stage's one-token pass timed under each
  // candidate rule as the engine loads (SplitRuleTrial), the fastest kept. Elsewhere as Rule.
  Measure,
  Auto,  // Measure on GPUs; Rule on CPU devices, whose fused layers have a fixed split
};
const char* matrix_splits_name(MatrixSplits splits);  // "rule", "measure", "auto"

struct StageSpec {
  int first_layer = 0;
  int end_layer = 0;  // exclusive
  bool embedding = true;
  bool head = true;
};

struct StageOptions {
  int context = 0;        // KV cache positions per sequence
  int sequences = 1;      // KV cache slots (sequences held at once)
  int max_tokens = 64;    // tokens per step (the prefill chunk)
  ops::TernaryDot dot = ops::TernaryDot::Auto;
  // The prefill GEMM's units (ternary_gemm.h): the ternary model's, or the FP16 baseline's for
  // one-sequence steps (prompt chunks; steps of several sequences keep the GEMV's bits).
  ops::GemmUnits gemm_units = ops::GemmUnits::Auto;
  TimestampMode timestamps = TimestampMode::None;  // GPU times of each pass (profiler)
  uint64_t max_segment_bytes = 0;  // tests: force tensors to split
  std::optional<ops::FusedLinearShape> fused_shape;  // tests, benchmarks: overrides the fused layers' pick
  // The FP16 baseline: the same model with every linear weight expanded to FP16 (w * scale) and
  // float activations. Every speed and memory claim is measured against it.
  bool fp16_baseline = false;
  // The output head (and the embedding when tied) in FP16 or as int8 rows (ops/int8_matmul.h).
  HeadPrecision head = HeadPrecision::F16;
  ExecutionPlan plan = ExecutionPlan::Auto;
  // Greedy decoding chained on the GPU (Stage::run_greedy_chain): the most one-token steps one
  // submit runs, each step's embedding reading the previous step's argmax. 1: a submit a token.
  int greedy_chain = 1;
  // Where the pass reads what the host writes before each submit (token ids, positions, KV slots):
  // from device-local copies that the pass makes first (true), or from the host-visible buffers
  // themselves (false). Unset: copies where the device has memory of its own (a discrete GPU), so
  // that the 60 dispatches a token that read a position do not each wait on the bus.
  std::optional<bool> step_inputs_on_device;
  // The GPU plan's one-token steps at short contexts run the attention inside the qkv dispatch (the
  // workgroup that completes a kv head's rows attends for it): four dispatches a layer instead of
  // five, with the same bits, up to the context that the separate attention runs as one split.
  // Unset: wherever the device can (FusedLinear::why_no_folded_attention); true: required (an error
  // names why not, also on the CPU plan); false: never.
  std::optional<bool> fold_attention;
  // Tests: live keys per split of the decode attention (AttentionTuning::min_split; 0: the plan's),
  // so that splits, and the end of the folded attention, come at a test's small contexts on every
  // device (the H200's plan runs up to 256 keys of a small model as one split).
  uint32_t attention_min_split = 0;
  // The GPU plan's one-token steps with the fused dispatches of all layers chained: recorded with no
  // barrier between them, each ordered in its shader after the one before (ops::FusedChainLink), so a
  // later matrix's workgroups start and request their weights while the one before finishes
  // (docs/performance.md, "Chained layers"). It rests on a dispatch's workgroups all starting before a
  // later one's (true of the GPUs it is meant for, not promised by Vulkan); a wait that times out turns
  // it off for the stage, and the pass is redone with barriers.
  LayerChain chain_layers = LayerChain::Off;
  // Tests: polls before a chained wait gives up (0: FusedChainLink's default), and waits that cannot be
  // met (each for one workgroup more than the dispatch before has), so that the timeout and the redo
  // run on any device.
  uint32_t chain_spin_limit = 0;
  bool chain_unreachable_waits = false;
  // Tests: in the trial's pair N (1-based; 0: none), the chained form's results get one bit flipped on
  // the device (its residual stream and first logit), as if the device had raced, so that the mismatch
  // path (chaining off, the unchained results kept) runs on any device. Pair 1 runs the unchained form
  // first, pair 2 the chained one.
  uint32_t chain_trial_mismatch_pair = 0;
  // Tests: the most a chain saves a dispatch (LayerChainTrial::could_win) and, when set, the bound applied
  // under Measure too (it stops only Auto's trials otherwise), so that a trial the chain cannot win
  // stops early on any device.
  double chain_max_gap_seconds = 0;
  MatrixSplits matrix_splits = MatrixSplits::Rule;
  // Tests: the split trial keeps candidate N (1-based; 0: the fastest, as measured), or finds candidate
  // N's bits changed on the device (its residual stream corrupted after its check run), so that a
  // rule other than the argued one, and the path that drops a rule, run on any device.
  uint32_t split_trial_keep = 0;
  uint32_t split_trial_mismatch = 0;
};

// Whether a stage with these options may chain its layers on this device (the GPU plan, and for Auto a
// GPU not timed a dispatch at a time): it then holds the chain's counters, whether or not it ends up
// chaining (a trial may turn it off; a stage whose matrices cannot chain never starts).
bool may_chain_layers(const StageOptions& options, const DeviceInfo& info);

// StageOptions::step_inputs_on_device as it applies on this device.
bool step_inputs_on_device(const StageOptions& options, const DeviceInfo& info);

// Bytes between consecutive steps' inputs (position) and results (argmax) in a greedy chain: each
// is bound on its own, so each starts at the device's storage-buffer offset alignment.
uint64_t greedy_chain_stride(const DeviceInfo& info);

}  // namespace ternvk

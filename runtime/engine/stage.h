// A stage: a contiguous range of a model's layers on one device, with the embedding when it is
// the first stage and the final norm and output head when it is the last. The engine is a list of
// stages; a single-device run has one. Each stage owns its weights, KV cache and activations, and
// records its forward pass once per token count, then replays it: one submit per step.
#pragma once
#include <functional>
#include <map>
#include <span>
#include <tuple>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/engine/layer_chain_trial.h"
#include "runtime/engine/stage_memory.h"
#include "runtime/engine/stage_options.h"
#include "runtime/engine/model_source.h"
#include "runtime/engine/sampler.h"
#include "runtime/ops/attention.h"
#include "runtime/ops/fp16_matmul.h"
#include "runtime/ops/fused_linear.h"
#include "runtime/ops/int8_matmul.h"
#include "runtime/ops/kv_cache.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/rmsnorm_quant.h"
#include "runtime/ops/ternary_matmul.h"
#include "runtime/ops/ternary_matrix.h"

namespace ternvk {

enum class LogitsMode { None, Last, All };

// Where the tokens of a step go: each token's position in its sequence and the KV cache slot of
// that sequence. A prefill chunk is one sequence; a batched decode step is one token per sequence.
struct TokenPlaces {
  std::span<const uint32_t> positions;
  std::span<const uint32_t> slots;  // one per token
  bool one_sequence = true;         // every token in slots[0] (recorded with the prefill plan)
};

// What the last stage hands the host after a step: the logits, or only what the GPU selected from
// them (so decode need not read back every logit): of the last token (LogitsMode::Last) or of
// every token (LogitsMode::All: a batched decode step).
struct Selection {
  enum Kind { Logits, Argmax, TopK } kind = Logits;
  uint32_t k = 0;  // TopK only, 1..256
};

class Stage {
 public:
  // Uploads the stage's weights from `source` (one tensor at a time). `progress(done, total)` is
  // called after each tensor.
  Stage(Device& device, const ModelSource& source, const StageSpec& spec, const StageOptions& options,
        const std::function<void(int, int)>& progress = {});

  // Runs the tokens (ids used only by the first stage) at their places, in two halves so that the
  // stages of a pipeline compute at the same time: start() writes the step's inputs and submits
  // without waiting; finish() waits for that step. The hidden state of every token is in
  // read_hidden() afterwards (input of the next stage).
  void start(std::span<const uint32_t> ids, const TokenPlaces& places, LogitsMode mode, Selection select = {});
  void finish();
  // Forgets the last step (the engine's scratch steps): its results can no longer be read, and
  // last_pass() is null until the next step.
  void forget_last_step();
  // Greedy decoding chained on the GPU: `steps` one-token steps (2..StageOptions::greedy_chain) of
  // the sequence in KV slot `slot` in one submit, from token `id` at `position`; each step's embedding reads the
  // previous step's argmax, so the host waits once. Returns the `steps` picks (an index >= vocab
  // where a row of logits held only NaN). Needs the embedding and the head (a single stage).
  // prepare_greedy_chain() records the chain ahead of time (callers that time the run itself).
  void prepare_greedy_chain(uint32_t steps);
  std::vector<uint32_t> run_greedy_chain(uint32_t id, uint32_t slot, uint32_t position, uint32_t steps);
  // After an error elsewhere in a pipeline: waits for a started step, ignoring its errors.
  void abandon() noexcept;
  ~Stage();

  // The hand-over between stages, through host-visible buffers that the recorded pass itself copies
  // from (first op) and to (last op): no extra submit per step.
  // The residual stream of the last run's tokens, fp32 [T, dim]: what the next stage starts from.
  std::vector<float> read_hidden(uint32_t tokens) const;
  // Sets the residual stream before start() on a stage without the embedding.
  void write_hidden(std::span<const float> hidden);
  // Logits of the last run: the last token's row (mode Last), or every token's rows (mode All).
  std::vector<float> read_last_logits() const;
  std::vector<float> read_all_logits() const;
  // Row `row` of the last run's logits (0 with LogitsMode::Last).
  std::vector<float> read_logits_row(uint32_t row) const;
  // The GPU's pick after a run with Selection::Argmax, or its top k (sorted) after Selection::TopK,
  // for row `row` of the selection (0 with LogitsMode::Last; the token index with LogitsMode::All).
  uint32_t read_argmax(uint32_t row = 0) const;
  std::vector<Candidate> read_top_k(uint32_t row = 0) const;
  // GPU time per command of the last run (StageOptions::timestamps Dispatch), or one entry for the
  // whole pass (Pass).
  std::vector<DispatchTiming> last_timings() const;
  // The last run's recording: its commands (what the pass dispatched, with each op's work) and times.
  const Recording* last_pass() const { return last_pass_; }
  Device& device() const { return device_; }
  const StageSpec& spec() const { return spec_; }
  const StageOptions& options() const { return options_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t kv_bytes() const { return kv_bytes_; }
  ExecutionPlan plan() const { return plan_; }
  // Whether a prompt chunk of `max_tokens` (this stage's step) runs its linear layers (ternary, or the
  // FP16 baseline's) as a GEMM on the device's matrix units (ops::GemmUnits).
  bool prefill_on_matrix_units() const {
    const uint32_t chunk = uint32_t(options_.max_tokens);
    return options_.fp16_baseline ? fp16_prompt_.gemm().uses_matrix_units() && fp16_prompt_.uses_gemm(chunk)
                                  : ternary_.gemm().uses_matrix_units() && ternary_.uses_gemm(chunk);
  }
  // Steps of up to this many tokens (a one-sequence decode step) run the GPU plan's fused layers;
  // larger ones the separate ops, whose GEMV/GEMM reads each weight once for all the step's tokens:
  // on an H200 the fused layers were faster at 1 token for every matrix and slower at 4 for most,
  // and a 4-sequence step took as long as an 8-sequence one (docs/performance.md). Both normalize
  // with the same prologue code, so a token's bits do not depend on which ran.
  static constexpr uint32_t kFusedMaxTokens = 1;
  // Positions below which one-token steps run the attention inside the qkv dispatch (0: never;
  // StageOptions::fold_attention).
  uint32_t fold_attention_keys() const { return fold_keys_; }
  // Whether one-token steps chain their fused dispatches now (StageOptions::chain_layers; a wait that
  // timed out or a trial the chain lost turns it off), whether a trial still runs them both ways, and
  // how many times a chained pass was redone with barriers.
  bool chains_layers() const { return chain_state_ == ChainState::On; }
  bool layer_chain_trial_running() const { return chain_state_ == ChainState::Trial; }
  int chain_redos() const { return chain_redos_; }
  // What became of the chained layers, for people: off and why, on (asked, or kept by a trial, with
  // what it measured), or a trial still running.
  std::string layer_chain_note() const;
  // The split trial (StageOptions::matrix_splits, SplitRuleTrial): the stage's one-token pass recorded
  // under each candidate rule that splits its matrices differently, checked for the same bits and
  // timed; the fastest rule is kept for every pass recorded afterwards (recordings made before are
  // dropped). Runs once, as the engine loads, before any sequence holds tokens (it writes KV slot 0's
  // first position); does nothing where no trial applies or it has run.
  void settle_matrix_splits();
  // The rule the fused layers split by, and how it was chosen (for people).
  std::string matrix_split_note() const;
  std::optional<ops::FusedSplitRule> matrix_split_rule() const {
    return fused_ ? std::optional(fused_->shape().rule()) : std::nullopt;
  }
  // The rules the trial weighed (the argued one first); empty where none ran.
  const std::vector<ops::FusedSplitRule>& matrix_split_candidates() const { return split_rules_; }

 private:
  // A linear layer in either form: ternary (int8 activations) or the FP16 baseline.
  struct LinearWeights {
    std::unique_ptr<ops::TernaryMatrixGpu> ternary;
    std::unique_ptr<ops::Fp16MatrixGpu> fp16;
    uint64_t bytes() const { return ternary ? ternary->device_bytes() : fp16->device_bytes(); }
    const std::vector<ops::MatrixSegment>& segments() const { return ternary ? ternary->segments() : fp16->segments(); }
    uint32_t rows() const { return ternary ? ternary->rows() : fp16->rows(); }
    uint32_t cols() const { return ternary ? ternary->cols() : fp16->cols(); }
  };
  // A linear layer's host side, ready to upload: the packed ternary matrix, or the FP16 baseline's
  // rows. Prepared off the thread that uploads (the next layer's while this one uploads).
  struct PreparedLinear {
    std::string what;
    std::optional<ops::PackedTernaryMatrix> ternary;
    std::vector<uint16_t> halves;
    uint32_t rows = 0, cols = 0;
  };
  struct Layer {
    LinearWeights qkv, o, gate_up, down;
    Buffer attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm;
    Buffer k_cache, v_cache;
  };
  // fold_attention: the attention inside each fused layer's qkv dispatch (a one-token step whose
  // position is below fold_keys_).
  // chained: the fused dispatches of a one-token pass chained (ignored for larger steps).
  Recording& pass(uint32_t tokens, LogitsMode mode, Selection select, bool one_sequence, bool fold_attention,
                  bool chained);
  // The per-step inputs and the selection's output a pass binds: the stage's own buffers for a step
  // the host writes, sub-ranges of them for each step of a greedy chain.
  struct PassIo {
    BufferRange ids, positions, slots, selected;
  };
  PassIo step_io() const;
  // Copies the host-written step inputs to their device-local copies (StageOptions::step_inputs_on_device).
  void record_step_inputs(Recording& rec);
  RecordingOptions recording_options() const;
  // Mode Last computes only the last token's logits when its row of the normed activations can be
  // bound on its own (offset alignment); otherwise it computes all rows.
  bool head_on_last_row_only(uint32_t tokens) const;
  void record_pass(Recording& rec, uint32_t tokens, LogitsMode mode, Selection select, bool one_sequence,
                   const PassIo& io, bool fold_attention);
  // The GPU plan's layer: five dispatches (see ExecutionPlan), four with the attention folded into qkv.
  void record_fused_layer(Recording& rec, const Layer& L, uint32_t tokens, const ops::AttentionPlan& attention,
                          ops::RopeKvTarget rope_kv, bool fold_attention);
  // Why the fused qkv dispatch cannot run `attention` (FusedLinear::why_no_folded_attention), or "".
  std::string why_no_folded_attention(const ops::AttentionPlan& attention) const;
  void record_greedy_chain(uint32_t steps, bool fold_attention, bool chained);
  // The residual stream a step leaves: the hand-over to the next stage, or (the last stage keeps none)
  // the stream itself.
  const Buffer& residual_out() const { return spec_.head ? x_ : hidden_out_; }
  // Submits `rec` and waits for it; the host's seconds for both (the device trials' clock).
  static double submit_and_time(Recording& rec);
  // Chained layers: why this stage cannot chain its one-token steps, or "".
  std::string why_no_layer_chain() const;
  // The split trial: why it does not apply (a note's text), or "".
  std::string why_no_split_trial() const;
  // How this stage's matrices (a layer's four and the head) split under `rule`: what tells two rules apart.
  std::vector<std::tuple<uint32_t, uint32_t, uint32_t>> splits_under(ops::FusedSplitRule rule) const;
  // The chained forms (false, true) that one-token steps may run now: one, or both while a trial runs.
  std::vector<bool> layer_chain_forms() const;
  // A one-token step, or a greedy chain, run both ways from the same inputs while the trial runs
  // (LayerChainTrial): `form(chained)` gives the recording of one form, which this submits and times.
  // Both must leave the same residual stream (`tokens` rows) and the same first `selected_bytes` of
  // the selection; their times go to the trial. Returns the recording whose results stand (the
  // unchained one's wherever the two differ or a wait timed out).
  Recording* run_layer_chain_trial(const std::function<Recording*(bool chained)>& form, uint32_t tokens,
                                   uint64_t selected_bytes);
  // Ends the open chain of dispatches, if any, before a command that is not a link.
  void close_layer_chain(Recording& rec);
  // Around a recording with chained passes: its first pass zeroes the timed-out flag (with that
  // pass's counts, one fill); its end copies the flag to the host.
  void begin_layer_chain_recording() { zero_layer_chain_flag_ = true; }
  void end_layer_chain_recording(Recording& rec);
  // After a chained recording ran: whether a wait timed out; if so chaining is turned off
  // (stop_layer_chain) and the caller redoes the step with barriers.
  bool layer_chain_timed_out();
  // Turns chaining off for good, saying why (layer_chain_note): the chained recordings are dropped
  // (last_pass_ too if it was one) and the folded attention's counters, which a chain that gave up or
  // raced may have left off, are cleared.
  void stop_layer_chain(std::string why);
  // y (epilogue) W norm(x), the norm and quantization in the matmul's prologue.
  void record_fused_linear(Recording& rec, BufferRange x, const Buffer& norm, uint32_t tokens, const LinearWeights& w,
                           const ops::MatmulOutput& y, ops::FusedEpilogue epilogue,
                           const ops::RopeKvTarget* rope_kv = nullptr);
  // Whether a layer's matrices suit the fused kernels (paired epilogues need one segment; one token
  // of each input must fit a workgroup's shared memory).
  bool fusable(const Layer& L) const;
  bool head_fusable() const;  // the final norm in the head's prologue
  // Whether a fused head of `rows` rows can pick its argmax in the same dispatch (one row, one segment).
  bool argmax_in_head(uint32_t rows) const;
  // Argmax or top-k of `rows` rows of logits starting at `first`, into selected_.
  void record_selection(Recording& rec, uint64_t first_row, uint32_t rows, Selection select, BufferRange out);
  // logits = head · x for `tokens` rows of x, by the FP16 or the int8 kernel.
  void record_head(Recording& rec, BufferRange x, uint32_t tokens, const ops::MatmulOutput& logits);
  Buffer upload_floats(const std::vector<float>& v, const std::string& what);
  PreparedLinear prepare_linear(std::vector<TernaryMatrix> parts, std::string what) const;
  LinearWeights upload_linear(PreparedLinear prepared);
  // out = W · norm(x): quantize + ternary matmul, or float norm + FP16 matmul for the baseline
  // (`one_sequence`: a prompt chunk, which the baseline may run on the matrix units).
  void record_norm_linear(Recording& rec, BufferRange x, const Buffer& norm, uint32_t tokens, uint32_t cols,
                          const ops::QuantizedActivations& xq, const LinearWeights& w, const ops::MatmulOutput& out,
                          ops::Epilogue epilogue, bool one_sequence);

  Device& device_;
  ModelConfig c_;
  StageSpec spec_;
  StageOptions options_;
  ops::TernaryMatmul ternary_;
  ops::Fp16Matmul fp16_;         // the head, and the FP16 baseline's steps of several sequences
  ops::Fp16Matmul fp16_prompt_;  // the FP16 baseline's one-sequence steps: matrix units allowed
  ops::RmsNormQuant norm_quant_;
  std::vector<Layer> layers_;
  ops::Int8Matmul int8_;
  ExecutionPlan plan_ = ExecutionPlan::Cpu;
  std::unique_ptr<ops::FusedLinear> fused_;  // the GPU plan's linear layers
  bool gpu_norms_ = false;  // the GPU plan normalizes with the fused prologue (the inputs fit its shared memory)
  std::unique_ptr<ops::Fp16MatrixGpu> head_;     // FP16 head, also the embedding table when tied
  std::unique_ptr<ops::Int8MatrixGpu> head_i8_;  // HeadPrecision::Int8: the head, also the table when tied
  std::unique_ptr<ops::Fp16MatrixGpu> table_;    // the embedding table when the head is untied
  Buffer output_norm_;
  // Activations for up to max_tokens tokens.
  Buffer ids_, positions_, slots_;  // host-visible, written before each replay
  // Device-local copies the pass reads them from (empty when it reads the host's), and the greedy
  // chain's picks (step i's argmax, step i + 1's token), copied to selected_ when the chain ends.
  Buffer ids_on_device_, positions_on_device_, slots_on_device_, greedy_picks_;
  Buffer hidden_in_, hidden_out_;    // host-visible hand-over from / to the neighbouring stages
  Buffer x_, qkv_, attn_, gate_up_, ffn_, normed_, logits_, attn_scratch_;  // ffn_: gated FFN activations [T, F]
  Buffer normed_wide_;  // FP16 baseline: float norm output [max_tokens, max(dim, q_dim, ffn)]
  Buffer selected_, select_scratch_;  // argmax / top-k results (host-readable) and their partials
  Buffer head_argmax_;  // GPU plan: the arrival counter and partials of the head's own argmax (FusedArgmax)
  ops::QuantizedActivationsBuffers q_dim_in_, q_attn_, q_ffn_;
  // By tokens, logits mode, selection kind and k, one sequence, folded, chained.
  std::map<std::tuple<uint32_t, int, int, uint32_t, bool, bool, bool>, std::unique_ptr<Recording>> passes_;
  std::map<std::tuple<uint32_t, bool, bool>, std::unique_ptr<Recording>> greedy_chains_;  // by steps, folded, chained
  // One-token steps at positions below this run the attention inside the qkv dispatch (0: never):
  // the live context up to which the separate attention is one split, so both give the same bits.
  uint32_t fold_keys_ = 0;
  Recording* last_pass_ = nullptr;
  Recording* pending_ = nullptr;  // started, not finished
  // The key of the pending step's pass (what finish() records again if its layer chain timed out).
  struct PassKey {
    uint32_t tokens = 0;
    LogitsMode mode = LogitsMode::None;
    Selection select;
    bool one_sequence = true, fold = false, chained = false;
  } pending_key_;
  bool pending_trial_ = false;  // the pending step runs both ways in finish() (nothing submitted yet)
  // Chained layers (StageOptions::chain_layers): [0] the timed-out flag, then a count per chained
  // dispatch of a pass; the flag's host copy; the links recorded so far in the pass being recorded.
  Buffer layer_chain_counters_, layer_chain_flag_;
  enum class ChainState { Off, Trial, On } chain_state_ = ChainState::Off;
  std::string chain_note_;  // why it is off, or what kept it on (layer_chain_note)
  LayerChainTrial chain_trial_;
  bool recording_chained_ = false;  // the pass being recorded chains its fused dispatches
  int chain_redos_ = 0;
  std::optional<ops::FusedChainLinks> links_;  // the links of the pass being recorded, if it chains
  bool zero_layer_chain_flag_ = false;  // the next pass recorded zeroes the timed-out flag with its counts
  bool split_trial_pending_ = false;  // settle_matrix_splits() has a trial to run
  std::string split_note_;            // how the rule was chosen (matrix_split_note)
  std::vector<ops::FusedSplitRule> split_rules_;  // the rules the trial weighed
  uint32_t last_tokens_ = 0;
  LogitsMode last_mode_ = LogitsMode::None;
  Selection last_select_;
  uint64_t weight_bytes_ = 0, kv_bytes_ = 0;
};

}  // namespace ternvk

// A linear layer of the GPU decode plan in one dispatch (shaders/fused_linear.comp): the RMSNorm (and,
// for ternary weights, the int8 quantization) of its input in the prologue of every workgroup, the
// GEMV in the middle, and its consumer in the epilogue: a store, the residual add, the FFN gating
// (gate|up -> act(gate) * up), or RoPE and the KV-cache store (q|k|v). A decode layer is then five
// dispatches: qkv, attention, o, gate|up, down (docs/performance.md, "The GPU plan").
//
// Same arithmetic as the separate ops (rmsnorm_quant + ternary_matmul, rmsnorm + fp16_matmul /
// int8_matmul, rope_kv_store, gated_activation): the results differ from that path only by the order
// in which the norm's sum of squares is added (float rounding; see the tests' tolerance).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/recording.h"
#include "runtime/ops/attention.h"
#include "runtime/ops/fp16_matmul.h"
#include "runtime/ops/int8_matmul.h"
#include "runtime/ops/kv_cache.h"
#include "runtime/ops/quantized_activations.h"
#include "runtime/ops/rope.h"
#include "runtime/ops/ternary_matmul.h"
#include "runtime/ops/ternary_matrix.h"

namespace ternvk::ops {

enum class FusedEpilogue : uint32_t {
  Store = 0,             // y = W n(x)
  Accumulate = 1,        // y += W n(x)
  GatedSquaredRelu = 2,  // gate|up rows [2F, K]: y[i] = relu(g_i)^2 * u_i, F outputs
  GatedSilu = 3,         // y[i] = silu(g_i) * u_i
  RopeKvStore = 4,       // q|k|v rows: RoPE on q and k, all rows to y, k and v to the KV cache
};

// The input of the layer: fp32 rows x, normalized with `norm` (fp32 [cols]) in the prologue.
struct NormedInput {
  BufferRange x;        // fp32 [tokens, stride]
  BufferRange norm;     // fp32 [cols]
  float eps = 1e-6f;
  uint32_t tokens = 0;
  uint32_t stride = 0;  // floats between tokens' rows; 0: the matrix's cols
};

// The decode attention folded into the qkv dispatch of a one-token step (fused_linear.comp's ATTEND):
// the workgroup that completes a kv head's q, k and v rows runs its attention over the whole live
// context, with the constants of a flash-decode plan: the bits of record_attention with that plan
// wherever it runs the context as one split (one_split_keys), the same attention (one workgroup a kv
// head, slower) beyond.
struct FoldedAttention {
  AttentionPlan plan;    // attention_flash_decode's, for one token
  BufferRange out;       // fp32 [n_heads * head_dim]
  BufferRange scratch;   // the attention scratch: its head holds the arrival counters (attention.h)
  float scale = 0.0f;    // 0 = 1/sqrt(head_dim)
  // Zero the counters now, when recording (a submit that waits). An owner that zeroed them once and
  // lets only these kernels use them passes false (every dispatch leaves them at 0).
  bool clear_counters = true;
};

// The argmax of a one-token head in the same dispatch (fused_linear.comp's ARGMAX): each workgroup's
// first maximum into the scratch, merged by the last workgroup into `result` (an ops::ArgmaxResult,
// the bits of record_argmax). The scratch's first 4 bytes are the arrival counter, 0 before every
// dispatch (each leaves it at 0): zeroed when recorded, or by the owner (clear_counter false).
struct FusedArgmax {
  BufferRange scratch;  // >= FusedLinear::argmax_scratch_bytes(rows)
  BufferRange result;   // 8 bytes
  bool clear_counter = true;
};

// Where the qkv epilogue (RopeKvStore) puts k and v: as record_rope_kv_store does.
struct RopeKvTarget {
  HeadLayout heads;
  RopeParams rope;
  BufferRange positions;  // uint32 [tokens]
  KvCacheLayer cache;
  BufferRange slots;      // uint32 [tokens], or empty: every token in slot 0
  std::optional<FoldedAttention> attention;  // the attention in the same dispatch (one token)
};

// A dispatch of a chain (fused_linear.comp's CHAIN variants, Recording::begin_chain): recorded with no
// barrier before it, its workgroups wait until counter `wait` holds `wait_count` (the workgroups of the
// chained dispatch before; 0: wait for nothing, the first of a chain, ordered by a barrier), then run,
// then count themselves done in counter `signal`. A wait gives up after `spin_limit` polls, setting
// counter 0 (the host then redoes the pass with barriers). `counters`: uint32 [0] that flag, then one
// count per chained dispatch, zeroed before the pass. The matrix must be one segment.
struct FusedChainLink {
  BufferRange counters;
  uint32_t wait = 0;
  uint32_t wait_count = 0;
  uint32_t signal = 1;
  uint32_t spin_limit = 1u << 16;
};

// The links of one chain in recording order: link i signals counter i + 1 and waits for every
// workgroup of link i - 1; the first link, and the first after restart() (a barrier orders it), waits
// for nothing.
class FusedChainLinks {
 public:
  // spin_limit 0: FusedChainLink's default. extra_wait (tests): each wait asks for that many
  // workgroups more than the link before has, so that it times out on any device.
  explicit FusedChainLinks(BufferRange counters, uint32_t spin_limit = 0, uint32_t extra_wait = 0)
      : counters_(counters), spin_limit_(spin_limit), extra_wait_(extra_wait) {}
  FusedChainLink next() const;
  // After recording the link next() gave: the workgroups it dispatched (FusedLinear::record's result).
  void recorded(uint32_t workgroups) {
    ++links_;
    last_workgroups_ = workgroups;
  }
  void restart() { last_workgroups_ = 0; }
  uint32_t links() const { return links_; }

 private:
  BufferRange counters_;
  uint32_t spin_limit_, extra_wait_;
  uint32_t links_ = 0, last_workgroups_ = 0;
};

// How one matrix's rows are split: lanes per row (spec id 1) and rows per lane group (spec id 2).
struct FusedSplit {
  uint32_t lanes = 8;
  uint32_t rows = 2;
};

// The rule's two parameters (FusedLinearShape::split): the workgroups a dispatch should reach, and the
// 16-byte loads each lane keeps in flight. Argued in docs/performance.md, chosen on the device where a
// trial measures them (Stage::settle_matrix_splits).
struct FusedSplitRule {
  uint32_t target_workgroups = 0;
  uint32_t loads_in_flight = 8;
  bool operator==(const FusedSplitRule&) const = default;
  // "264 workgroups a dispatch, 8 loads in flight a lane"
  std::string describe() const;
};

// The work split (specialization constants of fused_linear.comp).
struct FusedLinearShape {
  // The most workgroups a split takes for fewer loads a lane, as a multiple of target_workgroups: at
  // the argued 2 a compute unit, 16 workgroups of 128 (2,048 invocations), what an NVIDIA SM holds at
  // once. More only repeat the prologue (the 32-lane f16 head of vocab 32000 would take 8,000).
  static constexpr uint32_t kWorkgroupsPerTarget = 8;

  uint32_t workgroup = 128;  // invocations (spec id 0)
  // Lanes splitting a ternary row's K (spec id 1), a power of 2; fit_to_device: the fewest (up to max_lanes).
  uint32_t lanes = 8;
  // Lanes splitting a float row's K (fp16 and int8 rows): the separate matmuls' (float_row_lanes()),
  // whose sum order -- and bits -- the fused layers must reproduce. A power of 2 dividing the workgroup.
  uint32_t float_lanes = 8;
  uint32_t rows = 2;         // rows per lane group (spec id 2); paired epilogues: ROWS / 2 pairs
  uint32_t paired_rows = 4;  // rows per lane group for the paired epilogues (even; RoPE NeoX: a multiple of 4)
  uint32_t max_tokens = 4;   // tokens per workgroup at most (spec id 3; shared memory permitting)
  bool subgroup_add = false;  // reduce with subgroupAdd (the workgroup is one subgroup of `lanes`)
  uint32_t required_subgroup_size = 0;
  // 16-byte weight loads each lane keeps in flight (spec id 10 is this / rows, at least 1): a block of
  // chunks is requested before the previous one is multiplied, the first before the prologue.
  uint32_t loads_in_flight = 8;
  // Split each matrix to fill the device (split()) instead of the fixed lanes and rows above.
  bool fit_to_device = false;
  uint32_t max_lanes = 8;           // fit_to_device: the most lanes per row (ternary weights)
  uint32_t target_workgroups = 0;   // fit_to_device: workgroups a dispatch should have at least

  // CPU devices (lavapipe): one subgroup per workgroup, many rows each, so that the prologue (every
  // workgroup normalizes the whole input) is paid by few workgroups; no prefetch (a CPU thread runs
  // its loads in order anyway).
  // GPUs: 128 invocations, 16-byte weight loads, 8 loads in flight per lane, each matrix split to fill
  // the device (split(); the argument: docs/performance.md). Where the device lets a pipeline require
  // a subgroup size, the GPU shape requires one (32 where offered), so that the prologue's reductions
  // -- and a token's bits -- are the same in every pipeline of the op whatever its specialization.
  static FusedLinearShape pick(const DeviceInfo& info);
  void validate(const DeviceInfo& info) const;

  // The split of a matrix of `matrix_rows` rows of `chunks` 16-byte words, whose lane groups need
  // `min_rows` rows at least (paired epilogues: 2, RoPE NeoX: 4), a multiple of min_rows.
  // Fixed shapes: `lanes` and `rows` (plain) / `paired_rows` (paired). fit_to_device: among splits
  // with at least target_workgroups and at most kWorkgroupsPerTarget times as many, the fewest
  // workgroups in which every lane's loads fit one block in flight (so that all of a workgroup's
  // weights are requested before its prologue), else the fewest loads a lane; else, among splits
  // that reach the target, the fewest workgroups; else the most workgroups.
  // `exact_sums`: the row's sums
  // are integers (ternary), so any lane count gives the same bits; float sums keep the lane
  // count of the separate matmuls (float_lanes), whose bits the fused layers must reproduce.
  FusedSplit split(uint32_t matrix_rows, uint32_t chunks, uint32_t min_rows, bool exact_sums) const;
  // Loads a lane requests per block for a matrix of `chunks` words split as `s` (spec id 10).
  uint32_t block_loads(FusedSplit s, uint32_t chunks) const;

  FusedSplitRule rule() const { return {target_workgroups, loads_in_flight}; }
  FusedLinearShape with_rule(FusedSplitRule r) const;
  // The rules a trial on the device weighs (fit_to_device shapes; else only rule()): this shape's own
  // first, then half and twice its workgroups, and each of the three with twice the loads in flight
  // (at most 16: a lane holds two blocks in registers, 8 registers a load).
  // Every one of them gives the same bits (ternary sums are integers; float rows keep their lanes).
  std::vector<FusedSplitRule> rule_candidates() const;
};

struct FusedLinearOptions {
  TernaryDot dot = TernaryDot::Auto;
  std::optional<FusedLinearShape> shape;  // overrides pick() (tests, benchmarks)
};

class FusedLinear {
 public:
  explicit FusedLinear(Device& device, FusedLinearOptions options = {});

  // y (epilogue) W n(x) for in.tokens tokens; one dispatch per segment of W (paired epilogues need a
  // single segment). `rope` is required with RopeKvStore (y is then the q|k|v rows) and ignored
  // otherwise. `chain`: the dispatch is a link of a chain (one segment). Returns the workgroups of
  // the last dispatch (what the next link of a chain waits for).
  uint32_t record(Recording& rec, const TernaryMatrixGpu& w, const NormedInput& in, const MatmulOutput& y,
                  FusedEpilogue epilogue, const RopeKvTarget* rope = nullptr, const FusedChainLink* chain = nullptr) const;
  uint32_t record(Recording& rec, const Fp16MatrixGpu& w, const NormedInput& in, const MatmulOutput& y,
                  FusedEpilogue epilogue, const RopeKvTarget* rope = nullptr, const FusedChainLink* chain = nullptr) const;
  void record(Recording& rec, const Int8MatrixGpu& w, const NormedInput& in, const MatmulOutput& y,
              FusedEpilogue epilogue) const;
  // A head of one token (one segment) storing its logits and picking their argmax in one dispatch.
  void record_with_argmax(Recording& rec, const Fp16MatrixGpu& w, const NormedInput& in, const MatmulOutput& y,
                          const FusedArgmax& argmax) const;
  void record_with_argmax(Recording& rec, const Int8MatrixGpu& w, const NormedInput& in, const MatmulOutput& y,
                          const FusedArgmax& argmax) const;
  // Scratch of FusedArgmax for a head of `rows` rows (the counter, then a partial per workgroup).
  static uint64_t argmax_scratch_bytes(uint32_t rows) { return kArgmaxPartialsOffset + uint64_t(rows) * 8; }
  static constexpr uint64_t kArgmaxPartialsOffset = 256;  // any device's storage-buffer offset alignment

  // The prologue alone, for steps too large to fuse: n(x) quantized to int8 activations (for the
  // ternary matmuls), or n(x) as fp32 rows [tokens, cols] (for the FP16 and int8 matmuls), with the
  // same bits the fused layers compute for the same token. One dispatch.
  void record_norm(Recording& rec, const NormedInput& in, const QuantizedActivations& out) const;
  void record_norm(Recording& rec, const NormedInput& in, uint32_t cols, BufferRange out) const;
  // Whether a matrix can take a paired epilogue: one segment (gate and up rows, or a head's pair
  // rows, must be in the same dispatch).
  static bool pairs_fit(const std::vector<MatrixSegment>& segments) { return segments.size() == 1; }
  // The kinds of matrix; each holds its activations in shared memory its own way (ternary: int8,
  // 64 a chunk; fp16 rows: fp32, 8 a chunk; int8 rows: fp32, 16 a chunk).
  enum class Weights { Ternary, Fp16, Int8 };
  // Whether one token of `cols` inputs to a `kind` matrix fits a workgroup's shared memory (true for
  // the 2B4T shapes).
  bool fits(uint32_t cols, Weights kind) const;
  // Why the qkv layer of a `kind` matrix over `cols` inputs cannot take the attention of `plan`
  // (FoldedAttention), or "" where it can: a flash-decode plan for one token whose workgroup and
  // subgroup size are the fused layers', with both in shared memory.
  std::string why_no_folded_attention(const AttentionPlan& plan, uint32_t cols, Weights kind) const;
  const FusedLinearShape& shape() const { return shape_; }
  // Changes the split rule's parameters (a fit_to_device shape); recordings made before keep theirs.
  void set_rule(FusedSplitRule rule);
  // The split a `kind` matrix of `rows` x `cols` takes under `rule` (lane groups of `min_rows` rows
  // at least), with its loads per block: what tells two rules apart for a model's matrices.
  std::tuple<uint32_t, uint32_t, uint32_t> split_under(FusedSplitRule rule, Weights kind, uint32_t rows, uint32_t cols,
                                                       uint32_t min_rows) const;
  bool uses_int8_dot() const { return dot_; }

 private:
  struct Matrix {
    Weights kind;
    const std::string& name;
    uint32_t rows, cols, chunks;
    const std::vector<MatrixSegment>& segments;
    BufferRange row_info;  // ternary row info / int8 scales; empty for fp16
    uint64_t weight_bytes;
  };
  static Matrix matrix_of(const TernaryMatrixGpu& w);
  static Matrix matrix_of(const Fp16MatrixGpu& w);
  static Matrix matrix_of(const Int8MatrixGpu& w);
  uint32_t record_impl(Recording& rec, const Matrix& m, const NormedInput& in, const MatmulOutput& y,
                       FusedEpilogue epilogue, const RopeKvTarget* rope, const FusedArgmax* argmax = nullptr,
                       const FusedChainLink* chain = nullptr) const;
  void record_norm_impl(Recording& rec, const NormedInput& in, uint32_t cols, bool ternary,
                        std::vector<BufferRange> outputs, double out_bytes) const;
  PipelineOptions pipeline_options(FusedSplit split, uint32_t chunks, uint32_t tokens, FusedEpilogue epilogue,
                                   uint32_t x_uvec4) const;
  // Inputs of a ternary row the prologue takes at most: its subgroups' int8 sums (|sum q| <= 128 K)
  // pass through shared memory as floats, exact up to 2^24.
  static constexpr uint32_t kMaxTernaryCols = 1u << 17;
  static constexpr uint32_t kMaxFoldedHeads = 16;  // kv heads one workgroup may complete (MAX_DONE)
  static void check_ternary_cols(const std::string& what, uint32_t cols);  // throws past kMaxTernaryCols
  // 16-byte weight words per row of `cols` columns (the matrices' padded rows).
  static uint32_t chunks_of(Weights kind, uint32_t cols);
  // Shared uvec4 per token for `chunks` chunks of inputs.
  static uint32_t shared_uvec4(Weights kind, uint32_t chunks);
  uint32_t tokens_per_workgroup(Weights kind, uint32_t chunks, uint32_t tokens) const;

  Device& device_;
  FusedLinearShape shape_;
  bool dot_ = false;
};

}  // namespace ternvk::ops

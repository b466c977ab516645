#include "runtime/ops/fused_linear.h"

#include <algorithm>
#include <optional>
#include <tuple>

#include "runtime/core/error.h"
#include "runtime/ops/arrival_counters.h"

namespace ternvk::ops {
namespace {

bool power_of_two(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }
uint32_t ceil_div(uint32_t a, uint32_t b) { return (a + b - 1) / b; }

// Shared memory the shader declares besides the activations: basic_reduce.glsl's two arrays, and
// 16 bytes for the variants' shared scalars (the argmax's arrival).
uint64_t reduction_bytes(uint32_t workgroup) { return uint64_t(workgroup) * 8 + 16; }

// fused_linear.comp's push constants (its Params block), for every variant.
struct FusedPush {
  uint32_t cols = 0, chunks = 0, rows = 0, row_base = 0, tokens = 0, x_stride4 = 0, y_stride = 0, y_offset = 0;
  float eps = 0;
  uint32_t pairs = 0, pair_offset = 0, n_heads = 0, n_kv_heads = 0, capacity = 0, sequences = 0;
  float theta_scale = 0;
  float scale_log2e = 0;  // ATTEND
  uint32_t chain_wait = 0, chain_wait_count = 0, chain_signal = 0, chain_spin_limit = 0;  // CHAIN
};

// The checks of a layer's input rows (`what` names the op in the errors); returns the row stride in floats.
uint32_t check_normed_input(const std::string& what, const NormedInput& in, uint32_t cols) {
  const uint32_t T = in.tokens;
  if (T == 0) throw Error(what + ": no tokens");
  if (cols % 4) throw Error(what + ": " + std::to_string(cols) + " input columns are not a multiple of 4");
  const uint32_t x_stride = in.stride ? in.stride : cols;
  if (x_stride % 4 || x_stride < cols)
    throw Error(what + ": an input row stride of " + std::to_string(x_stride) + " floats does not suit " +
                std::to_string(cols) + " columns (a multiple of 4, at least the columns)");
  if (in.x.size && in.x.size < (uint64_t(T - 1) * x_stride + cols) * 4)
    throw Error(what + ": the input holds fewer than " + std::to_string(T) + " rows");
  if (in.norm.size && in.norm.size < uint64_t(cols) * 4)
    throw Error(what + ": the norm weight holds fewer than " + std::to_string(cols) + " floats");
  return x_stride;
}

}  // namespace

FusedChainLink FusedChainLinks::next() const {
  FusedChainLink link{.counters = counters_,
                      .wait = last_workgroups_ ? links_ : 0,
                      .wait_count = last_workgroups_ ? last_workgroups_ + extra_wait_ : 0,
                      .signal = links_ + 1};
  if (spin_limit_) link.spin_limit = spin_limit_;
  return link;
}

FusedLinearShape FusedLinearShape::pick(const DeviceInfo& info) {
  FusedLinearShape s;
  if (uses_one_subgroup_workgroups(info)) {  // the separate GEMVs' question (float rows: float_row_lanes())
    const uint32_t sg = one_subgroup_width(info);
    s.workgroup = s.lanes = s.float_lanes = sg;
    s.subgroup_add = info.subgroup_size_control || info.min_subgroup_size == info.max_subgroup_size;
    s.required_subgroup_size = info.subgroup_size_control ? sg : 0;
    s.rows = 32;
    s.paired_rows = 32;
    s.max_tokens = 4;
    s.loads_in_flight = 0;
  } else {
    s.lanes = std::min(8u, info.min_subgroup_size);
    s.float_lanes = float_row_lanes(info);
    s.workgroup = std::min(128u, info.max_workgroup_invocations);
    s.subgroup_add = false;
    s.rows = 2;
    s.paired_rows = 4;
    s.max_tokens = 4;
    if (info.subgroup_size_control)
      s.required_subgroup_size = std::clamp(32u, info.min_subgroup_size, info.max_subgroup_size);
    // A lane group stays inside one subgroup (no shared-memory step in its reduction).
    const uint32_t subgroup = s.required_subgroup_size ? s.required_subgroup_size : info.min_subgroup_size;
    s.fit_to_device = true;
    s.max_lanes = std::max(s.lanes, std::min({32u, subgroup, s.workgroup}));
    // Two workgroups per compute unit: with every lane's weights in flight from the start, that is
    // enough requests to cover the memory latency (docs/performance.md, "Splitting each matrix").
    s.target_workgroups = 2 * info.assumed_compute_units();
  }
  s.validate(info);
  return s;
}

void FusedLinearShape::validate(const DeviceInfo& info) const {
  if (!info.subgroup_arithmetic || !info.subgroup_shuffle)
    throw Error("fused linear: device '" + info.name + "' lacks subgroup arithmetic or shuffle in compute shaders");
  if (!power_of_two(lanes) || workgroup % lanes || !power_of_two(float_lanes) || workgroup % float_lanes ||
      workgroup > info.max_workgroup_invocations || rows == 0 ||
      !power_of_two(paired_rows) || paired_rows < 4 || max_tokens == 0 ||
      (fit_to_device && (!power_of_two(max_lanes) || max_lanes < lanes || workgroup % max_lanes)))
    throw Error("fused linear: invalid shape: workgroup " + std::to_string(workgroup) + ", lanes " +
                std::to_string(lanes) + (fit_to_device ? " to " + std::to_string(max_lanes) : std::string()) +
                " (float rows " + std::to_string(float_lanes) + ")" +
                ", rows " + std::to_string(rows) + ", paired rows " + std::to_string(paired_rows) +
                " (a power of 2, at least 4), tokens " + std::to_string(max_tokens));
  if (fit_to_device && target_workgroups == 0)
    throw Error("fused linear: invalid shape: a split fitted to the device needs a workgroup target of at least 1");
  // Lane groups wider than the subgroup add their pieces through shared memory (any size works);
  // subgroupAdd over the whole workgroup needs the workgroup to be one subgroup.
  const uint32_t min_sg =
      (required_subgroup_size && info.subgroup_size_control) ? required_subgroup_size : info.min_subgroup_size;
  if (subgroup_add && (lanes != workgroup || float_lanes != workgroup || fit_to_device))
    throw Error("fused linear: invalid shape: subgroupAdd reduces the whole workgroup, so it needs lanes = float lanes = "
                "workgroup (" + std::to_string(lanes) + ", " + std::to_string(float_lanes) + " vs " +
                std::to_string(workgroup) + ") and a fixed split");
  if (subgroup_add && min_sg < workgroup)
    throw Error("fused linear: reducing over " + std::to_string(workgroup) +
                " lanes with subgroupAdd needs subgroups at least that large; device '" + info.name + "' may use " +
                std::to_string(min_sg));
}

FusedSplit FusedLinearShape::split(uint32_t matrix_rows, uint32_t chunks, uint32_t min_rows, bool exact_sums) const {
  min_rows = std::max(min_rows, 1u);
  if (!fit_to_device) return {exact_sums ? lanes : float_lanes, min_rows > 1 ? paired_rows : rows};
  const uint64_t in_flight = std::max(loads_in_flight, 1u);
  // Past kWorkgroupsPerTarget times the target, more workgroups than a device holds at once add no
  // loads in flight, only prologues (each re-reads and re-normalizes the input row from L2).
  const uint64_t most = uint64_t(target_workgroups) * kWorkgroupsPerTarget;
  // Rank: 0 = the target reached within `most`, every load in one block (fewest workgroups first),
  // 1 = the target reached within `most` (fewest loads a lane first), 2 = the target reached only past
  // `most` (fewest workgroups first), 3 = none (most workgroups first); then fewer lanes.
  struct Rank {
    int tier;
    uint64_t a, b;
    uint32_t lanes;
    bool operator<(const Rank& o) const {
      return std::tie(tier, a, b, lanes) < std::tie(o.tier, o.a, o.b, o.lanes);
    }
  };
  const uint32_t first_lanes = exact_sums ? lanes : float_lanes, top_lanes = exact_sums ? max_lanes : float_lanes;
  FusedSplit best{first_lanes, min_rows};
  std::optional<Rank> best_rank;
  for (uint32_t l = first_lanes; l <= top_lanes; l *= 2)
    for (uint32_t r = min_rows; r <= std::max(min_rows, 4u); r *= 2) {
      const uint64_t loads = uint64_t(r) * ceil_div(chunks, l);
      const uint64_t workgroups = ceil_div(ceil_div(matrix_rows, r), workgroup / l);
      const bool target = workgroups >= target_workgroups;
      const bool within = target && workgroups <= most;
      const Rank rank = within && loads <= in_flight ? Rank{0, workgroups, loads, l}
                        : within                     ? Rank{1, loads, workgroups, l}
                        : target                     ? Rank{2, workgroups, loads, l}
                                                     : Rank{3, ~workgroups, loads, l};
      if (!best_rank || rank < *best_rank) {
        best_rank = rank;
        best = {l, r};
      }
    }
  return best;
}

uint32_t FusedLinearShape::block_loads(FusedSplit s, uint32_t chunks) const {
  return std::max(1u, std::min(loads_in_flight / s.rows, ceil_div(chunks, s.lanes)));
}

std::string FusedSplitRule::describe() const {
  return std::to_string(target_workgroups) + " workgroups a dispatch, " + std::to_string(loads_in_flight) +
         " loads in flight a lane";
}

FusedLinearShape FusedLinearShape::with_rule(FusedSplitRule r) const {
  FusedLinearShape s = *this;
  s.target_workgroups = r.target_workgroups;
  s.loads_in_flight = r.loads_in_flight;
  return s;
}

std::vector<FusedSplitRule> FusedLinearShape::rule_candidates() const {
  const FusedSplitRule own = rule();
  if (!fit_to_device) return {own};
  const uint32_t t = own.target_workgroups, l = std::max(own.loads_in_flight, 1u);
  // (capped so that doubling never wraps; a target past every matrix's rows means "the most workgroups")
  const uint32_t twice_t = t > (1u << 30) ? t : 2 * t;
  std::vector<FusedSplitRule> out;
  // Not four times the loads: a lane holds two blocks of loads in registers (8 a load), and 32 loads
  // would take 256 of them, past what a GPU gives a lane.
  for (const uint32_t loads : {l, std::min(2 * l, 16u)})
    for (const uint32_t target : {t, std::max(t / 2, 1u), twice_t}) {
      const FusedSplitRule r{target, loads};
      if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
    }
  return out;
}

void FusedLinear::set_rule(FusedSplitRule rule) {
  if (!shape_.fit_to_device) throw Error("internal: a split rule for a fixed fused-linear shape");
  shape_ = shape_.with_rule(rule);
}

std::tuple<uint32_t, uint32_t, uint32_t> FusedLinear::split_under(FusedSplitRule rule, Weights kind, uint32_t rows,
                                                                  uint32_t cols, uint32_t min_rows) const {
  const FusedLinearShape s = shape_.with_rule(rule);
  const uint32_t chunks = chunks_of(kind, cols);
  const FusedSplit split = s.split(rows, chunks, min_rows, kind == Weights::Ternary);
  return {split.lanes, split.rows, s.block_loads(split, chunks)};
}

FusedLinear::FusedLinear(Device& device, FusedLinearOptions options)
    : device_(device), shape_(options.shape ? *options.shape : FusedLinearShape::pick(device.info())) {
  shape_.validate(device.info());
  dot_ = resolve_int8_dot(device.info(), options.dot, "fused linear");
}

uint32_t FusedLinear::chunks_of(Weights kind, uint32_t cols) {
  return ceil_div(cols, kind == Weights::Ternary ? 64 : kind == Weights::Fp16 ? 8 : 16);
}

uint32_t FusedLinear::shared_uvec4(Weights kind, uint32_t chunks) {
  // Ternary: 64 int8 a chunk (4 uvec4); fp16: 8 floats (2); int8 rows: 16 floats (4).
  return kind == Weights::Fp16 ? chunks * 2 : chunks * 4;
}

uint32_t FusedLinear::tokens_per_workgroup(Weights kind, uint32_t chunks, uint32_t tokens) const {
  const uint64_t limit = device_.info().max_shared_memory;
  const uint64_t per_token = uint64_t(shared_uvec4(kind, chunks)) * 16;
  const uint64_t room = limit > reduction_bytes(shape_.workgroup) ? limit - reduction_bytes(shape_.workgroup) : 0;
  return uint32_t(std::min<uint64_t>({tokens, shape_.max_tokens, room / per_token}));
}

void FusedLinear::check_ternary_cols(const std::string& what, uint32_t cols) {
  if (cols > kMaxTernaryCols)
    throw Error(what + ": " + std::to_string(cols) + " inputs exceed the fused prologue's " +
                std::to_string(kMaxTernaryCols) + " (its int8 sums travel as exact floats; use the CPU plan)");
}

std::string FusedLinear::why_no_folded_attention(const AttentionPlan& plan, uint32_t cols, Weights kind) const {
  if (kind == Weights::Int8) return "int8 rows take no RoPE epilogue";
  if (!plan.flash_decode) return "the attention plan is not flash-decode";
  if (plan.tokens != 1) return "the step has " + std::to_string(plan.tokens) + " tokens, not 1";
  if (plan.workgroup != shape_.workgroup)
    return "the attention's workgroup of " + std::to_string(plan.workgroup) + " lanes is not the fused layers' " +
           std::to_string(shape_.workgroup);
  // Subgroup sizes: the same where required, or a device with a single size (requiring it changes nothing).
  const DeviceInfo& info = device_.info();
  const auto size_run = [&](uint32_t required) {
    return required ? required : info.min_subgroup_size == info.max_subgroup_size ? info.min_subgroup_size : 0;
  };
  // Without a required (or single) size the driver may give each pipeline its own width, and the
  // subgroups' partial states would merge in another order: no same bits to promise.
  if (size_run(plan.subgroup_size) == 0 || size_run(shape_.required_subgroup_size) == 0)
    return "device '" + info.name + "' cannot fix a subgroup size for both kernels";
  if (size_run(plan.subgroup_size) != size_run(shape_.required_subgroup_size))
    return "the attention requires subgroups of " + std::to_string(plan.subgroup_size) + " lanes, the fused layers " +
           std::to_string(shape_.required_subgroup_size) + " (0: any)";
  // fused_linear.comp's ATTEND bindings 0..13 (fp16 rows: no row info).
  const uint32_t buffers = kind == Weights::Fp16 ? 13 : 14;
  if (info.max_storage_buffers_per_stage && info.max_storage_buffers_per_stage < buffers)
    return std::to_string(buffers) + " storage buffers in one shader; device '" + info.name + "' allows " +
           std::to_string(info.max_storage_buffers_per_stage);
  // Pairs of a workgroup: lane groups x pairs each, at the widest split the rule may pick.
  const uint32_t pairs = shape_.workgroup / std::min(shape_.lanes, shape_.float_lanes) * std::max(shape_.paired_rows, 4u) / 2;
  if (ceil_div(pairs, plan.heads.head_dim / 2) + 1 > kMaxFoldedHeads)
    return "a workgroup may complete more than " + std::to_string(kMaxFoldedHeads) + " kv heads";
  const uint64_t shared = uint64_t(shared_uvec4(kind, chunks_of(kind, cols))) * 16 +
                          reduction_bytes(shape_.workgroup) + split_state_shared_bytes(plan) + (kMaxFoldedHeads + 1) * 4;
  if (shared > info.max_shared_memory)
    return std::to_string(shared) + " bytes of shared memory; device '" + info.name + "' has " +
           std::to_string(info.max_shared_memory);
  return "";
}

bool FusedLinear::fits(uint32_t cols, Weights kind) const {
  return cols % 4 == 0 && (kind != Weights::Ternary || cols <= kMaxTernaryCols) &&
         tokens_per_workgroup(kind, chunks_of(kind, cols), 1) >= 1;
}

PipelineOptions FusedLinear::pipeline_options(FusedSplit split, uint32_t chunks, uint32_t tokens,
                                              FusedEpilogue epilogue, uint32_t x_uvec4) const {
  // A block of chunks never longer than a lane's share of the row (no repeated loads of its last chunk).
  PipelineOptions po;
  po.constants = {{0, shape_.workgroup},
                  {1, split.lanes},
                  {2, split.rows},
                  {3, tokens},
                  {4, static_cast<uint32_t>(epilogue)},
                  {5, shape_.subgroup_add ? 0u : 1u},
                  {6, x_uvec4},
                  {10, shape_.block_loads(split, chunks)}};
  po.required_subgroup_size = shape_.required_subgroup_size;
  return po;
}

FusedLinear::Matrix FusedLinear::matrix_of(const TernaryMatrixGpu& w) {
  return {Weights::Ternary, w.name(), w.rows(), w.cols(), w.padded_cols() / 64, w.segments(), w.row_info().range(),
          w.weight_bytes()};
}

FusedLinear::Matrix FusedLinear::matrix_of(const Fp16MatrixGpu& w) {
  return {Weights::Fp16, w.name(), w.rows(), w.cols(), w.padded_cols() / 8, w.segments(), {}, w.weight_bytes()};
}

FusedLinear::Matrix FusedLinear::matrix_of(const Int8MatrixGpu& w) {
  return {Weights::Int8, w.name(), w.rows(), w.cols(), w.padded_cols() / 16, w.segments(), w.scales().range(),
          w.weight_bytes()};
}

uint32_t FusedLinear::record(Recording& rec, const TernaryMatrixGpu& w, const NormedInput& in, const MatmulOutput& y,
                             FusedEpilogue epilogue, const RopeKvTarget* rope, const FusedChainLink* chain) const {
  return record_impl(rec, matrix_of(w), in, y, epilogue, rope, nullptr, chain);
}

uint32_t FusedLinear::record(Recording& rec, const Fp16MatrixGpu& w, const NormedInput& in, const MatmulOutput& y,
                             FusedEpilogue epilogue, const RopeKvTarget* rope, const FusedChainLink* chain) const {
  return record_impl(rec, matrix_of(w), in, y, epilogue, rope, nullptr, chain);
}

void FusedLinear::record(Recording& rec, const Int8MatrixGpu& w, const NormedInput& in, const MatmulOutput& y,
                         FusedEpilogue epilogue) const {
  if (epilogue != FusedEpilogue::Store && epilogue != FusedEpilogue::Accumulate)
    throw Error("fused linear of " + w.name() + ": int8 rows take only the store and accumulate epilogues");
  record_impl(rec, matrix_of(w), in, y, epilogue, nullptr);
}

void FusedLinear::record_with_argmax(Recording& rec, const Fp16MatrixGpu& w, const NormedInput& in,
                                     const MatmulOutput& y, const FusedArgmax& argmax) const {
  record_impl(rec, matrix_of(w), in, y, FusedEpilogue::Store, nullptr, &argmax);
}

void FusedLinear::record_with_argmax(Recording& rec, const Int8MatrixGpu& w, const NormedInput& in,
                                     const MatmulOutput& y, const FusedArgmax& argmax) const {
  record_impl(rec, matrix_of(w), in, y, FusedEpilogue::Store, nullptr, &argmax);
}

uint32_t FusedLinear::record_impl(Recording& rec, const Matrix& m, const NormedInput& in, const MatmulOutput& y,
                                  FusedEpilogue epilogue, const RopeKvTarget* rope, const FusedArgmax* argmax,
                                  const FusedChainLink* chain) const {
  const std::string what = "fused linear of " + m.name;
  const uint32_t T = in.tokens;
  const uint32_t x_stride = check_normed_input(what, in, m.cols);

  const bool gated = epilogue == FusedEpilogue::GatedSquaredRelu || epilogue == FusedEpilogue::GatedSilu;
  const bool with_rope = epilogue == FusedEpilogue::RopeKvStore;
  const bool paired = gated || with_rope;
  if (paired && !pairs_fit(m.segments))
    throw Error(what + ": the " + std::string(gated ? "gated" : "RoPE") + " epilogue needs the matrix in one segment; " +
                "it has " + std::to_string(m.segments.size()) + " (use the CPU plan)");
  if (m.rows % 2 && paired) throw Error(what + ": an odd number of rows cannot be paired");
  const uint32_t outputs = gated ? m.rows / 2 : m.rows;
  const uint32_t stride = y.stride ? y.stride : outputs;
  if (uint64_t(y.offset) + outputs > stride)
    throw Error(what + ": output columns " + std::to_string(y.offset) + ".." + std::to_string(uint64_t(y.offset) + outputs) +
                " do not fit an output row of " + std::to_string(stride));
  check_matmul_output(what, y, T, stride, outputs);
  if (with_rope) {
    if (!rope) throw Error(what + ": the RoPE epilogue needs its target (positions, KV cache)");
    const HeadLayout& h = rope->heads;
    detail::check_heads(h, "fused qkv");
    if (m.rows != (h.n_heads + 2 * h.n_kv_heads) * h.head_dim)
      throw Error(what + ": " + std::to_string(m.rows) + " rows are not the q|k|v heads of " +
                  std::to_string(h.n_heads) + " + 2 x " + std::to_string(h.n_kv_heads) + " x " +
                  std::to_string(h.head_dim));
    if (h.head_dim % 4) throw Error(what + ": head_dim " + std::to_string(h.head_dim) + " is not a multiple of 4");
    if (y.offset != 0) throw Error(what + ": the RoPE epilogue writes q|k|v from column 0");
    detail::check_cache(rope->cache, h, T, rope->slots, "fused qkv");
    if (rope->positions.size && rope->positions.size < uint64_t(T) * 4)
      throw Error(what + ": the positions hold fewer than " + std::to_string(T) + " tokens");
  }
  if (argmax) {
    if (T != 1) throw Error(what + ": the argmax runs in the same dispatch for one token, not " + std::to_string(T));
    if (m.segments.size() != 1)
      throw Error(what + ": the argmax in the same dispatch needs the matrix in one segment; it has " +
                  std::to_string(m.segments.size()));
    if (!argmax->scratch.buffer || (argmax->scratch.size && argmax->scratch.size < argmax_scratch_bytes(m.rows)))
      throw Error(what + ": the argmax needs a scratch of " + std::to_string(argmax_scratch_bytes(m.rows)) + " bytes");
    if (!argmax->result.buffer || (argmax->result.size && argmax->result.size < 8))
      throw Error(what + ": the argmax needs an 8-byte result range");
    if (argmax->result.buffer == y.buffer.buffer || argmax->scratch.buffer == y.buffer.buffer ||
        argmax->result.buffer == argmax->scratch.buffer)
      throw Error(what + ": the argmax's result, its scratch and the logits must be separate buffers");
  }
  if (chain) {
    if (m.segments.size() != 1)
      throw Error(what + ": a chained dispatch needs the matrix in one segment; it has " +
                  std::to_string(m.segments.size()));
    if (argmax || m.kind == Weights::Int8) throw Error(what + ": only ternary and fp16 layers without an argmax chain");
    const uint64_t words = chain->counters.size / 4;
    if (!chain->counters.buffer || (chain->wait == 0 && chain->wait_count) || chain->signal == 0 ||
        (chain->counters.size && (chain->wait >= words || chain->signal >= words)) || chain->wait == chain->signal ||
        chain->spin_limit == 0)
      throw Error(what + ": an invalid chain link (wait on counter " + std::to_string(chain->wait) + " for " +
                  std::to_string(chain->wait_count) + ", signal counter " + std::to_string(chain->signal) + ", " +
                  std::to_string(words) + " counters, " + std::to_string(chain->spin_limit) + " polls)");
  }
  const FoldedAttention* attend = with_rope && rope->attention ? &*rope->attention : nullptr;
  if (attend) {
    const std::string why = why_no_folded_attention(attend->plan, m.cols, m.kind);
    if (!why.empty()) throw Error(what + ": cannot run the attention in the same dispatch: " + why);
    if (T != 1) throw Error(what + ": the attention runs in the same dispatch for one token, not " + std::to_string(T));
    const HeadLayout& h = rope->heads;
    if (attend->plan.heads.n_heads != h.n_heads || attend->plan.heads.n_kv_heads != h.n_kv_heads ||
        attend->plan.heads.head_dim != h.head_dim || attend->plan.max_context > rope->cache.capacity)
      throw Error(what + ": the attention plan does not match the heads and KV cache of the qkv layer");
    if (attend->out.size && attend->out.size < uint64_t(h.n_heads) * h.head_dim * 4)
      throw Error(what + ": the attention output holds fewer than " + std::to_string(h.n_heads * h.head_dim) + " floats");
    if (!attend->scratch.buffer || (attend->scratch.size && attend->scratch.size < kAttentionCounterBytes))
      throw Error(what + ": the attention needs a scratch of at least " + std::to_string(kAttentionCounterBytes) +
                  " bytes for its arrival counters");
  }

  if (m.kind == Weights::Ternary) check_ternary_cols(what, m.cols);
  const uint32_t per_token = shared_uvec4(m.kind, m.chunks);
  const uint32_t tokens = tokens_per_workgroup(m.kind, m.chunks, T);
  if (tokens == 0)
    throw Error(what + ": one token of " + std::to_string(m.cols) + " inputs needs " +
                std::to_string(uint64_t(per_token) * 16 + reduction_bytes(shape_.workgroup)) +
                " bytes of shared memory; device '" + device_.info().name + "' has " +
                std::to_string(device_.info().max_shared_memory) + " (use the CPU plan)");
  const bool neox = !with_rope || rope->rope.form == RopeForm::NeoX;
  // Paired lane groups own whole pairs; NeoX K/V words take two pairs of one head.
  const uint32_t min_rows = !paired ? 1 : with_rope && neox ? 4 : 2;
  FusedSplit split = shape_.split(m.rows, m.chunks, min_rows, m.kind == Weights::Ternary);
  // RoPE: a lane group's pairs stay inside one head, in whole K/V words (NeoX: an even count of
  // pairs dividing hd/2; adjacent pairs: any count dividing it).
  if (with_rope)
    while ((rope->heads.head_dim / 2) % (split.rows / 2)) split.rows /= 2;
  const bool slots = with_rope && rope->slots.buffer != VK_NULL_HANDLE;
  PipelineOptions po = pipeline_options(split, m.chunks, tokens, epilogue, per_token);
  po.constants[7] = with_rope ? rope->heads.head_dim : 128u;
  po.constants[8] = neox ? 1u : 0u;
  po.constants[9] = slots ? 1u : 0u;
  std::string shader = m.kind == Weights::Fp16 ? "fused_linear_f16"
                       : m.kind == Weights::Int8 ? "fused_linear_i8"
                       : dot_                    ? "fused_linear_dot"
                                                 : "fused_linear_swar";
  if (with_rope) shader += "_rope";
  if (argmax) shader += "_argmax";
  if (attend) shader += "_attend";
  if (chain) shader += "_chain";
  if (attend) {
    const AttentionPlan& a = attend->plan;
    po.constants[11] = rope->heads.n_heads / rope->heads.n_kv_heads;
    po.constants[12] = a.key_block;
    po.constants[13] = a.lanes_per_key;
    po.constants[14] = a.max_subgroups;
    const uint32_t pairs = shape_.workgroup / split.lanes * split.rows / 2;
    if (ceil_div(pairs, rope->heads.head_dim / 2) + 1 > kMaxFoldedHeads)
      throw Error(what + ": a workgroup of " + std::to_string(pairs) + " row pairs may complete more than " +
                  std::to_string(kMaxFoldedHeads) + " kv heads");
  }
  const Pipeline& pipeline = device_.pipeline(shader, po);

  FusedPush push{.cols = m.cols, .chunks = m.chunks, .tokens = T, .x_stride4 = x_stride / 4, .y_stride = stride,
                 .y_offset = y.offset, .eps = in.eps, .pairs = m.rows / 2, .pair_offset = m.rows / 2};
  if (chain) {
    push.chain_wait = chain->wait;
    push.chain_wait_count = chain->wait_count;
    push.chain_signal = chain->signal;
    push.chain_spin_limit = chain->spin_limit;
  }
  if (with_rope) {
    push.n_heads = rope->heads.n_heads;
    push.n_kv_heads = rope->heads.n_kv_heads;
    push.capacity = rope->cache.capacity;
    push.sequences = rope->cache.sequences;
    push.theta_scale = rope_theta_scale(rope->rope.theta, rope->heads.head_dim);
  }
  BufferRange argmax_partials, argmax_counter;
  if (argmax) {
    const BufferRange& sc = argmax->scratch;
    argmax_counter = {sc.buffer, sc.offset, 4};
    argmax_partials = {sc.buffer, sc.offset + kArgmaxPartialsOffset, uint64_t(m.rows) * 8};
    if (argmax->clear_counter) zero_counters_now(device_, argmax_counter);
  }
  BufferRange counters;
  if (attend) {
    push.scale_log2e = attention_scale_log2e(rope->heads, attend->scale);
    // Every dispatch leaves the counters at 0; they start there (the scratch contract of attention.h).
    if (attend->clear_counters) clear_attention_counters(device_, attend->scratch);
    counters = {attend->scratch.buffer, attend->scratch.offset, kAttentionCounterBytes};
  }
  const uint32_t groups_per_wg = shape_.workgroup / split.lanes;
  const uint32_t token_groups = ceil_div(T, tokens);
  uint32_t workgroups = 0;
  for (const MatrixSegment& seg : m.segments) {
    push.rows = seg.rows;
    push.row_base = seg.first_row;
    const uint32_t units = paired ? ceil_div(m.rows / 2, split.rows / 2) : ceil_div(seg.rows, split.rows);
    std::vector<BufferRange> bindings{seg.weights.range()};
    if (m.kind != Weights::Fp16) bindings.push_back(m.row_info);
    bindings.insert(bindings.end(), {in.x, in.norm, y.buffer});
    if (with_rope)
      bindings.insert(bindings.end(), {rope->positions, rope->cache.k, rope->cache.v,
                                       slots ? rope->slots : rope->positions});
    if (argmax) bindings.insert(bindings.end(), {argmax_partials, argmax_counter, BufferRange{argmax->result.buffer, argmax->result.offset, 8}});
    if (attend)  // q|k|v and the caches again, read back through coherent bindings
      bindings.insert(bindings.end(), {y.buffer, rope->cache.k, rope->cache.v, attend->out, counters});
    if (chain) bindings.push_back(chain->counters);
    // The segment's weights (and row info), every token's fp32 input and the norm weight, the outputs
    // (gated: half the rows), and with RoPE the k and v rows stored as fp16 and the positions.
    const double row_extra = m.kind == Weights::Ternary ? 8 : 0;  // int8: the scales are in weight_bytes
    DispatchWork work = matmul_work(seg.rows, double(m.weight_bytes) / m.rows + row_extra, m.cols, T, m.cols * 4.0,
                                    epilogue == FusedEpilogue::Accumulate);
    work.bytes += m.cols * 4.0;
    if (gated) work.bytes -= T * seg.rows * 2.0;
    if (with_rope) {
      const double kv_rows = 2.0 * rope->heads.n_kv_heads * rope->heads.head_dim;
      work.bytes += T * kv_rows * 2 + T * (slots ? 8 : 4);
    }
    if (argmax) work.bytes += 2.0 * 8 * ceil_div(units, groups_per_wg) + 8;  // partials written, read; result
    if (attend) {  // q read back, the output written; K and V rows read once per live key
      const HeadLayout& h = rope->heads;
      work.bytes += 2.0 * h.n_heads * h.head_dim * 4;
      work.bytes_per_key = 2.0 * h.n_kv_heads * h.head_dim * 2;
      work.macs_per_key = 2.0 * h.n_heads * h.head_dim;
    }
    if (chain) work.bytes += 8.0 * ceil_div(units, groups_per_wg);  // the wait's read and the count's add, a workgroup
    workgroups = ceil_div(units, groups_per_wg) * token_groups;
    rec.dispatch(pipeline, bindings, &push, sizeof(push), ceil_div(units, groups_per_wg), token_groups, 1,
                 {m.name, work});
  }
  return workgroups;
}

void FusedLinear::record_norm(Recording& rec, const NormedInput& in, const QuantizedActivations& out) const {
  if (out.values.size && out.values.size < QuantizedActivations::values_bytes(in.tokens, out.cols))
    throw Error("fused norm: the int8 values hold fewer than " + std::to_string(in.tokens) + " tokens");
  if (out.meta.size && out.meta.size < QuantizedActivations::meta_bytes(in.tokens))
    throw Error("fused norm: the scales hold fewer than " + std::to_string(in.tokens) + " tokens");
  record_norm_impl(rec, in, out.cols, true, {out.values, out.meta},
                   double(in.tokens) * (out.padded_cols() + 8));
}

void FusedLinear::record_norm(Recording& rec, const NormedInput& in, uint32_t cols, BufferRange out) const {
  if (out.size && out.size < uint64_t(in.tokens) * cols * 4)
    throw Error("fused norm: the output holds fewer than " + std::to_string(in.tokens) + " rows of " +
                std::to_string(cols) + " floats");
  record_norm_impl(rec, in, cols, false, {out}, double(in.tokens) * cols * 4);
}

void FusedLinear::record_norm_impl(Recording& rec, const NormedInput& in, uint32_t cols, bool ternary,
                                   std::vector<BufferRange> outputs, double out_bytes) const {
  const uint32_t T = in.tokens;
  const uint32_t x_stride = check_normed_input("fused norm", in, cols);
  // The same shared layout (and workgroup, subgroup size and reductions) as the fused layers; rows
  // play no part.
  const Weights kind = ternary ? Weights::Ternary : Weights::Fp16;
  const uint32_t chunks = chunks_of(kind, cols);
  if (ternary) check_ternary_cols("fused norm", cols);
  if (tokens_per_workgroup(kind, chunks, 1) == 0)
    throw Error("fused norm: one token of " + std::to_string(cols) + " inputs does not fit the shared memory of device '" +
                device_.info().name + "'");
  const Pipeline& pipeline = device_.pipeline(ternary ? "fused_norm_int8" : "fused_norm_f32",
                                              pipeline_options({shape_.lanes, shape_.rows}, chunks, 1, FusedEpilogue::Store,
                                                               shared_uvec4(kind, chunks)));
  const FusedPush push{.cols = cols, .chunks = chunks, .tokens = T, .x_stride4 = x_stride / 4, .eps = in.eps};
  std::vector<BufferRange> bindings{in.x, in.norm};
  bindings.insert(bindings.end(), outputs.begin(), outputs.end());
  const DispatchWork work{.bytes = double(T) * cols * 4 + cols * 4.0 + out_bytes};
  rec.dispatch(pipeline, bindings, &push, sizeof(push), 1, T, 1,
               {ternary ? "fused_norm_int8" : "fused_norm_f32", work});
}

}  // namespace ternvk::ops

#include "runtime/ops/ternary_gemm.h"

#include <algorithm>
#include <string>

#include "runtime/core/error.h"
#include "runtime/ops/matrix_unit_gemm.h"
#include "runtime/ops/ternary_matmul.h"

namespace ternvk::ops {
namespace {

bool power_of_two(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Fewer workgroups than this take the small-tile shapes: a large GPU runs a few workgroups per core
// at once, and ~130 cores (an H200) want several hundred to balance. Not yet tuned on a GPU.
constexpr uint64_t kFewWorkgroups = 512;

uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

uint64_t workgroups(const GemmShape& s, uint32_t rows, uint32_t tokens) {
  return ceil_div(rows, s.tile_rows()) * ceil_div(tokens, s.tile_tokens());
}

// Halves the tokens per invocation while the tile would hold at least twice `tokens`.
void fit_tokens(GemmShape& s, uint32_t tokens) {
  while (s.tokens > 1 && uint64_t(s.tile_tokens()) >= 2ull * std::max(tokens, 1u)) s.tokens /= 2;
}

void check_common(const GemmShape& s, const DeviceInfo& info, uint64_t shared, const std::string& what) {
  if (s.row_groups == 0 || s.token_groups == 0 || s.rows == 0 || s.tokens == 0 || s.k_block == 0 || s.k_split == 0 ||
      !power_of_two(s.lanes) || s.workgroup() > info.max_workgroup_invocations)
    throw Error(what + ": invalid GEMM shape: " + std::to_string(s.row_groups) + " x " + std::to_string(s.token_groups) +
                " groups of " + std::to_string(s.lanes) + " lanes in " + std::to_string(s.k_split) + " K slices (at most " +
                std::to_string(info.max_workgroup_invocations) + " invocations on device '" + info.name + "'), " +
                std::to_string(s.rows) + " rows x " + std::to_string(s.tokens) + " tokens each, K block " +
                std::to_string(s.k_block));
  if (shared > info.max_shared_memory)
    throw Error(what + ": a GEMM shape of " + std::to_string(s.tile_rows()) + " x " + std::to_string(s.tile_tokens()) +
                " with K block " + std::to_string(s.k_block) + " needs " + std::to_string(shared) +
                " bytes of shared memory; device '" + info.name + "' offers " + std::to_string(info.max_shared_memory));
}

// Halves the K split, then the token groups, then the row groups until the workgroup fits.
void fit_invocations(GemmShape& s, const DeviceInfo& info) {
  while (s.workgroup() > info.max_workgroup_invocations && s.k_split > 1) s.k_split /= 2;
  while (s.workgroup() > info.max_workgroup_invocations && s.token_groups > 1) s.token_groups /= 2;
  while (s.workgroup() > info.max_workgroup_invocations && s.row_groups > 1) s.row_groups /= 2;
}

// Shrinks the K block, then the K split, then the rows per invocation, until `shared(s)` fits.
template <class Shared>
void fit_shared(GemmShape& s, const DeviceInfo& info, Shared shared) {
  while (shared(s) > info.max_shared_memory && s.k_block > 1) --s.k_block;
  while (shared(s) > info.max_shared_memory && s.k_split > 1) s.k_split /= 2;
  while (shared(s) > info.max_shared_memory && s.rows > 1) s.rows /= 2;
}

}  // namespace

bool prefers_tiled_gemm(const DeviceInfo& info) { return !info.is_cpu(); }

bool use_gemm(MatmulKernel kernel, const DeviceInfo& info, uint32_t tokens, bool matrix_units) {
  switch (kernel) {
    case MatmulKernel::Auto: return tokens >= kGemmMinTokens && (matrix_units || prefers_tiled_gemm(info));
    case MatmulKernel::Gemv: return false;
    case MatmulKernel::Gemm: return true;
  }
  return false;
}

bool use_matrix_units(GemmUnits units, Device& device, MatrixUnitOperands operands) {
  const bool fp16 = operands == MatrixUnitOperands::Fp16;
  switch (units) {
    case GemmUnits::Auto:
      if (device.faults().any()) return false;
      return fp16 ? device.info().has_fp16_matrix_unit() && fp16_matrix_unit_gemm_agrees(device)
                  : device.info().has_int8_matrix_unit() && matrix_unit_gemm_agrees(device);
    case GemmUnits::Vector: return false;
    case GemmUnits::MatrixUnits:
      MatrixUnitTile::pick(device.info(), 64, 0, std::nullopt, operands);  // throws naming what the device lacks
      return true;
  }
  return false;
}

uint64_t GemmShape::ternary_shared_bytes(bool int8_dot) const {
  // ternary_gemm.comp: the tiles, BM * (4 KC + 1) + BN * (4 or 8 KC + 1) uvec4 with KC = KCHUNKS *
  // KSPLIT, or (KSPLIT > 1) every invocation's sums if that is more.
  const uint64_t kc = uint64_t(k_block) * k_split;
  const uint64_t x_per_chunk = int8_dot ? 4 : 8;
  const uint64_t tiles = 16 * (uint64_t(tile_rows()) * (4 * kc + 1) + uint64_t(tile_tokens()) * (x_per_chunk * kc + 1));
  const uint64_t partials = k_split > 1 ? (uint64_t(workgroup()) * rows * tokens + 3) / 4 * 16 : 0;
  return std::max(tiles, partials);
}

uint64_t GemmShape::fp16_shared_bytes() const {
  // fp16_gemm.comp: w_tile[BM * (2 KC + 2)] uvec2 and x_tile[BN * (2 KC + 1)] vec4, KC = KROUNDS * LANES.
  const uint64_t kc = uint64_t(k_block) * lanes;
  return 8 * uint64_t(tile_rows()) * (2 * kc + 2) + 16 * uint64_t(tile_tokens()) * (2 * kc + 1);
}

GemmShape GemmShape::pick_ternary(const DeviceInfo& info, bool int8_dot, uint32_t rows, uint32_t tokens) {
  GemmShape s;
  if (uses_one_subgroup_workgroups(info)) {
    // CPU devices: one thread runs a workgroup 8 lanes at a time, switching at every barrier. The
    // fastest of a sweep on lavapipe (bench_kernels --tune-tiles), where the GEMV still wins.
    s = {.row_groups = 4, .token_groups = 8, .rows = 8, .tokens = 4, .k_block = 2};
  } else {
    fit_tokens(s, tokens);
    if (workgroups(s, rows, tokens) < kFewWorkgroups)
      s = {.row_groups = 4, .token_groups = 8, .rows = 8, .tokens = 4, .k_block = 1, .k_split = 8};
  }
  fit_invocations(s, info);
  fit_tokens(s, tokens);
  fit_shared(s, info, [&](const GemmShape& g) { return g.ternary_shared_bytes(int8_dot); });
  s.validate_ternary(info, int8_dot);
  return s;
}

GemmShape GemmShape::pick_fp16(const DeviceInfo& info, uint32_t lanes, uint32_t rows, uint32_t tokens) {
  GemmShape s;
  if (uses_one_subgroup_workgroups(info)) {  // as for the ternary GEMM: the fastest of a lavapipe sweep
    s = {.row_groups = 8, .token_groups = 4, .rows = 4, .tokens = 4, .k_block = 1};
  } else {
    // 256 invocations in groups of `lanes`; token groups vary fastest (see fp16_gemm.comp). Up to 4
    // token groups, the rest rows: a tile's L2 traffic a multiply is 2 / BN bytes of fp16 weights
    // plus 4 / BM of fp32 activations, so with few groups (32 lanes: 8) rows go first (32 x 16).
    const uint32_t groups = std::max(1u, std::min(256u, info.max_workgroup_invocations) / std::max(1u, lanes));
    const uint32_t token_groups = std::clamp(groups / 4, 1u, 4u);
    s = {.row_groups = std::max(1u, groups / token_groups), .token_groups = token_groups, .rows = 8, .tokens = 8,
         .k_block = 2};
  }
  s.lanes = std::max(1u, lanes);
  fit_invocations(s, info);
  fit_tokens(s, tokens);
  if (!uses_one_subgroup_workgroups(info) && workgroups(s, rows, tokens) < kFewWorkgroups) {
    s.rows = 4;
    s.tokens = std::min(s.tokens, 4u);
  }
  // Where a K block of one round still does not fit (32 KiB devices; a round of 32 lanes is 1 KiB of
  // fp32 activations a token), fewer tokens before fewer rows: the activations are most of the tile.
  const auto shared = [](const GemmShape& g) { return g.fp16_shared_bytes(); };
  while (shared(s) > info.max_shared_memory && s.k_block > 1) --s.k_block;
  while (shared(s) > info.max_shared_memory && s.tokens > 1) s.tokens /= 2;
  while (shared(s) > info.max_shared_memory && s.token_groups > 1) s.token_groups /= 2;
  fit_shared(s, info, shared);
  s.validate_fp16(info);
  return s;
}

void GemmShape::validate_ternary(const DeviceInfo& info, bool int8_dot) const {
  if (lanes != 1) throw Error("ternary GEMM: the shape must have 1 lane per group (slices split K), got " +
                              std::to_string(lanes));
  check_common(*this, info, ternary_shared_bytes(int8_dot), "ternary GEMM");
}

void GemmShape::validate_fp16(const DeviceInfo& info) const {
  if (k_split != 1) throw Error("fp16 GEMM: the shape must have 1 K slice (lanes split K), got " +
                                std::to_string(k_split));
  check_common(*this, info, fp16_shared_bytes(), "fp16 GEMM");
  if (lanes > 1 && !info.subgroup_shuffle)
    throw Error("fp16 GEMM: device '" + info.name + "' lacks subgroup shuffles, which a shape of " +
                std::to_string(lanes) + " lanes per group needs");
  if (lanes > info.min_subgroup_size)
    throw Error("fp16 GEMM: groups of " + std::to_string(lanes) + " lanes need subgroups at least that large; device '" +
                info.name + "' may use " + std::to_string(info.min_subgroup_size));
}

PipelineOptions GemmShape::pipeline_options(Epilogue epilogue) const {
  PipelineOptions po;
  po.constants = {{0, workgroup()}, {1, row_groups}, {2, token_groups}, {3, rows},
                  {4, tokens},      {5, k_block},    {6, static_cast<uint32_t>(epilogue)}};
  po.constants[7] = lanes;    // fp16_gemm.comp's LANES (ternary_gemm.comp has no id 7: ignored)
  po.constants[8] = k_split;  // ternary_gemm.comp's KSPLIT (fp16_gemm.comp has no id 8)
  return po;
}

TernaryGemm::TernaryGemm(Device& device, bool int8_dot, std::optional<GemmShape> shape, GemmUnits units)
    : device_(device), dot_(int8_dot), shape_(shape) {
  if (shape_) shape_->validate_ternary(device.info(), dot_);
  // A shape given for the tiled kernel means the tiled kernel (tests, benchmarks).
  matrix_units_ = !(shape_ && units == GemmUnits::Auto) && use_matrix_units(units, device);
}

GemmShape TernaryGemm::shape_for(uint32_t rows, uint32_t tokens) const {
  if (shape_) return *shape_;
  return GemmShape::pick_ternary(device_.info(), dot_, rows, tokens);
}

void TernaryGemm::record(Recording& rec, const TernaryMatrixGpu& w, const QuantizedActivations& x, uint32_t tokens,
                         const MatmulOutput& y, uint32_t y_stride, Epilogue epilogue) const {
  if (matrix_units_) return MatrixUnitGemm(device_).record(rec, w, x, tokens, y, y_stride, epilogue);
  const GemmShape shape = shape_for(w.rows(), tokens);
  const Pipeline& pipeline = device_.pipeline(shader_name(), shape.pipeline_options(epilogue));
  record_ternary_gemm_dispatches(rec, pipeline, w, x, tokens, y, y_stride, epilogue, shape.tile_rows(),
                                 shape.tile_tokens());
}

void record_ternary_gemm_dispatches(Recording& rec, const Pipeline& pipeline, const TernaryMatrixGpu& w,
                                    const QuantizedActivations& x, uint32_t tokens, const MatmulOutput& y,
                                    uint32_t y_stride, Epilogue epilogue, uint32_t tile_rows, uint32_t tile_tokens) {
  struct {
    uint32_t chunks, rows, row_base, tokens, y_stride, y_offset;
  } push{w.padded_cols() / 64, 0, 0, tokens, y_stride, y.offset};
  const uint32_t token_tiles = (tokens + tile_tokens - 1) / tile_tokens;
  for (const MatrixSegment& seg : w.segments()) {
    push.rows = seg.rows;
    push.row_base = seg.first_row;
    const DispatchWork work = matmul_work(seg.rows, w.padded_cols() / 4.0 + 8, w.cols(), tokens, w.padded_cols() + 8.0,
                                          epilogue == Epilogue::Accumulate);
    rec.dispatch(pipeline, {seg.weights.range(), w.row_info().range(), x.values, x.meta, y.buffer}, push,
                 (seg.rows + tile_rows - 1) / tile_rows, token_tiles, 1, {w.name(), work});
  }
}

}  // namespace ternvk::ops

#include "runtime/ops/embedding.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "runtime/core/error.h"
#include "runtime/device/device.h"
#include "runtime/ops/op_checks.h"

namespace ternvk::ops {
uint64_t embedding_row_bytes(EmbeddingTable type, uint32_t cols) {
  switch (type) {
    case EmbeddingTable::F16: return (uint64_t(cols) + 7) / 8 * 8 * 2;
    case EmbeddingTable::I8: return (uint64_t(cols) + 15) / 16 * 16;
    case EmbeddingTable::F32: break;
  }
  return uint64_t(cols) * 4;
}

std::vector<RowSegment> split_rows(uint32_t rows, uint64_t row_bytes, uint64_t max_bytes, uint64_t alignment) {
  if (row_bytes == 0) throw Error("split_rows: rows of 0 bytes");
  if (alignment == 0) alignment = 1;
  // Segment starts must be aligned: rows per segment must be a multiple of this step.
  const uint64_t step = alignment / std::gcd(alignment, row_bytes);
  uint64_t per_segment = max_bytes / row_bytes / step * step;
  if (per_segment == 0)
    throw Error("split_rows: a row of " + std::to_string(row_bytes) + " bytes (x" + std::to_string(step) +
                " rows for offset alignment " + std::to_string(alignment) + ") does not fit in " +
                std::to_string(max_bytes) + " bytes");
  std::vector<RowSegment> out;
  for (uint64_t first = 0; first < rows; first += per_segment) {
    const uint64_t n = std::min<uint64_t>(per_segment, rows - first);
    out.push_back({uint32_t(first), uint32_t(n), first * row_bytes, n * row_bytes});
  }
  return out;
}

void record_embedding(Recording& rec, const EmbeddingArgs& a) {
  if (a.tokens == 0 || a.cols == 0 || a.vocab == 0) throw Error("embedding: tokens, cols and vocab must be positive");
  if (!a.ids.buffer || a.ids.size < uint64_t(a.tokens) * 4)
    throw Error("embedding: ids buffer holds " + std::to_string(a.ids.size) + " bytes, " + std::to_string(a.tokens) +
                " tokens need " + std::to_string(uint64_t(a.tokens) * 4));
  if (!a.out.buffer || a.out.size < uint64_t(a.tokens) * a.cols * 4)
    throw Error("embedding: out buffer holds " + std::to_string(a.out.size) + " bytes, [" + std::to_string(a.tokens) +
                ", " + std::to_string(a.cols) + "] fp32 needs " + std::to_string(uint64_t(a.tokens) * a.cols * 4));
  if (overlaps(a.ids, a.out)) throw Error("embedding: out must not overlap ids");
  if (a.segments.empty()) throw Error("embedding: no table segments given");
  const uint64_t row_bytes = embedding_row_bytes(a.type, a.cols);
  uint32_t next = 0;
  for (size_t s = 0; s < a.segments.size(); ++s) {
    const auto& seg = a.segments[s];
    const std::string name = "embedding: segment " + std::to_string(s);
    if (seg.first_row != next)
      throw Error(name + " starts at row " + std::to_string(seg.first_row) + " but row " + std::to_string(next) +
                  " is next (segments must cover the table in order, without gaps or overlaps)");
    if (seg.rows == 0 || !seg.table.buffer) throw Error(name + " is empty");
    if (seg.table.size < seg.rows * row_bytes)
      throw Error(name + " holds " + std::to_string(seg.table.size) + " bytes but its " + std::to_string(seg.rows) +
                  " rows of " + std::to_string(row_bytes) + " bytes need " + std::to_string(seg.rows * row_bytes));
    next += seg.rows;
  }
  if (next != a.vocab)
    throw Error("embedding: segments cover " + std::to_string(next) + " rows but the vocabulary has " +
                std::to_string(a.vocab));

  Device& dev = rec.device();
  const DeviceInfo& info = dev.info();
  if (a.tokens > 65535) throw Error("embedding: more than 65535 tokens in one dispatch; split the batch");
  const uint32_t wg = a.workgroup ? a.workgroup : elementwise_workgroup(info);
  const bool i8 = a.type == EmbeddingTable::I8;
  if (i8 && (!a.scales.buffer || (a.scales.size && a.scales.size < uint64_t(a.vocab) * 4)))
    throw Error("embedding: an int8 table needs one fp32 scale per row (" + std::to_string(a.vocab) + " rows)");
  const char* shader = a.type == EmbeddingTable::F16 ? "embedding" : i8 ? "embedding_i8" : "embedding_f32";
  const Pipeline& pipe = dev.pipeline(shader, {.constants = {{0, wg}}});
  const uint32_t items = a.type == EmbeddingTable::F16 ? (a.cols + 1) / 2 : i8 ? (a.cols + 3) / 4 : a.cols;
  const uint32_t row_stride = uint32_t(row_bytes / 4);
  for (size_t s = 0; s < a.segments.size(); ++s) {
    const auto& seg = a.segments[s];
    struct {
      uint32_t cols, row_stride, first_row, segment_rows, total_rows, zero_invalid;
    } push{a.cols, row_stride, seg.first_row, seg.rows, a.vocab, s == 0 ? 1u : 0u};
    std::vector<BufferRange> bindings = {a.ids, seg.table, a.out};
    if (i8) bindings.push_back(a.scales);  // binding 3 of embedding_i8
    // Ids, one table row per token (found in one of the segments), the fp32 rows written.
    const double T = a.tokens;
    const DispatchWork work{.bytes = (T * 4 + T * double(row_bytes) + T * a.cols * 4) / double(a.segments.size())};
    rec.dispatch(pipe, bindings, &push, sizeof push, (items + wg - 1) / wg, a.tokens, 1, {"", work});
  }
}

void validate_token_ids(std::span<const uint32_t> ids, uint32_t vocab) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= vocab)
      throw Error("token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary of " + std::to_string(vocab) + " tokens");
}

}  // namespace ternvk::ops

// Token embedding lookup: ids (uint32 [tokens]) -> fp32 rows [tokens, cols], from an FP16 table
// (architecture.md "FP16 matrix": rows padded to round_up(cols, 8) halves, read as uint words) or
// an F32 table (rows of cols floats). A table larger than maxStorageBufferRange (128256 x 2560
// fp16 is 657 MB) is given as row segments, each its own binding; the op dispatches once per
// segment.
//
// Out-of-range ids (>= vocab) never read out of bounds: their output rows are zeros. That is a
// safety net, not a feature; the host should validate ids before uploading them
// (validate_token_ids) and report the bad token to the user.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/device/memory.h"
#include "runtime/device/recording.h"

namespace ternvk::ops {

// I8: the int8 head's rows (ops/int8_matmul.h: round_up(cols, 16) bytes) with one fp32 scale per row.
enum class EmbeddingTable { F16, F32, I8 };

// Bytes of one table row in the device layout: round_up(cols, 8) * 2 for F16, cols * 4 for F32,
// round_up(cols, 16) for I8.
uint64_t embedding_row_bytes(EmbeddingTable type, uint32_t cols);

// A split of `rows` rows of `row_bytes` each into segments of at most `max_bytes` whose byte
// offsets are multiples of `alignment` (minStorageBufferOffsetAlignment), e.g. to bind one large
// buffer piecewise. Throws when one row alone exceeds max_bytes.
struct RowSegment {
  uint32_t first_row = 0;
  uint32_t rows = 0;
  uint64_t offset = 0;  // bytes from the start of the table
  uint64_t bytes = 0;
};
std::vector<RowSegment> split_rows(uint32_t rows, uint64_t row_bytes, uint64_t max_bytes, uint64_t alignment);

struct EmbeddingSegment {
  BufferRange table;       // rows [first_row, first_row + rows) of the table, in the device layout
  uint32_t first_row = 0;
  uint32_t rows = 0;
};

struct EmbeddingArgs {
  BufferRange ids;                          // uint32 [tokens]
  std::vector<EmbeddingSegment> segments;   // in row order, covering [0, vocab) without gaps
  BufferRange out;                          // fp32 [tokens, cols]
  uint32_t tokens = 0;
  uint32_t cols = 0;
  uint32_t vocab = 0;
  EmbeddingTable type = EmbeddingTable::F16;
  BufferRange scales;                       // I8 only: fp32 [vocab]
  uint32_t workgroup = 0;                   // 0 picks from DeviceInfo
};

// Throws ternvk::Error when segments leave gaps, overlap, or hold fewer bytes than their rows need.
void record_embedding(Recording& rec, const EmbeddingArgs& args);

// Throws ternvk::Error naming the first id >= vocab and its position.
void validate_token_ids(std::span<const uint32_t> ids, uint32_t vocab);

}  // namespace ternvk::ops

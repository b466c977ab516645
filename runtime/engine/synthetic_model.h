// Synthetic BitNet b1.58 models: GGUF files of a named, published shape with seeded random ternary
// weights (I2_S) and a random F16 embedding, written by the benchmarks so that speed and memory can
// be measured at every size of the BitNet b1.58 paper without downloading anything. The weights are
// meaningless; the shapes, formats and therefore the work per token are the real ones.
//
// Every file uses the `bitnet-b1.58` architecture (2B4T: squared-ReLU gated FFN, sub-norms, tied
// embedding). The 1bitLLM sizes use SiLU in the original; the activation is an elementwise op whose
// cost is independent of the choice, so one architecture serves every shape.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine/model_config.h"

namespace ternvk {

struct SyntheticShape {
  std::string name;    // "2b4t", "700m", "1.3b", "3b", "3.9b"
  std::string label;   // "BitNet b1.58 3B"
  int dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, ffn_dim = 0, vocab = 0, context = 0;
  std::string source;  // where the shape comes from (and any deviation from it)
};

// The named shapes, in the order of the paper's table (2b4t first).
const std::vector<SyntheticShape>& synthetic_shapes();
// nullopt for an unknown name (case-insensitive).
std::optional<SyntheticShape> find_synthetic_shape(std::string_view name);
// "2b4t, 700m, 1.3b, 3b, 3.9b" (for help and errors).
std::string synthetic_shape_names();

// The model config of `shape`, with `layers` / `vocab` overrides when > 0 (a depth cut for slow devices).
ModelConfig synthetic_config(const SyntheticShape& shape, int layers = 0, int vocab = 0);

// Writes a GGUF of `config` (bitnet-b1.58 keys and tensor names; linear weights I2_S, embedding F16,
// norms F32) with weights from `seed`. Streams: host memory holds one tensor at a time (the largest,
// a 2B4T FFN matrix, is ~18 M int8 values), and the embedding is written in chunks of rows, so a full
// 2B4T (~0.5 GB I2_S + 0.66 GB F16 embedding) needs ~40 MB of RAM. Writes `path`.tmp and renames it.
// `progress(done, total)` is called after each tensor.
void write_synthetic_gguf(const ModelConfig& config, const std::filesystem::path& path, uint64_t seed = 1,
                          const std::function<void(int, int)>& progress = {});

// The file of a shape with overrides in `cache_dir` (default: $TERNVK_CACHE, else
// $XDG_CACHE_HOME/ternvk, else ~/.cache/ternvk, else the system temp dir; subfolder `synthetic`),
// written when it is not there yet. The name encodes the shape, cuts and seed, so files are reused.
std::filesystem::path ensure_synthetic_model(const SyntheticShape& shape, int layers = 0, int vocab = 0,
                                             uint64_t seed = 1, std::filesystem::path cache_dir = {},
                                             const std::function<void(int, int)>& progress = {});

}  // namespace ternvk

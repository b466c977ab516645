#include "runtime/engine/synthetic_model.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <unistd.h>

#include "runtime/core/error.h"
#include "runtime/core/half.h"
#include "runtime/formats/ggml_types.h"
#include "runtime/formats/gguf_value.h"
#include "runtime/formats/ternary_encode.h"

namespace ternvk {
namespace {

// splitmix64: fast, seedable per tensor (so any tensor can be regenerated on its own).
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

uint64_t tensor_seed(uint64_t seed, uint64_t index) { return Rng{seed * 0x100000001b3ull + index}.next(); }

// Minimal streaming GGUF v3 writer: the header is computed from the tensor list, then each
// tensor's bytes are produced and written in order (GgufWriter builds the whole file in memory).
class Out {
 public:
  explicit Out(const std::filesystem::path& p) : path_(p), f_(p, std::ios::binary | std::ios::trunc) {
    if (!f_) throw Error("cannot create '" + p.string() + "'");
  }
  template <class T>
  void put(T v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void bytes(const void* p, size_t n) {
    f_.write(static_cast<const char*>(p), std::streamsize(n));
    if (!f_) throw Error("cannot write to '" + path_.string() + "' (disk full?)");
    pos_ += n;
  }
  void pad(uint64_t a) {
    static const char zeros[64] = {};
    while (pos_ % a) bytes(zeros, std::min<uint64_t>(a - pos_ % a, 64));
  }
  void close() {
    f_.close();
    if (!f_) throw Error("cannot finish writing '" + path_.string() + "'");
  }

 private:
  std::filesystem::path path_;
  std::ofstream f_;
  uint64_t pos_ = 0;
};

struct TensorPlan {
  std::string name;
  std::vector<int64_t> ne;  // innermost first
  GgmlType type;
  uint64_t bytes;
  enum Kind { Linear, Norm, Embedding } kind;
};

constexpr uint64_t kAlign = 32;

uint64_t i2s_bytes(int64_t rows, int64_t cols) { return uint64_t(rows * cols) / 4 + 32; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& ch : out) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

}  // namespace

const std::vector<SyntheticShape>& synthetic_shapes() {
  static const std::vector<SyntheticShape> shapes = {
      {"2b4t", "BitNet b1.58 2B4T", 2560, 30, 20, 5, 6912, 128256, 4096,
       "microsoft/bitnet-b1.58-2B-4T config.json"},
      {"700m", "BitNet b1.58 700M", 1536, 24, 16, 16, 4096, 32002, 2048,
       "1bitLLM/bitnet_b1_58-large config.json"},
      {"1.3b", "BitNet b1.58 1.3B", 2048, 24, 32, 32, 5460, 32002, 2048, "1bitLLM/bitnet_b1_58-xl config.json"},
      // The original has 32 heads of 100; ternvk's attention needs head_dim % 8 == 0, so 25 heads
      // of 128: the same q/k/v/o matrices, KV cache size and attention MACs.
      {"3b", "BitNet b1.58 3B", 3200, 26, 25, 25, 8640, 32002, 2048,
       "1bitLLM/bitnet_b1_58-3B config.json (32x100 heads -> 25x128)"},
      // Not released; the paper gives only the size. The 3B shape with LLaMA-7B's FFN (11008) has
      // 3.91 B parameters, which matches; the heads as for 3B.
      {"3.9b", "BitNet b1.58 3.9B", 3200, 26, 25, 25, 11008, 32002, 2048,
       "inferred: 3B shape with FFN 11008 (3.91 B params); not published"},
  };
  return shapes;
}

std::optional<SyntheticShape> find_synthetic_shape(std::string_view name) {
  const std::string n = lower(name);
  for (const auto& s : synthetic_shapes())
    if (s.name == n) return s;
  return std::nullopt;
}

std::string synthetic_shape_names() {
  std::string out;
  for (const auto& s : synthetic_shapes()) out += (out.empty() ? "" : ", ") + s.name;
  return out;
}

ModelConfig synthetic_config(const SyntheticShape& s, int layers, int vocab) {
  ModelConfig c;
  c.arch = Architecture::BitNet2B4T;
  c.arch_name = "bitnet-b1.58";
  c.dim = s.dim;
  c.n_layers = layers > 0 ? layers : s.n_layers;
  c.n_heads = s.n_heads;
  c.n_kv_heads = s.n_kv_heads;
  c.head_dim = s.dim / s.n_heads;
  c.ffn_dim = s.ffn_dim;
  c.vocab = vocab > 0 ? vocab : s.vocab;
  c.context = s.context;
  c.rms_eps = 1e-5f;
  c.rope_theta = s.name == "2b4t" ? 500000.0f : 10000.0f;
  c.validate("synthetic model " + s.name);
  return c;
}

void write_synthetic_gguf(const ModelConfig& c, const std::filesystem::path& path, uint64_t seed,
                          const std::function<void(int, int)>& progress) {
  c.validate("synthetic model");
  const std::string a = c.arch_name;
  std::vector<TensorPlan> plan;
  auto f32 = [&](std::string name, int64_t n) {
    plan.push_back({std::move(name), {n}, GgmlType::F32, uint64_t(n) * 4, TensorPlan::Norm});
  };
  auto lin = [&](std::string name, int64_t rows, int64_t cols) {
    if ((rows * cols) % 128)
      throw Error("synthetic model: " + name + " has " + std::to_string(rows * cols) +
                  " values; I2_S needs a multiple of 128");
    plan.push_back({std::move(name), {cols, rows}, GgmlType::I2_S, i2s_bytes(rows, cols), TensorPlan::Linear});
  };
  plan.push_back({"token_embd.weight", {c.dim, c.vocab}, GgmlType::F16, uint64_t(c.dim) * c.vocab * 2,
                  TensorPlan::Embedding});
  f32("output_norm.weight", c.dim);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    f32(p + "attn_norm.weight", c.dim);
    f32(p + "attn_sub_norm.weight", c.q_dim());
    f32(p + "ffn_norm.weight", c.dim);
    f32(p + "ffn_sub_norm.weight", c.ffn_dim);
    lin(p + "attn_q.weight", c.q_dim(), c.dim);
    lin(p + "attn_k.weight", c.kv_dim(), c.dim);
    lin(p + "attn_v.weight", c.kv_dim(), c.dim);
    lin(p + "attn_output.weight", c.dim, c.q_dim());
    lin(p + "ffn_gate.weight", c.ffn_dim, c.dim);
    lin(p + "ffn_up.weight", c.ffn_dim, c.dim);
    lin(p + "ffn_down.weight", c.dim, c.ffn_dim);
  }

  std::filesystem::path tmp = path;
  tmp += ".tmp" + std::to_string(::getpid());
  {
    Out out(tmp);
    out.put<uint32_t>(0x46554747);  // "GGUF"
    out.put<uint32_t>(3);
    out.put<uint64_t>(plan.size());
    struct Kv { std::string key; GgufType type; uint32_t u; float f; std::string s; };
    const std::vector<Kv> kvs = {
        {"general.architecture", GgufType::STRING, 0, 0, a},
        {"general.name", GgufType::STRING, 0, 0, "ternvk-synthetic"},
        {a + ".context_length", GgufType::U32, uint32_t(c.context), 0, ""},
        {a + ".embedding_length", GgufType::U32, uint32_t(c.dim), 0, ""},
        {a + ".block_count", GgufType::U32, uint32_t(c.n_layers), 0, ""},
        {a + ".feed_forward_length", GgufType::U32, uint32_t(c.ffn_dim), 0, ""},
        {a + ".attention.head_count", GgufType::U32, uint32_t(c.n_heads), 0, ""},
        {a + ".attention.head_count_kv", GgufType::U32, uint32_t(c.n_kv_heads), 0, ""},
        {a + ".attention.layer_norm_rms_epsilon", GgufType::F32, 0, c.rms_eps, ""},
        {a + ".rope.freq_base", GgufType::F32, 0, c.rope_theta, ""},
        {a + ".rope.dimension_count", GgufType::U32, uint32_t(c.head_dim), 0, ""},
        {a + ".vocab_size", GgufType::U32, uint32_t(c.vocab), 0, ""},
    };
    out.put<uint64_t>(kvs.size());
    for (const auto& kv : kvs) {
      out.str(kv.key);
      out.put<uint32_t>(uint32_t(kv.type));
      if (kv.type == GgufType::STRING) out.str(kv.s);
      else if (kv.type == GgufType::U32) out.put<uint32_t>(kv.u);
      else out.put<float>(kv.f);
    }
    uint64_t offset = 0;
    for (const auto& t : plan) {
      out.str(t.name);
      out.put<uint32_t>(uint32_t(t.ne.size()));
      for (int64_t d : t.ne) out.put<uint64_t>(uint64_t(d));
      out.put<uint32_t>(uint32_t(t.type));
      out.put<uint64_t>(offset);
      offset += (t.bytes + kAlign - 1) / kAlign * kAlign;
    }
    out.pad(kAlign);
    int done = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      const TensorPlan& t = plan[i];
      Rng rng{tensor_seed(seed, i)};
      if (t.kind == TensorPlan::Norm) {
        // Norm weights in [0.5, 1.5] on a 1/64 grid (exact in fp16/bf16).
        std::vector<float> v(size_t(t.ne[0]));
        for (auto& x : v) x = 0.5f + float(rng.next() % 65) / 64.0f;
        out.bytes(v.data(), v.size() * 4);
      } else if (t.kind == TensorPlan::Embedding) {
        // Rows of values in [-1, 1] on a 1/64 grid, a few thousand rows at a time.
        const int64_t cols = t.ne[0], rows = t.ne[1];
        const int64_t chunk = std::max<int64_t>(1, (8 << 20) / (cols * 2));
        std::vector<uint16_t> h;
        for (int64_t r = 0; r < rows; r += chunk) {
          const int64_t n = std::min(chunk, rows - r) * cols;
          h.resize(size_t(n));
          for (auto& x : h) x = float_to_half(float(int(rng.next() % 129) - 64) / 64.0f);
          out.bytes(h.data(), h.size() * 2);
        }
      } else {
        TernaryMatrix m{t.ne[1], t.ne[0], std::vector<int8_t>(size_t(t.ne[0] * t.ne[1])), 0};
        size_t k = 0;
        while (k < m.values.size()) {
          uint64_t r = rng.next();
          // 8 bytes per draw, each mapped to {-1, 0, 1} (bias 1/256 towards -1: irrelevant here).
          for (int b = 0; b < 8 && k < m.values.size(); ++b, r >>= 8) m.values[k++] = int8_t(int(r & 0xff) % 3 - 1);
        }
        // Scales like a trained layer's (keeps activations in a sane range): 16..40 / 1024.
        m.scale = float(16 + rng.next() % 25) / 1024.0f;
        auto bytes = encode_i2_s(m);
        if (bytes.size() != t.bytes) throw Error("internal: I2_S size mismatch for " + t.name);
        out.bytes(bytes.data(), bytes.size());
      }
      out.pad(kAlign);
      if (progress) progress(++done, int(plan.size()));
    }
    out.close();
  }
  std::filesystem::rename(tmp, path);
}

std::filesystem::path ensure_synthetic_model(const SyntheticShape& shape, int layers, int vocab, uint64_t seed,
                                             std::filesystem::path cache_dir,
                                             const std::function<void(int, int)>& progress) {
  const ModelConfig c = synthetic_config(shape, layers, vocab);
  if (cache_dir.empty()) {
    if (const char* e = std::getenv("TERNVK_CACHE"); e && *e) cache_dir = e;
    else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) cache_dir = std::filesystem::path(x) / "ternvk";
    else if (const char* h = std::getenv("HOME"); h && *h) cache_dir = std::filesystem::path(h) / ".cache" / "ternvk";
    else cache_dir = std::filesystem::temp_directory_path() / "ternvk";
  }
  const auto dir = cache_dir / "synthetic";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create the cache folder '" + dir.string() + "': " + ec.message());
  const auto path = dir / (shape.name + "-L" + std::to_string(c.n_layers) + "-V" + std::to_string(c.vocab) + "-s" +
                           std::to_string(seed) + "-v1.gguf");
  if (!std::filesystem::exists(path)) write_synthetic_gguf(c, path, seed, progress);
  return path;
}

}  // namespace ternvk

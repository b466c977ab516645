// How many bytes each op of a BitNet forward pass moves and how many multiply-accumulates it does,
// derived from the model's shape alone (the profiler divides them by measured GPU time to get GB/s,
// GMAC/s and the fraction of peak bandwidth). Kept free of engine types so any front end (the CLI,
// the desktop app) can fill a TransformerShape from its ModelConfig.
//
// Formulas (T tokens in the pass, K/N the in/out size of a linear layer, Kp = round_up(K, 64),
// K8 = round_up(K, 8); "bytes" = unique bytes read + written, i.e. the ideal DRAM traffic; caches
// that make a kernel re-read the same bytes are not counted):
//   ternary_matmul  N*Kp/4 (2-bit weights) + N*8 (row code sum, scale) + T*(Kp+8) (int8 x + meta)
//                   + T*N*4 (fp32 y; x2 when accumulating into the residual)      MACs T*N*K
//   fp16_matmul     N*K8*2 (fp16 weights) + T*K*4 (fp32 x) + T*N*4 (y; x2 accumulate) MACs T*N*K
//   rmsnorm_quant   T*K*4 + K*4 (x, weight) + T*(Kp+8) (int8 out + meta)
//   rmsnorm         T*K*4 + K*4 + T*K*4
//   rope            T*(Q+2KV)*4 read, T*(Q+KV)*4 written back, T*2*KV*2 fp16 cache rows  (Q, KV: q/kv dims)
//   attention       T*Q*4 (q) + 2*(pmax+1)*KV*2 (K and V cache rows up to the last position, read once)
//                   + output T*Q*4, or with a split the partials T*H*chunks*(hd+2)*4
//                   MACs  sum over tokens of 2*(p+1)*H*hd
//   attention_combine  partials T*H*chunks*(hd+2)*4 + T*Q*4
//   gated_activation   T*2F*4 + T*F*4
//   embedding       T*4 + T*D*2 + T*D*4
//   argmax / topk   rows*V*4 + partials (8 bytes per part); the merge pass its partials only
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace ternvk::profiler {

struct Work {
  double bytes = 0;  // bytes read + written
  double macs = 0;   // multiply-accumulates (0: not a matmul-like op)
  Work& operator+=(const Work& o) {
    bytes += o.bytes;
    macs += o.macs;
    return *this;
  }
};

// Expected work of one replay of a recording, per op kind (see kind_of()).
using PassWork = std::map<std::string, Work, std::less<>>;

// The op family of a dispatch label (shader name): variants of one shader share a kind
// ("ternary_matmul_dot" -> "ternary_matmul", "rmsnorm_shared" -> "rmsnorm"); a label the profiler
// does not know is its own kind.
std::string kind_of(std::string_view label);

struct TransformerShape {
  int dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, ffn_dim = 0, vocab = 0;
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

struct PassSpec {
  int tokens = 1;            // T
  int first_position = 0;    // position of the first token
  bool fp16_linear = false;  // the FP16 baseline (float norm + fp16 matmul) instead of int8 + ternary
  bool embedding = true;     // the first stage
  int head_rows = 1;         // rows of logits computed by the head (0: no head in this pass)
  bool int8_head = false;    // the head as int8 rows + row scales, not FP16
  bool int8_embedding = false;  // the embedding read from those int8 rows (int8 head and tied embedding)
  enum Select { None, Argmax, TopK } select = None;
  int select_parts = 1;      // workgroups of the first argmax/top-k pass (1: no merge pass)
  int topk = 0;              // k when select == TopK
  int attention_chunks = 1;  // key chunks of the attention split (1: no split)
  int attention_chunk = 0;   // keys per chunk when split
};

// Work per op kind; with `by_matrix`, the linear layers are keyed by matrix instead ("qkv", "o",
// "gate|up", "down", "head": see matrix_of()) so that a per-matrix table gets exact figures.
PassWork estimate_pass_work(const TransformerShape& s, const PassSpec& p, bool by_matrix = false);

// The engine labels matmul dispatches with the matrix's name ("layer 3 gate|up", "token embedding /
// output head", "output head"). Returns "qkv", "o", "gate|up", "down" or "head" for such labels, ""
// for any other (a shader name).
std::string matrix_of(std::string_view label);

// A dispatch as the profiler shows it: `shader` (the shader that ran: the matmul shader for a
// matrix label) and `op` (the matrix for matmuls, else the shader).
struct DispatchName {
  std::string shader, op;
};
// `ternary_shader`: the ternary matmul's shader ("ternary_matmul_dot" / "ternary_matmul_swar");
// `fp16_linear`: the layers' matrices are FP16 (the baseline). The head runs on fp16_matmul, or on
// int8_matmul with `int8_head`.
DispatchName name_dispatch(std::string_view label, bool fp16_linear, const std::string& ternary_shader,
                           bool int8_head = false);

}  // namespace ternvk::profiler

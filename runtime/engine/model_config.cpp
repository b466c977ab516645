#include "runtime/engine/model_config.h"

#include <cmath>
#include <sstream>

#include "runtime/core/error.h"

namespace ternvk {

void ModelConfig::validate(const std::string& source) const {
  auto fail = [&](const std::string& what) { throw Error(source + ": " + what); };
  auto in_range = [&](const char* name, int v, int lo, int hi) {
    if (v < lo || v > hi)
      fail(std::string(name) + " is " + std::to_string(v) + ", expected " + std::to_string(lo) + ".." +
           std::to_string(hi));
  };
  in_range("hidden size", dim, 1, 1 << 16);
  in_range("layer count", n_layers, 1, 1024);
  in_range("head count", n_heads, 1, 1024);
  in_range("KV head count", n_kv_heads, 1, n_heads);
  in_range("head dim", head_dim, 2, 1024);
  in_range("FFN size", ffn_dim, 1, 1 << 18);
  in_range("vocabulary size", vocab, 1, 1 << 22);
  in_range("context length", context, 1, 1 << 22);
  if (n_heads % n_kv_heads) fail("head count " + std::to_string(n_heads) + " is not a multiple of the KV head count " + std::to_string(n_kv_heads));
  if (head_dim % 2) fail("head dim " + std::to_string(head_dim) + " is odd; RoPE needs an even head dim");
  if (!(rms_eps > 0.0f) || rms_eps > 1.0f) fail("RMSNorm epsilon " + std::to_string(rms_eps) + " is not in (0, 1]");
  if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta))
    fail("RoPE theta " + std::to_string(rope_theta) + " must be a finite number > 0");
}

std::string ModelConfig::describe() const {
  std::ostringstream out;
  out << arch_name << " (" << (arch == Architecture::BitNet2B4T ? "BitNet b1.58 2B4T graph, squared-ReLU FFN"
                                                                 : "1bitLLM BitNet graph, SiLU FFN")
      << "): hidden " << dim << ", " << n_layers << " layers, " << n_heads << " heads / " << n_kv_heads
      << " KV heads of " << head_dim << ", FFN " << ffn_dim << ", vocab " << vocab << ", context " << context
      << ", RoPE theta " << rope_theta << (rope_neox ? " (NeoX)" : "") << ", RMSNorm eps " << rms_eps;
  return out.str();
}

}  // namespace ternvk

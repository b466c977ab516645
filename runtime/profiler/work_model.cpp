#include "runtime/profiler/work_model.h"

#include <algorithm>

namespace ternvk::profiler {
namespace {
double round_up(double v, double m) { return double(uint64_t((v + m - 1) / m) * uint64_t(m)); }
bool starts(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
}  // namespace

std::string kind_of(std::string_view label) {
  static const std::pair<const char*, const char*> prefixes[] = {
      {"ternary_matmul", "ternary_matmul"},     {"fp16_matmul", "fp16_matmul"}, {"int8_matmul", "int8_matmul"},
      {"rmsnorm_quant_gated", "rmsnorm_quant_gated"}, {"rmsnorm_quant", "rmsnorm_quant"}, {"rmsnorm", "rmsnorm"},
      {"attention_combine", "attention_combine"}, {"attention", "attention"},
      {"rope", "rope"},                         {"argmax_merge", "argmax_merge"},
      {"argmax", "argmax"},                     {"topk_merge", "topk_merge"},
      {"topk", "topk"},                         {"embedding", "embedding"},
      {"gated_activation", "gated_activation"}, {"residual_add", "residual_add"},
  };
  for (const auto& [p, k] : prefixes)
    if (starts(label, p)) return k;
  return std::string(label);
}

PassWork estimate_pass_work(const TransformerShape& s, const PassSpec& p, bool by_matrix) {
  PassWork w;
  const double T = p.tokens, D = s.dim, Q = s.q_dim(), KV = s.kv_dim(), F = s.ffn_dim, V = s.vocab;
  const double H = s.n_heads, hd = s.head_dim;
  // `quant`: the dispatch that quantizes the input (it reads `in` floats per token; default K).
  auto linear = [&](const char* matrix, double N, double K, bool accumulate, const char* quant = "rmsnorm_quant",
                    double in = 0) {
    if (in == 0) in = K;
    const double out = T * N * 4 * (accumulate ? 2 : 1);
    if (p.fp16_linear) {
      w["rmsnorm"] += {T * K * 4 + K * 4 + T * K * 4, 0};
      w[by_matrix ? matrix : "fp16_matmul"] += {N * round_up(K, 8) * 2 + T * K * 4 + out, T * N * K};
    } else {
      const double Kp = round_up(K, 64);
      w[quant] += {T * in * 4 + K * 4 + T * (Kp + 8), 0};
      w[by_matrix ? matrix : "ternary_matmul"] += {N * Kp / 4 + N * 8 + T * (Kp + 8) + out, T * N * K};
    }
  };
  if (p.embedding) w["embedding"] += {T * 4 + T * (p.int8_embedding ? D + 4 : D * 2) + T * D * 4, 0};
  const double last = p.first_position + T - 1;
  double attn_macs = 0;
  for (int t = 0; t < p.tokens; ++t) attn_macs += 2.0 * (p.first_position + t + 1) * H * hd;
  for (int l = 0; l < s.n_layers; ++l) {
    linear("qkv", Q + 2 * KV, D, false);
    w["rope"] += {T * (Q + 2 * KV) * 4 + T * (Q + KV) * 4 + T * 2 * KV * 2 + T * 4, 0};
    const double kv_read = 2 * (last + 1) * KV * 2;
    if (p.attention_chunks > 1) {
      // Only chunks that hold keys at or before the last position do work.
      const double live = p.attention_chunk > 0 ? std::min<double>(p.attention_chunks,
                                                                   (uint64_t(last) / p.attention_chunk) + 1)
                                                : p.attention_chunks;
      const double partials = T * H * live * (hd + 2) * 4;
      w["attention"] += {T * Q * 4 + kv_read + partials, attn_macs};
      w["attention_combine"] += {partials + T * Q * 4, 0};
    } else {
      w["attention"] += {T * Q * 4 + kv_read + T * Q * 4, attn_macs};
    }
    linear("o", D, Q, true);
    linear("gate|up", 2 * F, D, false);
    if (p.fp16_linear) {
      w["gated_activation"] += {T * 2 * F * 4 + T * F * 4, 0};
      linear("down", D, F, true);
    } else {  // the gating is fused into the down projection's quantization, which reads gate|up
      linear("down", D, F, true, "rmsnorm_quant_gated", 2 * F);
    }
  }
  if (p.head_rows > 0) {
    w["rmsnorm"] += {T * D * 4 + D * 4 + T * D * 4, 0};
    const double R = p.head_rows;
    const double head_bytes = p.int8_head ? V * (round_up(D, 16) + 4) : V * round_up(D, 8) * 2;
    w[by_matrix ? "head" : p.int8_head ? "int8_matmul" : "fp16_matmul"] += {head_bytes + R * D * 4 + R * V * 4, R * V * D};
    if (p.select != PassSpec::None) {
      const std::string first = p.select == PassSpec::Argmax ? "argmax" : "topk";
      const double entry = 8;
      const double per_part = p.select == PassSpec::Argmax ? entry : entry * std::max(1, p.topk);
      w[first] += {V * 4 + p.select_parts * per_part, 0};
      if (p.select_parts > 1) w[first + "_merge"] += {p.select_parts * per_part + per_part, 0};
    }
  }
  return w;
}

std::string matrix_of(std::string_view label) {
  if (label.find("output head") != std::string_view::npos) return "head";
  if (!starts(label, "layer ")) return "";
  const size_t space = label.find(' ', 6);
  if (space == std::string_view::npos) return "";
  const std::string_view m = label.substr(space + 1);
  for (const char* known : {"qkv", "o", "gate|up", "down"})
    if (m == known) return known;
  return "";
}

DispatchName name_dispatch(std::string_view label, bool fp16_linear, const std::string& ternary_shader,
                           bool int8_head) {
  const std::string m = matrix_of(label);
  if (m.empty()) return {std::string(label), std::string(label)};
  if (m == "head") return {int8_head ? "int8_matmul" : "fp16_matmul", m};
  return {fp16_linear ? "fp16_matmul" : ternary_shader, m};
}

}  // namespace ternvk::profiler

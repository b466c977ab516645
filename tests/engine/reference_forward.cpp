#include "engine/reference_forward.h"

#include <algorithm>
#include <cmath>

#include "runtime/core/half.h"

namespace ternvk::test {

std::vector<float> rmsnorm(const std::vector<float>& x, const std::vector<float>& weight, float eps) {
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const float r = 1.0f / std::sqrt(float(ss / x.size()) + eps);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * weight[i];
  return y;
}

std::vector<float> bitlinear(const TernaryMatrix& w, const std::vector<float>& x) {
  float max_abs = 0;
  for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
  const float s = 127.0f / std::max(max_abs, 1e-5f);
  std::vector<int32_t> q(x.size());
  for (size_t i = 0; i < x.size(); ++i) q[i] = int32_t(std::clamp(std::nearbyint(x[i] * s), -128.0f, 127.0f));
  std::vector<float> y(w.rows);
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t acc = 0;
    const int8_t* row = &w.values[r * w.cols];
    for (int64_t k = 0; k < w.cols; ++k) acc += row[k] * q[k];
    y[r] = float(acc) / s * w.scale;
  }
  return y;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb + 1e-30);
}

size_t argmax_index(const std::vector<float>& v) {
  return size_t(std::max_element(v.begin(), v.end()) - v.begin());
}

ReferenceForward::ReferenceForward(const ModelSource& source, bool int8_head) : c_(source.config()) {
  for (int l = 0; l < c_.n_layers; ++l) {
    Layer L{source.linear(l, Linear::Q),    source.linear(l, Linear::K),  source.linear(l, Linear::V),
            source.linear(l, Linear::O),    source.linear(l, Linear::Gate), source.linear(l, Linear::Up),
            source.linear(l, Linear::Down), source.norm(l, Norm::Attn),   source.norm(l, Norm::AttnSub),
            source.norm(l, Norm::Ffn),      source.norm(l, Norm::FfnSub)};
    layers_.push_back(std::move(L));
  }
  auto to_float = [](const std::vector<uint16_t>& h) {
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); ++i) f[i] = half_to_float(h[i]);
    return f;
  };
  // Row-wise int8 rounding: each value becomes round(w / s) * s with s = max|w| / 127 over its row.
  auto round_rows_int8 = [&](std::vector<float> m) {
    for (size_t r = 0; r < m.size() / size_t(c_.dim); ++r) {
      float* row = m.data() + r * size_t(c_.dim);
      float amax = 0;
      for (int i = 0; i < c_.dim; ++i) amax = std::max(amax, std::fabs(row[i]));
      const float s = amax / 127.0f;
      for (int i = 0; i < c_.dim; ++i) row[i] = s == 0 ? 0.0f : std::nearbyint(row[i] / s) * s;
    }
    return m;
  };
  embedding_ = to_float(source.embedding_f16());
  auto head = source.output_f16();
  head_ = head ? to_float(*head) : embedding_;
  if (int8_head) {
    head_ = round_rows_int8(head_);
    if (!head) embedding_ = head_;  // tied: the same int8 rows are the embedding table
  }
  output_norm_ = source.output_norm();
}

std::vector<std::vector<float>> ReferenceForward::logits(const std::vector<uint32_t>& tokens) const {
  const int T = static_cast<int>(tokens.size()), D = c_.dim, hd = c_.head_dim;
  const int H = c_.n_heads, KVH = c_.n_kv_heads, group = H / KVH;
  std::vector<std::vector<float>> x(T);
  for (int t = 0; t < T; ++t) x[t].assign(embedding_.begin() + int64_t(tokens[t]) * D,
                                          embedding_.begin() + int64_t(tokens[t] + 1) * D);
  auto rope = [&](std::vector<float>& v, int heads, int pos) {
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        const float freq = std::pow(c_.rope_theta, -2.0f * i / hd);
        const float angle = pos * freq, cs = std::cos(angle), sn = std::sin(angle);
        const int a = c_.rope_neox ? h * hd + i : h * hd + 2 * i;
        const int b = c_.rope_neox ? h * hd + i + hd / 2 : h * hd + 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs - x1 * sn;
        v[b] = x0 * sn + x1 * cs;
      }
  };
  for (const Layer& L : layers_) {
    std::vector<std::vector<float>> q(T), k(T), v(T);
    for (int t = 0; t < T; ++t) {
      auto n = rmsnorm(x[t], L.attn_norm, c_.rms_eps);
      q[t] = bitlinear(L.q, n);
      k[t] = bitlinear(L.k, n);
      v[t] = bitlinear(L.v, n);
      rope(q[t], H, t);
      rope(k[t], KVH, t);
    }
    for (int t = 0; t < T; ++t) {
      std::vector<float> attn(size_t(H) * hd, 0.0f);
      for (int h = 0; h < H; ++h) {
        const int kvh = h / group;
        std::vector<float> score(t + 1);
        float max_score = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          float s = 0;
          for (int i = 0; i < hd; ++i) s += q[t][h * hd + i] * k[j][kvh * hd + i];
          score[j] = s / std::sqrt(float(hd));
          max_score = std::max(max_score, score[j]);
        }
        float sum = 0;
        for (auto& s : score) sum += (s = std::exp(s - max_score));
        for (int j = 0; j <= t; ++j)
          for (int i = 0; i < hd; ++i) attn[h * hd + i] += score[j] / sum * v[j][kvh * hd + i];
      }
      auto o = bitlinear(L.o, rmsnorm(attn, L.attn_sub_norm, c_.rms_eps));
      for (int i = 0; i < D; ++i) x[t][i] += o[i];
      auto m = rmsnorm(x[t], L.ffn_norm, c_.rms_eps);
      auto g = bitlinear(L.gate, m), u = bitlinear(L.up, m);
      for (size_t i = 0; i < g.size(); ++i) {
        const float a = c_.squared_relu() ? std::max(g[i], 0.0f) * std::max(g[i], 0.0f) : g[i] / (1.0f + std::exp(-g[i]));
        g[i] = a * u[i];
      }
      auto d = bitlinear(L.down, rmsnorm(g, L.ffn_sub_norm, c_.rms_eps));
      for (int i = 0; i < D; ++i) x[t][i] += d[i];
    }
  }
  std::vector<std::vector<float>> out(T, std::vector<float>(c_.vocab));
  for (int t = 0; t < T; ++t) {
    auto h = rmsnorm(x[t], output_norm_, c_.rms_eps);
    for (int r = 0; r < c_.vocab; ++r) {
      float s = 0;
      for (int i = 0; i < D; ++i) s += head_[int64_t(r) * D + i] * h[i];
      out[t][r] = s;
    }
  }
  return out;
}

}  // namespace ternvk::test

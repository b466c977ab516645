"""Shared pieces of the ternvk-shakespeare training tool.

The model is the BitNet b1.58 2B4T graph (BitNetForCausalLM / GGUF arch "bitnet-b1.58"), scaled down:
  n = RMSNorm_in(x); q,k,v = BitLinear(n); NeoX RoPE on q,k; causal GQA attention (fp32 softmax);
  h = x + o_proj(attn_sub_norm(attn)); m = RMSNorm_post(h);
  out = h + down(ffn_sub_norm(relu(gate(m))^2 * up(m))); final RMSNorm; logits = h @ E^T (tied).
BitLinear: absmean ternary weights (one multiplier per tensor) and per-token absmax int8 activations,
round-half-to-even (torch.round) everywhere.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
WORK = os.path.join(HERE, "work")  # scratch (git-ignored): split text, checkpoint, logs
OUT = os.path.join(REPO, "models", "ternvk-shakespeare")
FIXTURE = os.path.join(REPO, "tests", "fixtures", "ternvk-shakespeare.json")
CORPUS = os.environ.get(
    "TERNVK_CORPUS", os.path.abspath(os.path.join(REPO, "..", "shared", "data", "corpus", "tinyshakespeare.txt")))
CORPUS_REL = "shared/data/corpus/tinyshakespeare.txt"  # as the runtime tests see it, beside the checkout

CONFIG = dict(
    dim=256,
    n_layers=4,
    n_heads=4,
    n_kv_heads=1,
    head_dim=64,
    ffn_dim=768,       # 2.7 * 256 = 691 -> 768 (multiple of 256 so TQ2_0 rows are whole blocks)
    vocab_size=2048,
    context_length=256,
    rope_theta=10000.0,
    norm_eps=1e-5,
)

LINEAR_NAMES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
NORM_NAMES = ["attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"]


def linear_shapes(cfg):
    d, hd, ff = cfg["dim"], cfg["head_dim"], cfg["ffn_dim"]
    return {  # [out, in]
        "attn_q": (cfg["n_heads"] * hd, d),
        "attn_k": (cfg["n_kv_heads"] * hd, d),
        "attn_v": (cfg["n_kv_heads"] * hd, d),
        "attn_output": (d, cfg["n_heads"] * hd),
        "ffn_gate": (ff, d),
        "ffn_up": (ff, d),
        "ffn_down": (d, ff),
    }


def read_split():
    """Train/validation split of the corpus by bytes: validation starts at the first speech boundary
    ("\\n\\n") at or after 90% of the file. Returns (corpus_bytes, split_offset)."""
    data = open(CORPUS, "rb").read()
    target = int(len(data) * 0.9)
    split = data.index(b"\n\n", target) + 2
    return data, split


# ----------------------------------------------------------------------------------------------
# quantization (training, with straight-through estimators)

def act_quant_ste(x):
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = (x * s).round().clamp(-128, 127) / s
    return x + (xq - x).detach()


def weight_quant_ste(w):
    s = w.abs().mean().clamp(min=1e-5)
    wq = (w / s).round().clamp(-1, 1) * s
    return w + (wq - w).detach()


def ternarize(w):
    """-> (int ternary tensor in {-1,0,1} as float32, float multiplier mean|W|)."""
    s = w.abs().mean().clamp(min=1e-5)
    return (w / s).round().clamp(-1, 1), float(s)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(cfg, T, device=None):
    hd = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]   # [T, hd/2]
    ang = torch.cat([ang, ang], dim=-1)                                   # NeoX: i pairs with i+hd/2
    return ang.cos().float(), ang.sin().float()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):  # x [B, H, T, hd]
    return x * cos + rotate_half(x) * sin




# ----------------------------------------------------------------------------------------------
# training model

class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg["dim"]
        self.tok_emb = nn.Parameter(torch.randn(cfg["vocab_size"], d) * 0.02)
        self.norms = nn.ParameterDict()
        self.lins = nn.ParameterDict()
        for L in range(cfg["n_layers"]):
            for n in NORM_NAMES:
                dim = cfg["ffn_dim"] if n == "ffn_sub_norm" else d
                self.norms[f"{L}_{n}"] = nn.Parameter(torch.ones(dim))
            for n, (o, i) in linear_shapes(cfg).items():
                std = 0.02 if n not in ("attn_output", "ffn_down") else 0.02 / math.sqrt(2 * cfg["n_layers"])
                self.lins[f"{L}_{n}"] = nn.Parameter(torch.randn(o, i) * std)
        self.out_norm = nn.Parameter(torch.ones(d))

    def forward(self, idx):
        cfg = self.cfg
        B, T = idx.shape
        H, KV, hd, eps = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["norm_eps"]
        cos, sin = rope_tables(cfg, T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = F.embedding(idx, self.tok_emb)

        def lin(xq, name):
            return F.linear(xq, weight_quant_ste(self.lins[name]))

        for L in range(cfg["n_layers"]):
            n = act_quant_ste(rms_norm(x, self.norms[f"{L}_attn_norm"], eps))
            q = lin(n, f"{L}_attn_q").view(B, T, H, hd).transpose(1, 2)
            k = lin(n, f"{L}_attn_k").view(B, T, KV, hd).transpose(1, 2)
            v = lin(n, f"{L}_attn_v").view(B, T, KV, hd).transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
            a = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * hd)
            a = act_quant_ste(rms_norm(a, self.norms[f"{L}_attn_sub_norm"], eps))
            h = x + lin(a, f"{L}_attn_output")
            m = act_quant_ste(rms_norm(h, self.norms[f"{L}_ffn_norm"], eps))
            f = F.relu(lin(m, f"{L}_ffn_gate")).square() * lin(m, f"{L}_ffn_up")
            f = act_quant_ste(rms_norm(f, self.norms[f"{L}_ffn_sub_norm"], eps))
            x = h + lin(f, f"{L}_ffn_down")
        x = rms_norm(x, self.out_norm, eps)
        return x @ self.tok_emb.t()


# ----------------------------------------------------------------------------------------------
# inference forward on exported values (exact ternary ints, int8 activations, fp32 math)

def bitlinear_infer(x, wq, scale):
    s_x = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = (x * s_x).round().clamp(-128, 127)
    return (xq @ wq.t()) * scale / s_x


@torch.no_grad()
def infer_logits(P, cfg, ids):
    """P: exported parameters (see export.export_params). ids: 1-D list/tensor of token ids
    (position 0 = first id). Returns fp32 logits [T, vocab]."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    T = ids.numel()
    H, KV, hd, eps = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["norm_eps"]
    cos, sin = rope_tables(cfg, T)
    mask = torch.full((T, T), float("-inf")).triu(1)
    x = P["token_embd"][ids]
    for L in range(cfg["n_layers"]):
        g = lambda n: P[f"blk.{L}.{n}"]
        lin = lambda xx, n: bitlinear_infer(xx, P[f"blk.{L}.{n}"], P[f"blk.{L}.{n}.scale"])
        n = rms_norm(x, g("attn_norm"), eps)
        q = lin(n, "attn_q").view(T, H, hd).transpose(0, 1)
        k = lin(n, "attn_k").view(T, KV, hd).transpose(0, 1)
        v = lin(n, "attn_v").view(T, KV, hd).transpose(0, 1)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
        a = (att.softmax(-1) @ v).transpose(0, 1).reshape(T, H * hd)
        h = x + lin(rms_norm(a, g("attn_sub_norm"), eps), "attn_output")
        m = rms_norm(h, g("ffn_norm"), eps)
        f = F.relu(lin(m, "ffn_gate")).square() * lin(m, "ffn_up")
        x = h + lin(rms_norm(f, g("ffn_sub_norm"), eps), "ffn_down")
    x = rms_norm(x, P["output_norm"], eps)
    return x @ P["token_embd"].t()

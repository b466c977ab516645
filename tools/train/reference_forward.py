#!/usr/bin/python3
"""Independent NumPy reference for ternvk-shakespeare: reads models/ternvk-shakespeare/model.gguf with
its own GGUF reader (formats_io.GGUFReader, struct + NumPy, no torch), checks that model-tq2_0.gguf and
hf/model.safetensors hold exactly the same values, recomputes the fixture logits and checks them against
tests/fixtures/ternvk-shakespeare.json (cosine >= 0.9999, same argmax), plus the quick validation
perplexity. Exit status 0 on success.

usage: reference_forward.py [--model-dir DIR] [--fixture FILE] [--greedy N]
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import formats_io as fio  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
LIN = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
NORMS = ["attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"]
HF = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
      "attn_sub_norm": "self_attn.attn_sub_norm", "ffn_sub_norm": "mlp.ffn_sub_norm",
      "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
      "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
      "ffn_down": "mlp.down_proj"}


def load_gguf(path):
    r = fio.GGUFReader(path)
    kv = r.kv
    arch = kv["general.architecture"]
    assert arch in ("bitnet-b1.58", "bitnet-25"), arch
    cfg = dict(
        dim=kv[f"{arch}.embedding_length"], n_layers=kv[f"{arch}.block_count"],
        n_heads=kv[f"{arch}.attention.head_count"], n_kv_heads=kv[f"{arch}.attention.head_count_kv"],
        ffn_dim=kv[f"{arch}.feed_forward_length"], eps=kv[f"{arch}.attention.layer_norm_rms_epsilon"],
        theta=kv[f"{arch}.rope.freq_base"], head_dim=kv[f"{arch}.rope.dimension_count"],
        vocab=kv[f"{arch}.vocab_size"], ctx=kv[f"{arch}.context_length"])
    assert cfg["dim"] == cfg["n_heads"] * cfg["head_dim"]
    assert len(kv["tokenizer.ggml.tokens"]) == cfg["vocab"]
    W = {"token_embd": r.tensor("token_embd.weight"), "output_norm": r.tensor("output_norm.weight")}
    assert W["token_embd"].shape == (cfg["vocab"], cfg["dim"])
    for L in range(cfg["n_layers"]):
        for n in NORMS:
            W[f"blk.{L}.{n}"] = r.tensor(f"blk.{L}.{n}.weight")
        for n in LIN:
            t, s = r.tensor(f"blk.{L}.{n}.weight")
            if np.ndim(s):  # TQ2_0: one d per block; this model uses one multiplier per tensor
                assert np.all(s == s[0]), "per-block scales differ"
                s = float(s[0])
            W[f"blk.{L}.{n}"] = (t, np.float32(s))
    return cfg, kv, W


def rms(x, w, eps):
    return (x * (1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + np.float32(eps)))).astype(np.float32) * w


def bitlinear(x, tw):
    t, s = tw
    sx = np.float32(127.0) / np.maximum(np.abs(x).max(-1, keepdims=True), np.float32(1e-5))
    xq = np.clip(np.round(x * sx), -128, 127).astype(np.float32)   # np.round: half to even
    acc = xq @ t.T.astype(np.float32)                              # exact integers in fp32
    return (acc * s / sx).astype(np.float32)


def rope(x, T, hd, theta):  # x [H, T, hd], NeoX rotate_half
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    ang = np.concatenate([ang, ang], -1)
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    h = hd // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
    return x * cos + rot * sin


def forward(cfg, W, ids):
    T = len(ids)
    H, KV, hd, eps = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["eps"]
    x = W["token_embd"][np.asarray(ids)].astype(np.float32)
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    for L in range(cfg["n_layers"]):
        g = lambda n: W[f"blk.{L}.{n}"]
        n = rms(x, g("attn_norm"), eps)
        q = bitlinear(n, g("attn_q")).reshape(T, H, hd).transpose(1, 0, 2)
        k = bitlinear(n, g("attn_k")).reshape(T, KV, hd).transpose(1, 0, 2)
        v = bitlinear(n, g("attn_v")).reshape(T, KV, hd).transpose(1, 0, 2)
        q, k = rope(q, T, hd, cfg["theta"]), rope(k, T, hd, cfg["theta"])
        k, v = np.repeat(k, H // KV, 0), np.repeat(v, H // KV, 0)
        att = (q @ k.transpose(0, 2, 1)) * np.float32(1.0 / math.sqrt(hd)) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att = att / att.sum(-1, keepdims=True)
        a = (att @ v).transpose(1, 0, 2).reshape(T, H * hd)
        h = x + bitlinear(rms(a, g("attn_sub_norm"), eps), g("attn_output"))
        m = rms(h, g("ffn_norm"), eps)
        f = np.square(np.maximum(bitlinear(m, g("ffn_gate")), 0)) * bitlinear(m, g("ffn_up"))
        x = h + bitlinear(rms(f, g("ffn_sub_norm"), eps), g("ffn_down"))
    x = rms(x, W["output_norm"], eps)
    return x @ W["token_embd"].T


def check_same_values(cfg, W, tq_path, hf_dir):
    _, _, W2 = load_gguf(tq_path)
    for k, v in W.items():
        if isinstance(v, tuple):
            assert np.array_equal(v[0], W2[k][0]) and v[1] == W2[k][1], f"TQ2_0 differs at {k}"
        else:
            assert np.array_equal(v, W2[k]), f"TQ2_0 file differs at {k}"
    st = fio.read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    hcfg = json.load(open(os.path.join(hf_dir, "config.json")))
    assert hcfg["quantization_config"]["linear_class"] == "autobitlinear"
    assert hcfg["hidden_size"] == cfg["dim"] and hcfg["num_hidden_layers"] == cfg["n_layers"]
    assert np.array_equal(st["model.embed_tokens.weight"], W["token_embd"]), "HF embedding differs"
    assert np.array_equal(st["model.norm.weight"], W["output_norm"]), "HF final norm differs"
    for L in range(cfg["n_layers"]):
        for n in NORMS:
            assert np.array_equal(st[f"model.layers.{L}.{HF[n]}.weight"], W[f"blk.{L}.{n}"]), (L, n)
        for n in LIN:
            t = fio.unpack_hf(st[f"model.layers.{L}.{HF[n]}.weight"])
            s = st[f"model.layers.{L}.{HF[n]}.weight_scale"]
            assert s.shape == (1,)
            assert np.array_equal(t, W[f"blk.{L}.{n}"][0]), (L, n)
            assert np.float32(s[0]) == W[f"blk.{L}.{n}"][1], (L, n, s[0], W[f"blk.{L}.{n}"][1])
    print(f"ok: {os.path.basename(tq_path)} and hf/model.safetensors hold exactly the values of model.gguf")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=os.path.join(REPO, "models", "ternvk-shakespeare"))
    ap.add_argument("--fixture", default=os.path.join(REPO, "tests", "fixtures", "ternvk-shakespeare.json"))
    ap.add_argument("--greedy", type=int, default=16, help="greedy tokens to re-check per prompt")
    args = ap.parse_args()
    cfg, kv, W = load_gguf(os.path.join(args.model_dir, "model.gguf"))
    print(f"model.gguf: {cfg}")
    check_same_values(cfg, W, os.path.join(args.model_dir, "model-tq2_0.gguf"), os.path.join(args.model_dir, "hf"))
    fx = json.load(open(args.fixture))
    assert fx["bos_included"] and all(p["token_ids"][0] == kv["tokenizer.ggml.bos_token_id"] for p in fx["prompts"])
    ok = True
    for p in fx["prompts"]:
        ids = p["token_ids"]
        lg = forward(cfg, W, ids)
        ref = np.asarray(p["logits"], dtype=np.float64)
        cos = [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(lg.astype(np.float64), ref)]
        maxdiff = float(np.abs(lg - ref).max())
        same_arg = list(lg.argmax(-1)) == p["argmax"]
        # greedy re-check of the first tokens
        ctx, gen = list(ids), []
        for _ in range(args.greedy):
            nxt = int(forward(cfg, W, ctx)[-1].argmax())
            gen.append(nxt)
            ctx.append(nxt)
        g_ok = gen == p["greedy"]["token_ids"][:args.greedy]
        good = min(cos) >= 0.9999 and same_arg and g_ok
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {p['text']!r}: {len(ids)} positions, min cosine {min(cos):.7f}, "
              f"max |diff| {maxdiff:.2e}, argmax {'same' if same_arg else 'DIFFERENT'}, "
              f"greedy[:{args.greedy}] {'same' if g_ok else 'DIFFERENT'}")
    # quick validation perplexity (first chunks of the held-out slice, ids from the fixture)
    v = fx["validation"]
    q = v["quick"]
    ids, n, nll = q["token_ids"], v["chunk_tokens"], 0.0
    for i in range(0, len(ids), n):
        c = ids[i:i + n]
        lg = forward(cfg, W, [kv["tokenizer.ggml.bos_token_id"]] + c[:-1]).astype(np.float64)
        lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
        nll += float((lse - lg[np.arange(len(c)), c]).sum())
    ppl = math.exp(nll / len(ids))
    rel = abs(ppl / q["perplexity"] - 1)
    good = rel < 1e-3
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} quick validation perplexity ({len(ids)} tokens): {ppl:.4f} vs fixture "
          f"{q['perplexity']:.4f} (rel diff {rel:.1e}); full-slice fixture value {v['perplexity']:.4f}")
    print("reference check PASSED" if ok else "reference check FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Export the trained checkpoint (tools/train/work/ckpt.pt) to models/ternvk-shakespeare/
(model.gguf with I2_S, model-tq2_0.gguf, hf/ safetensors, tokenizer.model) and compute the reference
fixtures tests/fixtures/ternvk-shakespeare.json with the exact inference forward on the exported values."""
import hashlib
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import formats_io as fio  # noqa: E402
from common import CONFIG, LINEAR_NAMES, NORM_NAMES, OUT, WORK, FIXTURE  # noqa: E402

ARCH = "bitnet-b1.58"
MODEL_NAME = "ternvk-shakespeare"
PROMPTS = [
    "ROMEO:",
    "First Citizen:\nBefore we proceed",
    "JULIET:\nO Romeo, Romeo!",
    "KING RICHARD III:\nNow is the winter of",
]
N_GREEDY = 48
QUICK_CHUNKS = 4

HF_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_sub_norm": "self_attn.attn_sub_norm", "ffn_sub_norm": "mlp.ffn_sub_norm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def export_params(state, cfg):
    """Exported values (torch float32): embedding FP16∩BF16-exact, norms BF16-exact, linears exact
    ternary with a multiplier exactly representable in FP16 and BF16."""
    P = {}
    P["token_embd"] = torch.from_numpy(fio.round_f16_bf16(state["tok_emb"].numpy()))
    P["output_norm"] = torch.from_numpy(fio.round_bf16(state["out_norm"].numpy()))
    for L in range(cfg["n_layers"]):
        for n in NORM_NAMES:
            P[f"blk.{L}.{n}"] = torch.from_numpy(fio.round_bf16(state[f"norms.{L}_{n}"].numpy()))
        for n in LINEAR_NAMES:
            t, s = common.ternarize(state[f"lins.{L}_{n}"])
            s = float(fio.round_f16_bf16(np.float32(s)))
            assert s > 0
            P[f"blk.{L}.{n}"] = t.float()
            P[f"blk.{L}.{n}.scale"] = s
    return P


def tokenizer_kvs(sp):
    toks, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        toks.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i)
                     else 5 if sp.is_unused(i) else 1)
    return [
        ("tokenizer.ggml.model", fio.STRING, "llama"),
        ("tokenizer.ggml.tokens", fio.ARRAY, (fio.STRING, toks)),
        ("tokenizer.ggml.scores", fio.ARRAY, (fio.F32, scores)),
        ("tokenizer.ggml.token_type", fio.ARRAY, (fio.I32, types)),
        ("tokenizer.ggml.bos_token_id", fio.U32, sp.bos_id()),
        ("tokenizer.ggml.eos_token_id", fio.U32, sp.eos_id()),
        ("tokenizer.ggml.unknown_token_id", fio.U32, sp.unk_id()),
        ("tokenizer.ggml.add_bos_token", fio.BOOL, True),
        ("tokenizer.ggml.add_eos_token", fio.BOOL, False),
        ("tokenizer.ggml.add_space_prefix", fio.BOOL, False),
    ]


def write_ggufs(P, cfg, sp):
    d = cfg["dim"]
    base = [
        ("general.architecture", fio.STRING, ARCH),
        ("general.name", fio.STRING, MODEL_NAME),
        ("general.alignment", fio.U32, 32),
        (f"{ARCH}.context_length", fio.U32, cfg["context_length"]),
        (f"{ARCH}.embedding_length", fio.U32, d),
        (f"{ARCH}.block_count", fio.U32, cfg["n_layers"]),
        (f"{ARCH}.feed_forward_length", fio.U32, cfg["ffn_dim"]),
        (f"{ARCH}.attention.head_count", fio.U32, cfg["n_heads"]),
        (f"{ARCH}.attention.head_count_kv", fio.U32, cfg["n_kv_heads"]),
        (f"{ARCH}.attention.layer_norm_rms_epsilon", fio.F32, cfg["norm_eps"]),
        (f"{ARCH}.rope.freq_base", fio.F32, cfg["rope_theta"]),
        (f"{ARCH}.rope.dimension_count", fio.U32, cfg["head_dim"]),
        (f"{ARCH}.vocab_size", fio.U32, cfg["vocab_size"]),
    ]
    f32 = lambda a: np.ascontiguousarray(a.numpy(), dtype="<f4").tobytes()
    for fname, gtype, ftype in (("model.gguf", fio.GGML_I2_S, 40), ("model-tq2_0.gguf", fio.GGML_TQ2_0, 37)):
        kvs = base + [("general.file_type", fio.U32, ftype)] + tokenizer_kvs(sp)
        tensors = [("token_embd.weight", [d, cfg["vocab_size"]], fio.GGML_F16,
                    np.ascontiguousarray(P["token_embd"].numpy().astype("<f2")).tobytes())]
        for L in range(cfg["n_layers"]):
            for n in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_sub_norm",
                      "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "ffn_sub_norm"]:
                key = f"blk.{L}.{n}"
                if n in NORM_NAMES:
                    tensors.append((key + ".weight", [P[key].numel()], fio.GGML_F32, f32(P[key])))
                else:
                    t = P[key].numpy().astype(np.int8)
                    pack = fio.pack_i2s if gtype == fio.GGML_I2_S else fio.pack_tq2_0
                    tensors.append((key + ".weight", [t.shape[1], t.shape[0]], gtype, pack(t, P[key + ".scale"])))
        tensors.append(("output_norm.weight", [d], fio.GGML_F32, f32(P["output_norm"])))
        fio.write_gguf(os.path.join(OUT, fname), kvs, tensors)


def write_hf(P, cfg, sp, tok_path):
    hf = os.path.join(OUT, "hf")
    os.makedirs(hf, exist_ok=True)
    config = {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_size": cfg["dim"],
        "intermediate_size": cfg["ffn_dim"],
        "num_hidden_layers": cfg["n_layers"],
        "num_attention_heads": cfg["n_heads"],
        "num_key_value_heads": cfg["n_kv_heads"],
        "head_dim": cfg["head_dim"],
        "vocab_size": cfg["vocab_size"],
        "max_position_embeddings": cfg["context_length"],
        "rms_norm_eps": cfg["norm_eps"],
        "rope_theta": cfg["rope_theta"],
        "hidden_act": "relu2",
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": sp.bos_id(),
        "eos_token_id": sp.eos_id(),
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                "quantization_mode": "offline"},
    }
    with open(os.path.join(hf, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    bf = lambda a: fio.bf16_bits(a.numpy() if torch.is_tensor(a) else np.asarray(a, np.float32)).astype("<u2").tobytes()
    ts = [("model.embed_tokens.weight", "BF16", list(P["token_embd"].shape), bf(P["token_embd"])),
          ("model.norm.weight", "BF16", [cfg["dim"]], bf(P["output_norm"]))]
    for L in range(cfg["n_layers"]):
        pre = f"model.layers.{L}."
        for n in NORM_NAMES:
            ts.append((pre + HF_NAMES[n] + ".weight", "BF16", [P[f"blk.{L}.{n}"].numel()], bf(P[f"blk.{L}.{n}"])))
        for n in LINEAR_NAMES:
            t = P[f"blk.{L}.{n}"].numpy().astype(np.int8)
            p = fio.pack_hf(t)
            ts.append((pre + HF_NAMES[n] + ".weight", "U8", list(p.shape), p.tobytes()))
            ts.append((pre + HF_NAMES[n] + ".weight_scale", "BF16", [1],
                       bf(np.array([P[f"blk.{L}.{n}.scale"]], np.float32))))
    ts.sort(key=lambda x: x[0])
    fio.write_safetensors(os.path.join(hf, "model.safetensors"), ts, {"format": "pt"})
    shutil.copyfile(tok_path, os.path.join(hf, "tokenizer.model"))


def r5(v):
    return float(f"{v:.5g}")


def greedy(P, cfg, ids, n):
    ids = list(ids)
    out, margins = [], []
    for _ in range(n):
        lg = common.infer_logits(P, cfg, ids)[-1]
        top = torch.topk(lg, 2)
        nxt = int(top.indices[0])
        margins.append(float(top.values[0] - top.values[1]))
        out.append(nxt)
        ids.append(nxt)
    return out, margins


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def main():
    torch.set_num_threads(int(os.environ.get("TERNVK_THREADS", "2")))
    t0 = time.time()
    import train
    ck = torch.load(os.path.join(WORK, "ckpt.pt"))
    cfg = ck["config"]
    assert cfg == CONFIG, "checkpoint config differs from common.CONFIG"
    tok_path = os.path.join(WORK, "tokenizer.model")
    sp = train.load_sp(tok_path)
    hist = json.load(open(os.path.join(WORK, "history.json")))
    os.makedirs(OUT, exist_ok=True)
    shutil.copyfile(tok_path, os.path.join(OUT, "tokenizer.model"))

    P = export_params(ck["model"], cfg)
    write_ggufs(P, cfg, sp)
    write_hf(P, cfg, sp, tok_path)

    # sanity: training-graph forward (fake-quant) on the checkpoint vs exact inference on exported values
    model = common.Model(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    bos = sp.bos_id()

    prompts = []
    for text in PROMPTS:
        ids = [bos] + sp.encode(text)
        lg = common.infer_logits(P, cfg, ids)
        with torch.no_grad():
            lt = model(torch.tensor([ids]))[0]
        cos = F.cosine_similarity(lg.flatten(), lt.flatten(), dim=0).item()
        print(f"prompt {text!r}: {len(ids)} tokens; cosine(export, training graph) = {cos:.6f}")
        assert cos > 0.99, "exported values disagree with the training graph"
        gen, margins = greedy(P, cfg, ids, N_GREEDY)
        prompts.append({
            "text": text,
            "token_ids": ids,
            "n_tokens": len(ids),
            "logits": [[r5(v) for v in row.tolist()] for row in lg],
            "argmax": [int(i) for i in lg.argmax(-1)],
            "greedy": {
                "n_tokens": N_GREEDY,
                "token_ids": gen,
                "text": sp.decode(gen),
                "full_text": sp.decode(ids[1:] + gen),
                "top2_margins": [round(m, 4) for m in margins],
                "min_top2_margin": round(min(margins), 4),
            },
        })
        print(f"  -> {sp.decode(gen)!r} (min top-2 margin {min(margins):.3f})")

    # validation perplexity on the held-out slice with the exact inference forward
    data, split = common.read_split()
    val_bytes = data[split:]
    val_ids = sp.encode(val_bytes.decode("utf-8"))
    chunks = train.val_chunks(val_ids, cfg["context_length"])
    chunk_nll = []
    for c in chunks:
        lg = common.infer_logits(P, cfg, [bos] + c[:-1])
        chunk_nll.append(F.cross_entropy(lg, torch.tensor(c), reduction="sum").item())
    tot = sum(chunk_nll)
    n_tok = len(val_ids)
    quick_tok = sum(len(c) for c in chunks[:QUICK_CHUNKS])
    quick_nll = sum(chunk_nll[:QUICK_CHUNKS])
    ppl = math.exp(tot / n_tok)
    print(f"validation: {n_tok} tokens in {len(chunks)} chunks: mean NLL {tot / n_tok:.5f}, perplexity {ppl:.4f}; "
          f"quick ({QUICK_CHUNKS} chunks, {quick_tok} tokens): ppl {math.exp(quick_nll / quick_tok):.4f}")

    files = {}
    for rel in ["model.gguf", "model-tq2_0.gguf", "tokenizer.model", "hf/config.json", "hf/model.safetensors",
                "hf/tokenizer.model"]:
        b = open(os.path.join(OUT, rel), "rb").read()
        files[rel] = {"bytes": len(b), "sha256": sha256(b)}

    fixture = {
        "model": MODEL_NAME,
        "model_dir": "models/ternvk-shakespeare",
        "files": files,
        "architecture": ARCH,
        "config": cfg,
        "tokenizer": {
            "type": "sentencepiece bpe (tokenizer.ggml.model = llama)", "byte_fallback": True,
            "normalization": "identity", "add_space_prefix": False, "add_bos": True, "add_eos": False,
            "bos_token_id": sp.bos_id(), "eos_token_id": sp.eos_id(), "unknown_token_id": sp.unk_id(),
        },
        "reference": ("PyTorch inference forward on the exported values (exact ternary weights x multiplier, "
                      "per-token int8 absmax activations with round-half-to-even, fp32 math, NeoX RoPE with "
                      "angles computed in float64 then cast to fp32, fp32 softmax); full-sequence (no KV cache)"),
        "bos_included": True,
        "token_ids_note": "prompts[].token_ids start with BOS (id %d) followed by the tokenizer's encoding of "
                          "the prompt text (no space prefix); logits[i] is the output at position i" % bos,
        "logits_rounding": "5 significant digits",
        "prompts": prompts,
        "greedy_note": ("greedy = argmax at each step, appended to the context and re-run; %d tokens, no stop on "
                        "EOS; top2_margins[i] = top-1 minus top-2 logit at step i (a runtime whose logits differ "
                        "by more than a small margin may legitimately diverge after a low-margin step)" % N_GREEDY),
        "validation": {
            "corpus": common.CORPUS_REL,
            "corpus_bytes": len(data),
            "corpus_sha256": sha256(data),
            "byte_offset": split,
            "byte_length": len(val_bytes),
            "slice_sha256": sha256(val_bytes),
            "split_rule": "first b'\\n\\n' at or after int(0.9 * file size); slice starts after it and runs "
                          "to end of file; the training split is bytes [0, byte_offset)",
            "tokenization": "the slice decoded as UTF-8 and encoded as ONE string by the tokenizer "
                            "(no BOS, no space prefix)",
            "n_tokens": n_tok,
            "token_ids_sha256": sha256(np.asarray(val_ids, dtype="<i4").tobytes()),
            "token_ids_sha256_note": "sha256 of the val token ids as little-endian int32",
            "chunk_tokens": cfg["context_length"] - 1,
            "n_chunks": len(chunks),
            "method": ("val token ids split into consecutive chunks of %d tokens (the last one shorter); each "
                       "chunk c is evaluated independently (fresh context) with input [BOS] + c[:-1] "
                       "(positions 0..len(c)-1) and targets c, so every val token is predicted exactly once; "
                       "NLL = -log softmax(logits)[target] in fp32; perplexity = exp(sum NLL / n_tokens)"
                       % (cfg["context_length"] - 1)),
            "nll_sum": tot,
            "mean_nll": tot / n_tok,
            "perplexity": ppl,
            "chunk_nll_sums": [round(x, 4) for x in chunk_nll],
            "quick": {
                "n_chunks": QUICK_CHUNKS,
                "n_tokens": quick_tok,
                "token_ids": val_ids[:quick_tok],
                "nll_sum": quick_nll,
                "perplexity": math.exp(quick_nll / quick_tok),
            },
        },
        "training": {k: hist.get(k) for k in ("train_seconds", "total_seconds", "n_params", "final_val_loss",
                                              "final_train_ema", "n_train_tokens", "n_val_tokens", "args")},
    }
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {FIXTURE} ({os.path.getsize(FIXTURE)} bytes); export took {time.time() - t0:.0f}s")
    for rel, v in files.items():
        print(f"  {rel}: {v['bytes']} bytes")


if __name__ == "__main__":
    main()

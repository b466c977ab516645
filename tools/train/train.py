#!/usr/bin/python3
"""Train the ternvk-shakespeare demo model: a SentencePiece tokenizer (spm_train) and a scaled-down
BitNet b1.58 2B4T ternary transformer on tinyshakespeare. Writes tools/train/work/{tokenizer.model,
ckpt.pt, history.json} and docs/training_curve.png. Export is done by export.py."""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import CONFIG, WORK, REPO  # noqa: E402

SPM_ARGS = [
    "--input=train.txt", "--model_prefix=tokenizer", "--model_type=bpe",
    f"--vocab_size={CONFIG['vocab_size']}", "--character_coverage=1.0", "--byte_fallback=true",
    "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
    "--add_dummy_prefix=false", "--split_digits=true", "--input_sentence_size=0",
    "--shuffle_input_sentence=false", "--num_threads=1", "--random_seed=1234",
    "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1", "--minloglevel=1",
]


def train_tokenizer(data, split):
    os.makedirs(WORK, exist_ok=True)
    with open(os.path.join(WORK, "train.txt"), "wb") as f:
        f.write(data[:split])
    subprocess.run(["spm_train"] + SPM_ARGS, cwd=WORK, check=True)
    return os.path.join(WORK, "tokenizer.model")


def load_sp(path):
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=path)


def val_chunks(val_ids, ctx):
    """Chunking used for validation perplexity: consecutive chunks of ctx-1 tokens; each chunk c is
    scored with input [BOS] + c[:-1] and targets c (every val token predicted exactly once)."""
    n = ctx - 1
    return [val_ids[i:i + n] for i in range(0, len(val_ids), n)]


@torch.no_grad()
def eval_model(model, chunks, bos, max_chunks=None):
    model.eval()
    tot, cnt = 0.0, 0
    sel = chunks if max_chunks is None else chunks[:max_chunks]
    # batch the full-length chunks
    full = [c for c in sel if len(c) == len(sel[0])]
    rest = [c for c in sel if len(c) != len(sel[0])]
    for i in range(0, len(full), 16):
        b = torch.tensor(full[i:i + 16], dtype=torch.long)
        x = torch.cat([torch.full((b.shape[0], 1), bos), b[:, :-1]], 1)
        lg = model(x)
        tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), b.reshape(-1), reduction="sum").item()
        cnt += b.numel()
    for c in rest:
        b = torch.tensor([c], dtype=torch.long)
        x = torch.cat([torch.full((1, 1), bos), b[:, :-1]], 1)
        lg = model(x)
        tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), b.reshape(-1), reduction="sum").item()
        cnt += b.numel()
    model.train()
    return tot / cnt


def plot(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    tr = history["train"]
    ax.plot([t[0] for t in tr], [t[1] for t in tr], label="train loss (smoothed)", lw=1)
    va = history["val"]
    ax.plot([t[0] for t in va], [t[1] for t in va], "o-", label=f"val loss (first {history['args']['eval_chunks']} val chunks)", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title("ternvk-shakespeare: BitNet b1.58 (ternary) on tinyshakespeare")
    ax.grid(alpha=0.3)
    if va:
        ax2 = ax.twinx()
        ax2.plot([t[0] for t in va], [math.exp(t[1]) for t in va], "s--", color="tab:green", ms=2, lw=0.8,
                 label="val perplexity")
        ax2.set_ylabel("val perplexity", color="tab:green")
        ax2.set_yscale("log")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-chunks", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--curve", default=os.path.join(REPO, "docs", "training_curve.png"))
    ap.add_argument("--bench", type=int, default=0, help="time N steps and exit")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    t_start = time.time()

    data, split = common.read_split()
    tok_path = train_tokenizer(data, split)
    sp = load_sp(tok_path)
    assert sp.get_piece_size() == CONFIG["vocab_size"], sp.get_piece_size()
    bos = sp.bos_id()
    train_ids = sp.encode(data[:split].decode("utf-8"))
    val_ids = sp.encode(data[split:].decode("utf-8"))
    print(f"corpus {len(data)} bytes, split at {split}; train {len(train_ids)} tokens, val {len(val_ids)} tokens "
          f"({(len(data) - split) / len(val_ids):.2f} bytes/token)", flush=True)
    train_t = torch.tensor(train_ids, dtype=torch.long)
    chunks = val_chunks(val_ids, CONFIG["context_length"])

    model = common.Model(CONFIG)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params} ({n_params - model.tok_emb.numel()} non-embedding)", flush=True)
    decay = [p for n, p in model.named_parameters() if n.startswith("lins.")]
    no_decay = [p for n, p in model.named_parameters() if not n.startswith("lins.")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    T = CONFIG["context_length"]
    gen = torch.Generator().manual_seed(args.seed)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * p))

    history = {"train": [], "val": [], "args": vars(args), "config": CONFIG}
    ema = None
    t0 = time.time()
    steps = args.bench or args.steps
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        off = torch.randint(0, len(train_t) - T, (args.batch,), generator=gen)
        y = torch.stack([train_t[o:o + T] for o in off.tolist()])
        x = torch.cat([torch.full((args.batch, 1), bos), y[:, :-1]], 1)
        loss = F.cross_entropy(model(x).reshape(-1, CONFIG["vocab_size"]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if step % 10 == 0 or step == steps - 1:
            history["train"].append((step, ema))
        if step % 25 == 0:
            el = time.time() - t0
            print(f"step {step:5d}  loss {lv:.4f}  ema {ema:.4f}  lr {lr_at(step):.2e}  "
                  f"{el:.0f}s  {(step + 1) * args.batch * T / el:.0f} tok/s", flush=True)
        if not args.bench and ((step + 1) % args.eval_every == 0 or step == steps - 1):
            vl = eval_model(model, chunks, bos, args.eval_chunks)
            history["val"].append((step + 1, vl))
            print(f"step {step + 1:5d}  val loss {vl:.4f}  val ppl {math.exp(vl):.2f} "
                  f"(first {args.eval_chunks} val chunks)", flush=True)
    train_time = time.time() - t0
    if args.bench:
        print(f"bench: {train_time / steps:.3f} s/step")
        return
    vl = history["val"][-1][1]  # the exact full-slice value is computed by export.py on the exported weights
    history["final_val_loss"] = vl
    history["final_train_ema"] = ema
    history["train_seconds"] = train_time
    history["total_seconds"] = time.time() - t_start
    history["n_params"] = n_params
    history["n_train_tokens"] = len(train_ids)
    history["n_val_tokens"] = len(val_ids)
    history["split"] = split
    history["torch"] = torch.__version__
    torch.save({"model": model.state_dict(), "config": CONFIG}, os.path.join(WORK, "ckpt.pt"))
    with open(os.path.join(WORK, "history.json"), "w") as f:
        json.dump(history, f, indent=1)
    plot(history, args.curve)
    print(f"done: training {train_time / 60:.1f} min, total {(time.time() - t_start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()

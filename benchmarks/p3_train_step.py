"""P3: one masked LoRA training step at k = 0.6, LM head at kept positions only (tokclean) vs the full-logit loss.

Both run SmolLM2-135M-Instruct with the paper's LoRA (r 64, alpha 16, all seven projections, dropout 0 so the two agree),
on the same batches of real Alpaca-GPT4 samples whose response tokens were thinned to a random 60% (seeded):
- full logits: `model(input_ids, attention_mask, labels=labels).loss`, the HF loss over (B, T, V) logits;
- tokclean: `kept_loss_sum(...) / kept`, the head applied only at kept positions.
Each method runs in its own process: one warm-up step, then --steps timed forward+backward steps; tokens/s counts every
input token; peak memory is the highest RSS seen by a 5 ms sampler minus the RSS at the start. The two losses of every
step are compared.

    python benchmarks/p3_train_step.py            # batch 8 x up to 512 tokens, 6 steps
"""
import argparse, json, os, platform, subprocess, sys, threading, time
from pathlib import Path

import numpy as np


def batches(tok_dtype: str, n_steps: int, batch_size: int, max_len: int, k: float):
    from tokclean.data import load_sft
    from tokclean.models import load_tokenizer
    from tokclean.scoring import collate
    tok = load_tokenizer("smollm2-135m-instruct")
    sft = load_sft("alpaca-gpt4-demo", tok, max_len=max_len, limit=batch_size * (n_steps + 1))
    rng = np.random.default_rng(0)
    rows = []
    for r in sft.dataset:
        lab = np.array(r["labels"]); resp = np.flatnonzero(lab != -100)
        lab[rng.choice(resp, len(resp) - int(len(resp) * k), replace=False)] = -100  # drop 40% of the response tokens
        rows.append({"input_ids": r["input_ids"], "labels": lab.tolist()})
    return [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


def step_full(model, b):
    return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss


def step_ours(model, b):
    from tokclean.training import kept_loss_sum
    total, n = kept_loss_sum(model, b["input_ids"], b["attention_mask"], b["labels"])
    return total / n


METHODS = {"full_logits": step_full, "tokclean": step_ours}


def child(method: str, args, out: str):
    import psutil, torch
    from tokclean.training import lora_model
    torch.set_num_threads(os.cpu_count())
    model, _ = lora_model("smollm2-135m-instruct", lora_r=64, lora_alpha=16, lora_dropout=0.0, seed=0, grad_ckpt=False,
                          dtype=args.dtype, device="cpu")
    model.train()
    data = batches(args.dtype, args.steps, args.batch_size, args.max_len, 0.6)
    rss = lambda: psutil.Process().memory_info().rss / 2**20
    METHODS[method](model, data[0]).backward(); model.zero_grad()  # warm-up
    peak, start, done = [0.0], rss(), threading.Event()
    def sample():
        while not done.is_set(): peak[0] = max(peak[0], rss()); time.sleep(0.005)
    th = threading.Thread(target=sample); th.start()
    losses, t0 = [], time.perf_counter()
    for b in data[1:]:
        loss = METHODS[method](model, b); loss.backward(); model.zero_grad(); losses.append(float(loss))
    seconds = time.perf_counter() - t0
    done.set(); th.join()
    tokens = sum(int(b["attention_mask"].sum()) for b in data[1:])
    Path(out).write_text(json.dumps({"method": method, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
                                     "peak_mb": peak[0] - start, "losses": losses,
                                     "kept": sum(int((b["labels"][:, 1:] != -100).sum()) for b in data[1:])}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6); ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=512); ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--child"); ap.add_argument("--out")
    ap.add_argument("--save", default=str(Path(__file__).parent / "results" / "p3_train_step.json"))
    a = ap.parse_args()
    if a.child: return child(a.child, a, a.out)
    import tempfile
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in METHODS:
            out = str(Path(tmp) / f"{m}.json")
            subprocess.run([sys.executable, __file__, "--child", m, "--out", out, "--steps", str(a.steps), "--batch-size", str(a.batch_size),
                            "--max-len", str(a.max_len), "--dtype", a.dtype], check=True)
            res[m] = json.loads(Path(out).read_text())
    f, o = res["full_logits"], res["tokclean"]
    diff = float(np.max(np.abs(np.array(f["losses"]) - np.array(o["losses"]))))
    print(f"\nSmolLM2-135M-Instruct + LoRA r64 (all projections), {a.dtype}, CPU ({os.cpu_count()} threads), {a.steps} steps of "
          f"batch {a.batch_size} (real Alpaca-GPT4, up to {a.max_len} tokens), k = 0.6: {o['kept']} kept of {o['tokens']} tokens\n")
    print("| method | tokens/s | peak memory MB | seconds |\n|---|---|---|---|")
    for m, r in res.items(): print(f"| {m} | {r['tokens_per_s']:.0f} | {r['peak_mb']:.0f} | {r['seconds']:.1f} |")
    print(f"\ntokclean vs full logits: {o['tokens_per_s'] / f['tokens_per_s']:.2f}x tokens/s, {o['peak_mb'] / f['peak_mb']:.2f}x peak memory; "
          f"max |loss difference| per step {diff:.2e}")
    print("losses:", [round(x, 4) for x in f["losses"]], [round(x, 4) for x in o["losses"]])
    Path(a.save).parent.mkdir(parents=True, exist_ok=True)
    Path(a.save).write_text(json.dumps({"benchmark": "P3 masked LoRA step", "machine": platform.platform(), "args": vars(a), "results": res,
                                        "speedup": o["tokens_per_s"] / f["tokens_per_s"], "memory_ratio": o["peak_mb"] / f["peak_mb"],
                                        "max_loss_diff": diff}, indent=2) + "\n")


if __name__ == "__main__":
    main()

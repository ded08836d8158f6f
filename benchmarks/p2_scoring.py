"""P2: per-token scoring throughput and memory, tokclean vs the naive approach vs a bare forward pass, one run.

All three score the same real samples with the same model (SmolLM2-135M-Instruct, bf16 on this CPU):
- naive: file order, batches of B consecutive samples padded to their longest, full (B, T, V) logits, then
  CrossEntropyLoss(reduction="none") in fp32 over every position, labelled positions picked afterwards;
- tokclean: the scoring module's batching (by length, capped in padded tokens) and LM head at labelled positions only;
- bare forward: `model(input_ids, attention_mask)` over tokclean's batches, logits and nothing else.
Each method runs in its own process after one warm-up batch; tokens/s counts real (non-pad) input tokens; peak memory
is the highest RSS seen by a 5 ms sampler while the method runs, minus the RSS when it starts. Losses are compared with
the naive ones: in bf16 (where batch shapes change rounding) and in fp32 on the first 100 samples (target 1e-3).

    python benchmarks/p2_scoring.py              # 500 samples
    python benchmarks/p2_scoring.py --n 50       # quick
"""
import argparse, json, os, platform, subprocess, sys, threading, time
from pathlib import Path

import numpy as np


def load(dtype: str, n: int, max_len: int):
    from tokclean.data import load_sft
    from tokclean.models import load_model
    import torch
    torch.manual_seed(0)
    model, tok = load_model("smollm2-135m-instruct", dtype=dtype, device="cpu")
    sft = load_sft("alpaca-gpt4-demo", tok, max_len=max_len, limit=n)
    return model, [sft.dataset[i] for i in range(len(sft.dataset))]


def naive(model, rows, batch_size: int):
    import torch
    from tokclean.scoring import collate
    out = []
    with torch.inference_mode():
        for s in range(0, len(rows), batch_size):
            b = collate(rows[s : s + batch_size], 0)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits  # (B, T, V)
            ce = torch.nn.CrossEntropyLoss(reduction="none")(logits[:, :-1].float().reshape(-1, logits.size(-1)), b["labels"][:, 1:].reshape(-1))
            out.append(ce.view(b["labels"].shape[0], -1)[b["labels"][:, 1:] != -100])
    return torch.cat(out).numpy()


def tokclean_scoring(model, rows, batch_size: int):
    from tokclean.scoring import score_rows
    return score_rows(model, rows, batch_size, 16384)


def bare_forward(model, rows, batch_size: int):
    import torch
    from tokclean.scoring import collate, length_batches
    with torch.inference_mode():
        for idx in length_batches([len(r["input_ids"]) for r in rows], batch_size, 16384):
            b = collate([rows[i] for i in idx], 0)
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    return None


METHODS = {"naive": naive, "tokclean": tokclean_scoring, "bare_forward": bare_forward}


def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def run_one(method: str, dtype: str, n: int, max_len: int, batch_size: int, out: str):
    "Child process: load, warm up, run one method under an RSS sampler; write losses and numbers."
    model, rows = load(dtype, n, max_len)
    METHODS[method](model, rows[:batch_size], batch_size)  # warm-up
    peak, start, done = [0.0], rss_mb(), threading.Event()

    def sample():
        while not done.is_set(): peak[0] = max(peak[0], rss_mb()); time.sleep(0.005)
    t = threading.Thread(target=sample); t.start()
    t0 = time.perf_counter(); losses = METHODS[method](model, rows, batch_size); seconds = time.perf_counter() - t0
    done.set(); t.join()
    tokens = sum(len(r["input_ids"]) for r in rows)
    if losses is not None: np.save(out + ".npy", losses)
    Path(out + ".json").write_text(json.dumps({"method": method, "dtype": dtype, "samples": len(rows), "tokens": tokens,
                                               "seconds": seconds, "tokens_per_s": tokens / seconds, "peak_mb": peak[0] - start}))


def spawn(method, dtype, n, max_len, batch_size, tmp):
    out = str(Path(tmp) / f"{method}-{dtype}")
    subprocess.run([sys.executable, __file__, "--child", method, "--dtype", dtype, "--n", str(n), "--max-len", str(max_len),
                    "--batch-size", str(batch_size), "--out", out], check=True)
    r = json.loads(Path(out + ".json").read_text())
    r["losses"] = np.load(out + ".npy") if Path(out + ".npy").exists() else None
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--check-n", type=int, default=100, help="samples for the fp32 equality check")
    ap.add_argument("--child"); ap.add_argument("--out")
    ap.add_argument("--save", default=str(Path(__file__).parent / "results" / "p2_scoring.json"))
    a = ap.parse_args()
    if a.child: return run_one(a.child, a.dtype, a.n, a.max_len, a.batch_size, a.out)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        res = {m: spawn(m, a.dtype, a.n, a.max_len, a.batch_size, tmp) for m in METHODS}
        for m, r in res.items(): print(m, {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items() if k != "losses"}, flush=True)
        d_bf16 = np.abs(res["tokclean"]["losses"] - res["naive"]["losses"])
        fp32 = {m: spawn(m, "float32", a.check_n, a.max_len, a.batch_size, tmp)["losses"] for m in ("naive", "tokclean")}
        d_fp32 = np.abs(fp32["tokclean"] - fp32["naive"])
    nv, tc, bf = res["naive"], res["tokclean"], res["bare_forward"]
    summary = {"speedup_vs_naive": tc["tokens_per_s"] / nv["tokens_per_s"], "memory_vs_naive": tc["peak_mb"] / nv["peak_mb"],
               "throughput_vs_bare_forward": tc["tokens_per_s"] / bf["tokens_per_s"],
               "bf16_max_abs_diff": float(d_bf16.max()), "bf16_mean_abs_diff": float(d_bf16.mean()),
               "fp32_max_abs_diff": float(d_fp32.max()), "fp32_samples": a.check_n, "scored_tokens": int(len(tc["losses"]))}
    print(f"\nSmolLM2-135M-Instruct, {a.dtype}, CPU ({os.cpu_count()} threads), {nv['samples']} Alpaca-GPT4 samples, "
          f"{nv['tokens']} tokens, batch {a.batch_size}\n")
    print("| method | tokens/s | peak memory MB | seconds |\n|---|---|---|---|")
    for m, r in res.items(): print(f"| {m} | {r['tokens_per_s']:.0f} | {r['peak_mb']:.0f} | {r['seconds']:.1f} |")
    print(f"\ntokclean vs naive: {summary['speedup_vs_naive']:.2f}x tokens/s, {summary['memory_vs_naive']:.2f}x peak memory; "
          f"vs bare forward: {summary['throughput_vs_bare_forward']:.2f}x tokens/s")
    print(f"losses vs naive: bf16 max |diff| {summary['bf16_max_abs_diff']:.4f} (mean {summary['bf16_mean_abs_diff']:.2e}); "
          f"fp32 max |diff| {summary['fp32_max_abs_diff']:.2e} on {a.check_n} samples")
    out = {"benchmark": "P2 scoring", "machine": platform.platform(), "cpus": os.cpu_count(), "args": vars(a),
           "methods": {m: {k: v for k, v in r.items() if k != "losses"} for m, r in res.items()}, "summary": summary}
    Path(a.save).parent.mkdir(parents=True, exist_ok=True)
    Path(a.save).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

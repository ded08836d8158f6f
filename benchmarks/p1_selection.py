"""P1: global top-k selection, tokclean vs the official approach, side by side in one run.

Official approach (OFFICIAL_CODE.md, generate_token_label.py): per-token losses as Python lists, a list of
(score, sample, position) tuples, Python's stable sort descending, the first int(N * k) kept and written back as a
per-sample keep mask (the official code writes labels; a mask is the same work).
tokclean: `tokclean.selection.select(..., "global")` on float32 loss arrays (streamed float64 scores, histogram
threshold, earliest ties), statistics included.

Time is wall-clock (time.perf_counter; tokclean: best of 3, the official approach: one pass); peak memory is tracemalloc's peak of what the selection allocates beyond its
inputs (numpy reports its buffers to tracemalloc; Python objects are traced natively), measured in a separate pass so
tracing does not slow the timed pass. The official approach runs up to --official-max tokens and is extrapolated
beyond (time as N log N, memory as N), and the table says so.

    python benchmarks/p1_selection.py                       # 1M, 10M, 50M (+ 100M tokclean only)
    python benchmarks/p1_selection.py --sizes 1e6 --big 0   # quick
"""
import argparse, gc, json, math, platform, time, tracemalloc
from pathlib import Path

import numpy as np

from tokclean.scoring import response_offsets
from tokclean.selection import select

K = 0.6


def make_losses(n_tokens: int, seed: int = 0):
    "Per-sample float32 losses for base and reference, about 400 response tokens per sample."
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 750, size=n_tokens // 400 + 1)
    lengths = lengths[np.cumsum(lengths) <= n_tokens]
    lengths = np.append(lengths, n_tokens - lengths.sum()) if lengths.sum() < n_tokens else lengths
    n = int(lengths.sum())
    base = rng.gamma(2.0, 1.5, n).astype(np.float32)
    ref = (base * rng.uniform(0.3, 1.2, n)).astype(np.float32)
    return base, ref, response_offsets(lengths)


def official(base_lists, ref_lists, k):
    "Tuples, a stable descending sort, the first int(N * k) kept, written back as a per-sample keep mask."
    tokens = [(b - r, i, j) for i, (bs, rs) in enumerate(zip(base_lists, ref_lists)) for j, (b, r) in enumerate(zip(bs, rs))]
    ranked = sorted(tokens, key=lambda t: t[0], reverse=True)
    keep = [[False] * len(bs) for bs in base_lists]
    for _, i, j in ranked[: int(len(ranked) * k)]: keep[i][j] = True
    return keep


def ours(base, ref, offsets, k):
    return select(base, ref, offsets, "global", k=k).keep


def measure(fn, *args, repeats: int = 1):
    "(seconds, peak MB) of fn(*args): the best of `repeats` timed passes, then a traced pass."
    seconds = float("inf")
    for _ in range(repeats):
        gc.collect(); t0 = time.perf_counter(); out = fn(*args); seconds = min(seconds, time.perf_counter() - t0)
        del out
    gc.collect()
    tracemalloc.start(); fn(*args); peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    gc.collect()
    return seconds, peak / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1e6,1e7,5e7")
    ap.add_argument("--official-max", type=float, default=1e7)
    ap.add_argument("--big", type=float, default=1e8, help="an extra tokclean-only size (0: none)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "p1_selection.json"))
    args = ap.parse_args()
    rows, measured = [], {}
    for n in [int(float(x)) for x in args.sizes.split(",")]:
        base, ref, offsets = make_losses(n)
        t_ours, m_ours = measure(ours, base, ref, offsets, K, repeats=3)
        row = {"tokens": n, "tokclean_s": round(t_ours, 3), "tokclean_mb": round(m_ours, 1)}
        if n <= args.official_max:
            lists = [base[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])], [ref[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]
            t_off, m_off = measure(official, *lists, K)
            if n == min(int(float(x)) for x in args.sizes.split(",")):  # same selection, checked once
                theirs = np.concatenate([np.array(x, dtype=bool) for x in official(*lists, K)])
                assert (theirs == ours(base, ref, offsets, K)).all(), "the two selections differ"
                row["same_selection"] = True
            del lists; gc.collect()
            measured[n] = (t_off, m_off)
            row.update(official_s=round(t_off, 2), official_mb=round(m_off, 1), extrapolated=False)
        else:
            n0 = max(measured)
            t0, m0 = measured[n0]
            row.update(official_s=round(t0 * n / n0 * math.log(n) / math.log(n0), 1), official_mb=round(m0 * n / n0, 1), extrapolated=True)
        row["speedup"] = round(row["official_s"] / row["tokclean_s"], 1)
        row["memory_ratio"] = round(row["official_mb"] / row["tokclean_mb"], 1)
        rows.append(row)
        print(row, flush=True)
        del base, ref, offsets; gc.collect()
    big = None
    if args.big:
        base, ref, offsets = make_losses(int(args.big))
        t, m = measure(ours, base, ref, offsets, K, repeats=3)
        big = {"tokens": int(args.big), "tokclean_s": round(t, 2), "tokclean_mb": round(m, 1)}
        print(big, flush=True)
    print(f"\n| tokens | tokclean s | tokclean peak MB | official s | official peak MB | speed-up | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        star = " (extrapolated)" if r["extrapolated"] else ""
        print(f"| {r['tokens']:,} | {r['tokclean_s']} | {r['tokclean_mb']} | {r['official_s']}{star} | {r['official_mb']}{star} | "
              f"{r['speedup']}x | {r['memory_ratio']}x |")
    if big: print(f"| {big['tokens']:,} | {big['tokclean_s']} | {big['tokclean_mb']} | - | - | - | - |")
    result = {"benchmark": "P1 global top-k selection", "k": K, "machine": platform.platform(), "processor": platform.processor(),
              "cpus": __import__("os").cpu_count(), "rows": rows, "tokclean_only": big}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

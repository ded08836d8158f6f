"""E3: the host (CPU) seconds of one full evaluation in the `items` suite, apart from the model: what a GPU cannot speed up.

lm-eval builds the tasks, renders every document's few-shot context, tokenizes every request and computes the metrics
on the host, in one Python thread. This times all of that for the full local test sets of the seven benchmarks
(`eval.suite=items`, `eval.items_n` above every set's size, cheap accuracy, as `experiments/replicate.py --preset
gpu-smollm2` runs them) with SmolLM2-135M-Instruct's tokenizer and a model whose log-likelihoods are constants (no
forward runs). Two evaluations in one process: the first pays the one-time set-up, the second is what each further model
costs. The replication's GPU plan adds these seconds to the device's.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python benchmarks/e3_eval_host.py           # about 10 minutes on 2 CPU cores
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python benchmarks/e3_eval_host.py --n 200   # 200 items per benchmark
"""
import argparse, json, platform, time
from pathlib import Path

from tokclean.config import PAPER_TASKS


def null_lm(tokenizer, share_prefix: bool):
    "tokclean's lm-eval model with the forwards replaced by constants: everything else (tokenization included) as in a real run."
    from tokclean.evaluation import lm_class
    from tokclean.fixtures import tiny_model

    class NullLM(lm_class()):
        def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None): return [(-1.0, False)] * len(requests)
        def generate_until(self, requests, disable_tqdm=False): return [""] * len(requests)
    lm = NullLM(pretrained=tiny_model(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1), tokenizer=tokenizer, batch_size=64)
    lm.share_prefix = share_prefix
    return lm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="items per benchmark (more than a set holds: all of it)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "e3_eval_host.json"))
    args = ap.parse_args()
    from tokclean.evaluation import _register_tokenizer, task_manager
    from tokclean.item_metrics import evaluate_items
    from tokclean.models import load_tokenizer
    tok = load_tokenizer("smollm2-135m-instruct")
    lm = null_lm(tok, share_prefix=True)
    runs = []
    for attempt in ("first", "again"):
        t0 = time.perf_counter()
        tm = task_manager({"tokenizer": _register_tokenizer(tok), "seed": 42}, builtin=False)
        rec = evaluate_items(lm, tm, PAPER_TASKS, args.n, 42, "cheap", 64, False, log=lambda s: None)
        runs.append({"evaluation": attempt, "seconds": round(time.perf_counter() - t0, 1),
                     "per_benchmark": {b: {"items": r["n"], "seconds": r["seconds"]} for b, r in rec.items()}})
        print(f"{attempt}: {runs[-1]['seconds']} s  " + ", ".join(f"{b} {r['n']} items {r['seconds']} s" for b, r in rec.items()), flush=True)
    res = {"what": "host seconds of one items-suite evaluation, no model forwards", "machine": platform.platform(),
           "items_n": args.n, "tokenizer": "SmolLM2-135M-Instruct", "runs": runs, "seconds_per_evaluation": runs[-1]["seconds"]}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    Path(args.out).with_suffix(".txt").write_text(
        f"items suite, {args.n} items per benchmark (all of a smaller set), SmolLM2 tokenizer, no forwards, {platform.machine()} CPU\n"
        + "\n".join(f"{r['evaluation']}: {r['seconds']} s (" + ", ".join(f"{b} {v['seconds']} s" for b, v in r["per_benchmark"].items()) + ")"
                    for r in runs) + "\n")


if __name__ == "__main__":
    main()

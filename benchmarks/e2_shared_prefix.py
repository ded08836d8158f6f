"""E2: lm-eval's MMLU 5-shot with each subject's shared few-shot prefix run once (`eval.share_prefix`) vs lm-eval's own loop, one run.

Both score the same requests with the same model (SmolLM2-135M-Instruct, fp32, this CPU): --per-subject questions of each
of --subjects MMLU subjects, 5-shot, through `lm_eval.simple_evaluate` on tokclean's offline tasks, all subjects in one call
as a full-test-set evaluation makes them. The plain run is lm-eval's `HFLM._loglikelihood_tokens`; the shared run is
`shared_prefix_loglikelihood`. Reported: seconds of each (after one warm-up call), the speed-up, the largest difference of
any choice's log-likelihood, and whether every question's prediction (acc) is the same. The input tokens each way come from
counting what the forwards ran over.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python benchmarks/e2_shared_prefix.py             # about 6 minutes on 2 CPU cores
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python benchmarks/e2_shared_prefix.py --per-subject 4 --subjects 2   # quick
"""
import argparse, json, platform, time
from pathlib import Path

import numpy as np

SUBJECTS = ("high_school_biology", "world_religions", "college_physics", "marketing", "prehistory", "abstract_algebra")


def run(lm, tasks, limit, tm):
    "Per (task, doc, choice): log-likelihood; per (task, doc): acc; and the seconds of the whole call."
    import lm_eval
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=5, task_manager=tm, limit=limit, batch_size=lm.batch_size,
                                  bootstrap_iters=0, log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                  fewshot_random_seed=0)
    seconds = time.perf_counter() - t0
    ll = {(t, s["doc_id"], i): float(r[0][0]) for t in tasks for s in res["samples"][t] for i, r in enumerate(s["resps"])}
    acc = {(t, s["doc_id"]): s["acc"] for t in tasks for s in res["samples"][t]}
    return ll, acc, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4, help="how many MMLU subjects (of the six listed)")
    ap.add_argument("--per-subject", type=int, default=20, help="questions of each subject")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "e2_shared_prefix.json"))
    args = ap.parse_args()
    import torch
    from tokclean.evaluation import _register_tokenizer, lm_model, task_manager
    from tokclean.models import load_model
    model, tok = load_model("smollm2-135m-instruct", dtype="float32", device="cpu")
    tasks = [f"tokclean_mmlu_{s}" for s in SUBJECTS[: args.subjects]]
    lms = {"lm-eval": lm_model(model, tok, args.batch_size), "shared prefix": lm_model(model, tok, args.batch_size, share_prefix=True)}
    tm = task_manager({"tokenizer": _register_tokenizer(tok), "seed": 0}, builtin=False)
    tokens = {}
    def count(module, args_, kwargs):  # input tokens of every forward of the model (a prefix, or a batch's rows)
        ids = kwargs.get("input_ids", args_[0] if args_ else None)
        tokens[current] = tokens.get(current, 0) + int(ids.numel())
    out = {}
    for current, lm in lms.items():
        run(lm, tasks[:1], 2, tm)  # warm-up: the task set-up and the first forwards, not timed
        tokens[current] = 0
        hook = model.register_forward_pre_hook(count, with_kwargs=True)
        out[current] = run(lm, tasks, args.per_subject, tm)
        hook.remove()
    (ll_a, acc_a, s_a), (ll_b, acc_b, s_b) = out["lm-eval"], out["shared prefix"]
    if ll_a.keys() != ll_b.keys(): raise RuntimeError("the two runs scored different requests")
    diff = np.array([abs(ll_a[k] - ll_b[k]) for k in ll_a])
    res = {"model": "SmolLM2-135M-Instruct (fp32, CPU)", "machine": platform.platform(), "threads": torch.get_num_threads(),
           "tasks": tasks, "questions": len(acc_a), "requests": len(ll_a), "batch_size": args.batch_size,
           "seconds": {"lm-eval": round(s_a, 2), "shared prefix": round(s_b, 2)}, "speedup": round(s_a / s_b, 2),
           "input_tokens": tokens, "token_ratio": round(tokens["lm-eval"] / tokens["shared prefix"], 2),
           "max_abs_loglik_diff": float(diff.max()), "mean_abs_loglik_diff": float(diff.mean()),
           "same_acc": sum(acc_a[k] == acc_b[k] for k in acc_a), "acc": {"lm-eval": float(np.mean(list(acc_a.values()))),
                                                                      "shared prefix": float(np.mean(list(acc_b.values())))}}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"{res['model']}, {res['threads']} threads, MMLU 5-shot: {len(tasks)} subjects x {args.per_subject} questions "
             f"({res['questions']} questions, {res['requests']} requests), batch {args.batch_size}",
             "| method | seconds | input tokens |", "|---|---|---|",
             *(f"| {m} | {res['seconds'][m]} | {tokens[m]:,} |" for m in lms),
             f"shared prefix vs lm-eval: {res['speedup']}x faster, {res['token_ratio']}x fewer input tokens",
             f"log-likelihoods: max |diff| {res['max_abs_loglik_diff']:.2e} (mean {res['mean_abs_loglik_diff']:.1e}); "
             f"same prediction on {res['same_acc']} of {res['questions']} questions"]
    Path(args.out).with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

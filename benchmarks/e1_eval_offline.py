"""E1: the offline evaluation suite on SmolLM2-135M-Instruct, and the agreement of each offline task with lm-eval's built-in one.

1. The whole paper suite (TruthfulQA-MC2, TyDiQA-GoldP, LogiQA, MMLU 5-shot, HellaSwag, ARC-C, BoolQ) through
   `tokclean.evaluation.evaluate` with the offline tasks and the quick subset (--n seeded questions per benchmark):
   score, questions and seconds per benchmark.
2. For every multiple-choice benchmark (and one MMLU subject), lm-eval's built-in task definition (its YAML and scoring
   functions) fed our local rows against our offline task: same model, same --agree-n questions; their scores and the
   largest per-question difference.
3. The TyDiQA metric on the predictions stored with the authors' run (DIGEST: 21.63 F1).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python benchmarks/e1_eval_offline.py    # about 10 minutes on 2 CPU cores
"""
import argparse, json, platform, time
from pathlib import Path

from tokclean.evaluation import agreement, eval_file, language_mean, tydiqa_scores, evaluate
from tokclean.models import load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="questions per benchmark in the quick suite")
    ap.add_argument("--agree-n", type=int, default=50, help="questions per benchmark in the agreement check")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "e1_eval_offline.json"))
    args = ap.parse_args()
    model, tok = load_model("smollm2-135m-instruct", dtype="float32")
    t0 = time.time()
    suite = evaluate(model, "quick", tokenizer=tok, local=True, quick_n=args.n, batch_size=8)
    suite_s = round(time.time() - t0, 1)
    agree = []
    for bench in ("truthfulqa_mc2", "logiqa", "mmlu_anatomy", "hellaswag", "arc_challenge", "boolq"):
        a = agreement(model, tok, bench, n=args.agree_n, batch_size=8)
        print(f"agreement {bench}: offline {a['offline']:.4f} built-in {a['builtin']:.4f} max per-question diff {a['max_doc_diff']:.2e}")
        agree.append(a)
    stored = [json.loads(l) for l in eval_file("tydiqa").read_text().splitlines() if l.strip()]
    f1 = language_mean((r["lang"], tydiqa_scores(r["prediction_text"], [a["text"] for a in r["answers"]])["f1"]) for r in stored)
    out = {"model": "SmolLM2-135M-Instruct (fp32, CPU)", "machine": platform.platform(), "suite": suite, "suite_seconds": suite_s,
           "agreement": agree, "tydiqa_f1_on_authors_predictions": f1}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"\n| benchmark | metric | score | questions | seconds |\n|---|---|---|---|---|")
    for k, v in suite["tasks"].items(): print(f"| {k} | {v['metric']} | {v['score']:.2f} | {v['n']} | {v['seconds']} |")
    print(f"whole suite: {suite_s} s; TyDiQA F1 of the authors' stored predictions: {f1:.2f}")


if __name__ == "__main__":
    main()

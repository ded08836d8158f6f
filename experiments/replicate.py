"""A small-scale replication of Token Cleaning on a CPU: SmolLM2-135M-Instruct, real SFT data, five methods, several seeds.

Data (all from the shared data folder, fixed slices, so every run sees the same samples):
- pool (cleaned and trained on): Stanford Alpaca, Flan v2 CoT (GSM8K, StrategyQA, ECQA), OpenAssistant and Alpaca-GPT4,
  interleaved with a fixed shuffle so that the self-evolving chunks mix the sources;
- warm-up set (trains the reference, the paper's "DS2" high-quality set): Alpaca-GPT4 samples not in the pool;
- held-out set: unseen samples of the same four sources.
Methods at k = 0.6, each a tokclean pipeline run in its own run directory (resumable stage by stage):
Full, Random, RHO, Fixed-Model, Self-Evolving (external warm-up, T = 4 rounds), plus the base and the warm-up model.
A seed sets the LoRA initialisation, the training order and, for Random, which tokens are kept; the warm-up reference is
trained once per seed and shared by that seed's methods.
Every model is evaluated with the offline quick suite (--quick-n questions per benchmark) and its held-out response loss.
Results go to --results as JSON (one record per method and seed); nbs/12_replication.ipynb renders them.

    python experiments/replicate.py                      # SmolLM2, 3 seeds: about 75 minutes on 2 CPU cores
    python experiments/replicate.py --preset tiny --seeds 1 --pool 24 --warmup 8 --heldout 8 --quick-n 2 --max-len 512   # a smoke run

Re-running skips every finished stage and every finished evaluation, so a killed run resumes where it stopped;
`--collect-only` writes the results of the runs finished so far (the file says whether the study is complete).
"""
import argparse, json, random, time
from pathlib import Path

from tokclean.config import get_config
from tokclean.data import take_conversations
from tokclean.evaluation import eval_kwargs, evaluate
from tokclean.files import write_bytes, write_json
from tokclean.pipeline import run_dir, run_pipeline

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {  # name -> (data spec, share of the pool); held-out and warm-up rows come after the pool rows of each file
    "stanford_alpaca": ("shared:sft/stanford_alpaca/alpaca_5000.json", 0.3),
    "flan_v2_cot": (["shared:sft/flan_v2_cot/gsm8k_train.tsv", "shared:sft/flan_v2_cot/strategyqa_train.tsv",
                     "shared:sft/flan_v2_cot/ecqa_train.tsv"], 0.3),
    "oasst": ("shared:sft/oasst/en_100_tree.jsonl", 0.2),
    "alpaca_gpt4": ("alpaca-gpt4-demo", 0.2),
}
METHODS = ("full", "random", "rho", "fixed", "self-evolving")


def build_data(out: Path, pool: int, warmup: int, heldout: int) -> dict:
    "Write pool.jsonl, warmup.jsonl and heldout.jsonl (messages format) under `out`; return their paths."
    sets = {"pool": [], "warmup": [], "heldout": []}
    for name, (spec, share) in SOURCES.items():
        n_pool, n_held = round(pool * share), heldout // len(SOURCES)
        n_warm = warmup if name == "alpaca_gpt4" else 0
        rows = take_conversations(spec, n_pool + n_held + n_warm)
        sets["pool"] += rows[:n_pool]
        sets["heldout"] += rows[n_pool : n_pool + n_held]
        sets["warmup"] += rows[n_pool + n_held :]
    random.Random(0).shuffle(sets["pool"])  # mixed chunks for self-evolving; fixed, so every run sees the same order
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in sets.items():
        paths[name] = out / f"{name}.jsonl"
        text = "".join(json.dumps({"source": r["source"], "messages": r["messages"]}) + "\n" for r in rows)
        if not paths[name].exists() or paths[name].read_text() != text: write_bytes(paths[name], text.encode())  # atomic, only if new
    return {k: str(v) for k, v in paths.items()}


def evaluated(model: str, cfg, path: Path, log) -> dict:
    "The evaluation of `model`, from `path` if it was done before."
    if path.exists(): return json.loads(path.read_text())
    rec = evaluate(model, **eval_kwargs(cfg.eval), log=log)
    write_json(path, rec)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", help="demo: SmolLM2-135M-Instruct; tiny: the random test model")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pool", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=64)
    ap.add_argument("--heldout", type=int, default=96)
    ap.add_argument("--quick-n", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=None, help="data.max_len (default: the preset's)")
    ap.add_argument("--collect-only", action="store_true", help="only gather the runs that have finished into --results")
    ap.add_argument("--tasks", default=None, help="comma-separated benchmarks (default: the paper's seven)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "replication"), help="run directories and data")
    ap.add_argument("--results", default=str(ROOT / "paper_figs" / "replication" / "results.json"))
    args = ap.parse_args()
    out, t0 = Path(args.out), time.time()
    data = build_data(out / "data", args.pool, args.warmup, args.heldout)
    log = lambda s: print(f"[{time.time() - t0:7.0f} s] {s}", flush=True)
    common = [f"data.pool={data['pool']}", f"data.warmup={data['warmup']}", f"data.heldout={data['heldout']}",
              *([f"data.max_len={args.max_len}"] if args.max_len else []), "run.warmup_mode=external", f"run.rounds={args.rounds}", "select.k=0.6",
              "select.seed=42",  # used only by Random, which overrides it with each seed; pinned so the first study's runs resume
              "eval.suite=quick", f"eval.quick_n={args.quick_n}", *([f"eval.tasks={args.tasks}"] if args.tasks else []), "eval.local=true", f"run.out_dir={out}",
              f"score.cache_dir={out / 'scores'}"]
    cfg = lambda *over: get_config(args.preset, overrides=[*common, *over])

    def pipeline(run_cfg):
        "Run (or resume) a pipeline; with --collect-only, only read it back if it has finished."
        if not args.collect_only: return run_pipeline(run_cfg, log=log)
        mf = run_dir(run_cfg) / "manifest.json"
        m = json.loads(mf.read_text()) if mf.exists() else {"stages": {}}
        return m if "done" in m["stages"] else None

    def scores(model, path):
        if args.collect_only: return json.loads(path.read_text()) if path.exists() else None
        return evaluated(model, base_cfg, path, log)

    base_cfg = cfg()
    base = scores(base_cfg.model.base, out / "eval_base.json")
    records = [{**base, "method": "Base", "seed": None}] if base else []
    for seed in range(41, 41 + args.seeds):
        warm_cfg = cfg(f"run.seed={seed}", "run.pipeline=warmup")
        warm = pipeline(warm_cfg)
        if warm is None: continue
        ref, held = warm["final_model"], warm["stages"]["heldout"]["mean_loss"]
        if records and records[0]["method"] == "Base": records[0]["heldout_loss"] = held["base"]
        if (rec := scores(ref, run_dir(warm_cfg) / "eval.json")) is not None:
            records.append({**rec, "method": "Warm-up (reference)", "seed": seed, "heldout_loss": held["warmup"]})
        for method in METHODS:
            run_cfg = cfg(f"run.seed={seed}", f"run.pipeline={method}", "eval.enabled=true", f"model.reference={ref}",
                          *([f"select.seed={seed}"] if method == "random" else []))  # a new random mask per seed
            if (m := pipeline(run_cfg)) is None: continue
            rec = json.loads((run_dir(run_cfg) / "eval.json").read_text())
            kept = sum(v["kept_tokens"] for k, v in m["stages"].items() if k.endswith("/train") and not k.startswith("warmup"))
            records.append({**rec, "method": method, "seed": seed, "heldout_loss": m["stages"]["heldout"]["mean_loss"][method],
                            "kept_tokens": kept})
    expected = 1 + args.seeds * (1 + len(METHODS))
    result = {"preset": args.preset, "seeds": list(range(41, 41 + args.seeds)), "sizes": {"pool": args.pool, "warmup": args.warmup,
              "heldout": args.heldout}, "quick_n": args.quick_n, "rounds": args.rounds, "sources": {k: v[0] for k, v in SOURCES.items()},
              "complete": len(records) == expected, "runs_finished": f"{len(records)} of {expected}",
              "seconds_this_invocation": round(time.time() - t0, 1), "records": records}
    write_json(Path(args.results), result)
    log(f"wrote {args.results}")


if __name__ == "__main__":
    main()

"""A replication of Token Cleaning whose confidence intervals say how far apart the methods are: SmolLM2-135M-Instruct, real SFT
data, seven methods, three seeds, per-item metrics and paired bootstrap CIs.

Data (from the shared data folder, fixed slices, so every run sees the same samples):
- pool (cleaned and trained on): Stanford Alpaca, Flan v2 CoT, OpenAssistant and Alpaca-GPT4, shuffled once so that the
  self-evolving chunks mix the sources;
- warm-up set (trains the reference, the paper's "DS2" high-quality set): Alpaca-GPT4 samples not in the pool;
- held-out set: unseen samples of the same four sources, the same number from each.
One reference (the warm-up model, seed 42) is trained once and shared by every method and seed, as the authors' runs shared
theirs. Methods at k = 0.6 (each a resumable tokclean pipeline): Full, Random, RHO, Fixed-Model, Self-Evolving (the shared
reference as warm-up, every round evaluated), Forgetting and DFT-style weighting of all tokens. A seed sets the LoRA
initialisation, the training order and, for Random, which tokens are kept.
Every model is measured by the `items` suite (07c_item_metrics: the gold answer's loss on the same items of each benchmark,
accuracy where it is cheap) and by its response loss on every held-out sample. Each method minus Full gets a paired bootstrap
95% CI over seeds and items, and the minimum detectable effect (MDE) at that size.

    python experiments/replicate.py --plan                 # the sizes and the estimated CPU hours, runs nothing
    python experiments/replicate.py                        # the CPU study (resumes; commit paper_figs/replication as it goes)
    python experiments/replicate.py --preset gpu-smollm2   # the same study at 20,000 samples and full test sets, one GPU, 8 units at a time
    python experiments/replicate.py --preset gpu-smollm2 --plan   # its estimate: device minutes (tokclean.costs) + host minutes (E3)
    python experiments/replicate.py --preset tiny          # the machinery on the random tiny model, about two minutes

Every finished unit (the base, the reference, one method at one seed) writes its measurements, with its CPU seconds, to
`<results dir>/units/<name>.json`: small files meant to be committed. A later invocation, in this session or another, reuses
them and runs only what is missing (a unit's pipeline also resumes stage by stage inside `--out`). `--collect-only` rebuilds
`results.json` from the units alone. With `--jobs N` (the GPU preset: 8) the reference is trained first, alone (every method starts from
it); then the other units (the base's and the reference's evaluations too) run N at a time as child processes, the longest
first, each logging to `<out>/logs/<unit>.log`.
"""
import argparse, json, os, random, resource, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tokclean.config import ConfigError, get_config
from tokclean.data import take_conversations
from tokclean.evaluation import eval_kwargs, evaluate
from tokclean.files import write_bytes, write_json
from tokclean.item_metrics import paired_bootstrap
from tokclean.pipeline import run_dir, run_pipeline
from tokclean.scoring import load_scores

ROOT = Path(__file__).resolve().parents[1]
FLAN = [f"shared:sft/flan_v2_cot/{f}_train.tsv" for f in ("gsm8k", "strategyqa", "ecqa")]
FLAN_LARGE = [f"shared:sft/flan_v2_cot/{f}_train.tsv" for f in ("gsm8k", "ecqa", "creak", "sensemaking")]  # 6,000+ rows each
SOURCES = {"stanford_alpaca": "shared:sft/stanford_alpaca/alpaca_5000.json", "flan_v2_cot": FLAN, "oasst": "shared:sft/oasst/en_100_tree.jsonl",
           "alpaca_gpt4": "alpaca-gpt4-demo"}
# name -> (run.pipeline, its other overrides); Random also takes each seed as select.seed (a new random mask per seed)
METHODS = {"full": ("full", ()), "random": ("random", ()), "rho": ("rho", ()), "fixed": ("fixed", ()),
           "self-evolving": ("self-evolving", ("eval.rounds=true",)), "forgetting": ("forgetting", ()),
           "dft": ("full", ("train.token_weighting=dft",))}
CORE = ("full", "random", "rho", "fixed", "self-evolving")  # the paper's methods; the budget of a study is sized for these
ON_REFERENCE_SCORES = ("rho", "fixed", "forgetting")  # select on the pool scored by the base and the shared reference (one cache)
REFERENCE_SEED = 42
# A study resumed on another machine trains its reference again, and other CPU kernels change its last bits: the new one stands
# in for the old when no benchmark item's or held-out sample's loss moved by more than this (the effects measured are ~1e-3).
REBUILD_TOLERANCE = 1e-4  # nats


@dataclass(frozen=True)
class Study:
    "The sizes of one study and the config it runs under."
    config: str  # the tokclean preset
    pool: dict  # source -> pool samples
    heldout: int  # held-out samples per source
    warmup: int  # Alpaca-GPT4 samples that train the reference
    max_len: int
    items_n: int  # items per benchmark (more than a test set holds: all of it)
    item_accuracy: str = "cheap"
    rounds: int = 2  # self-evolving rounds T
    seeds: tuple = (41, 42, 43)
    methods: tuple = tuple(METHODS)
    tasks: tuple | None = None  # None: the paper's seven benchmarks
    flan: list = field(default_factory=lambda: FLAN)
    over: tuple = ()  # further config overrides
    rates: dict = field(default_factory=dict)  # for --plan on a CPU: seconds of the machine it was sized for (see `plan`)
    gpu: str | None = None  # for --plan on a GPU: its tokclean.costs.GPUS key (see `gpu_plan`)
    jobs: int = 1  # units run side by side once the reference exists (--jobs)


# Wall seconds on the 2-core CPU machine (SmolLM2-135M-Instruct, fp32), measured 2026-12-01: the `items` suite on 20 items of
# each benchmark of the base model (315.6 s wall, 550.7 CPU s; TruthfulQA also on 60, which gave its set-up and per-item parts),
# a bare forward of 8 x 300 tokens (240 tokens/s; bf16 is 4.5 times slower here), training taken as three forwards per token.
CPU_RATES = {"item_s": {"truthfulqa_mc2": 0.81, "tydiqa": 5.0, "logiqa": 0.67, "mmlu": 3.0, "hellaswag": 1.2, "arc_challenge": 0.28,
                        "boolq": 0.76}, "bench_setup_s": 5.0, "mmlu_setup_s": 40.0, "train_tok_s": 80.0, "score_tok_s": 240.0,
             "tokens_per_sample": 170, "load_s": 15.0, "cpu_per_wall": 1.75}
# A GPU study is planned by tokclean.costs instead (`gpu_plan`): the FLOPs of every stage from the model's shape and the study's
# own tokenized data, at its utilisations (assumed, or measured by G1), plus what the host does apart from the model: lm-eval's
# set-up, rendering and tokenization of a full evaluation, measured on this CPU by benchmarks/e3_eval_host.py.
HOST_EVAL = ROOT / "benchmarks" / "results" / "e3_eval_host.json"
LOAD_S = 5.0  # ASSUMED host seconds to load or save a 135M model and start a stage
TEST_SETS = {"truthfulqa_mc2": 817, "tydiqa": 5077, "logiqa": 651, "mmlu": 14042, "hellaswag": 10042, "arc_challenge": 1172, "boolq": 3270}

STUDIES = {
    # Sized to about 3 CPU hours (getrusage) for the five core methods on the 2-core machine (see --plan): SmolLM2 forwards 240
    # tokens/s there, and the benchmarks' prompts (5-shot MMLU, multilingual TyDiQA passages) cost 0.3-5 s per item, so the items
    # per benchmark are what the budget leaves after training. Forgetting and DFT come after the core methods, beyond the budget.
    "cpu": Study("demo", {"stanford_alpaca": 14, "flan_v2_cot": 14, "oasst": 10, "alpaca_gpt4": 10}, heldout=25, warmup=32, max_len=256,
                 items_n=10, rates=CPU_RATES, over=("train.batch_size=4",)),  # 4 x 256 tokens: the demo's 8 x 512 fp32 limit halved twice
    # 20,000 samples (Alpaca-GPT4: 999 usable rows, so 150 pool + 250 held-out + 590 warm-up), every item of every test set, the
    # paper's four rounds, on one H200: 135M parameters need no gradient checkpointing, each subject's few-shot prefix runs once
    # (eval.share_prefix), and eight units share the GPU (8 x 14.5 GiB at their peak, `gpu_memory`) so that one's host work
    # (lm-eval's set-up and tokenization, data loading) overlaps the others' device work. `--plan` shows the estimate.
    "gpu-smollm2": Study("demo", {"stanford_alpaca": 4600, "flan_v2_cot": 15000, "oasst": 250, "alpaca_gpt4": 150}, heldout=250,
                         warmup=590, max_len=512, items_n=100_000, rounds=4, flan=FLAN_LARGE, gpu="H200", jobs=8,
                         over=("model.device=cuda", "model.dtype=bfloat16", "score.dtype=bfloat16", "score.batch_size=64",
                               "score.shard_size=2048", "train.batch_size=8", "train.global_batch=64", "train.grad_ckpt=false",
                               "eval.batch_size=32", "eval.share_prefix=true")),
    "tiny": Study("tiny", {"stanford_alpaca": 8, "flan_v2_cot": 8, "oasst": 4, "alpaca_gpt4": 4}, heldout=3, warmup=8, max_len=96,
                  items_n=3, seeds=(41,), tasks=("boolq", "arc_challenge"), rates=CPU_RATES),
}


def build_data(out: Path, study: Study) -> dict:
    "Write pool.jsonl, warmup.jsonl and heldout.jsonl (messages format) under `out`; return their paths."
    sets = {"pool": [], "warmup": [], "heldout": []}
    for name, spec in SOURCES.items():
        spec = study.flan if name == "flan_v2_cot" else spec
        n_pool, n_warm = study.pool[name], study.warmup if name == "alpaca_gpt4" else 0
        rows = [{**r, "study_source": name} for r in take_conversations(spec, n_pool + study.heldout + n_warm, on_bad="skip")]  # Alpaca has empty answers past row 2,000  # per-source results by these names
        sets["pool"] += rows[:n_pool]
        sets["heldout"] += rows[n_pool : n_pool + study.heldout]
        sets["warmup"] += rows[n_pool + study.heldout :]
    random.Random(0).shuffle(sets["pool"])  # mixed chunks for self-evolving; fixed, so every run sees the same order
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in sets.items():
        paths[name] = out / f"{name}.jsonl"
        text = "".join(json.dumps({"source": r["study_source"], "messages": r["messages"]}) + "\n" for r in rows)
        if not paths[name].exists() or paths[name].read_text() != text: write_bytes(paths[name], text.encode())  # atomic, only if new
    return {k: str(v) for k, v in paths.items()}


def unit_seconds(study: Study, one_eval, train, score, load) -> tuple[dict, object]:
    """Seconds of each unit of `study` and of the part of "reference" every method waits for (its training and held-out losses):
    `train(set, share)` and `score(set, share)` of the pool, warm-up or held-out set, one evaluation, one load."""
    held, T = score("heldout", 1.0), study.rounds
    trained = train("warmup", 1.0) + 2 * held  # the reference model and its held-out losses beside the base's
    units = {"base": one_eval + load, "reference": trained + one_eval + load}
    pool_scored = False  # the pool scored by base and reference: once, by the first unit that selects on them (a shared cache)
    for seed in study.seeds:
        for m in study.methods:
            if m == "self-evolving":  # rounds 1..T train the chunks after the first; each round's model is scored and evaluated
                units[f"{m}-s{seed}"] = train("pool", T / (T + 1)) + T * (one_eval + load) + 2 * score("pool", 1.0) + held
                continue
            units[f"{m}-s{seed}"] = train("pool", 1.0) + one_eval + held
            if m in ON_REFERENCE_SCORES and not pool_scored: units[f"{m}-s{seed}"] += 2 * score("pool", 1.0); pool_scored = True
    return units, trained


def side_by_side_order(names) -> list:
    "The order units start in when run side by side: the self-evolving ones (T rounds, T evaluations: the longest) first."
    return sorted(names, key=lambda n: not n.startswith("self-evolving"))


def lanes(seconds: list, jobs: int) -> float:
    "Makespan of units taking `seconds`, started in that order on `jobs` lanes, each as soon as a lane is free."
    free = [0.0] * jobs
    for s in seconds: free[free.index(min(free))] += s
    return max(free)


def _core(names) -> list:
    "The units of the paper's methods, the base and the reference."
    return [n for n in names if n.rsplit("-s", 1)[0] not in METHODS or n.rsplit("-s", 1)[0] in CORE]


def plan(study: Study, done: set = frozenset()) -> dict:
    "Estimated seconds of each part of a CPU `study` (wall, and CPU on the machine the rates are for), leaving out the units in `done`."
    r, tasks = study.rates, study.tasks or tuple(TEST_SETS)
    items = {t: min(study.items_n, TEST_SETS[t]) for t in tasks}
    accuracy_extra = {"truthfulqa_mc2": 4, "logiqa": 4, "tydiqa": 3} if study.item_accuracy == "all" else {}  # every choice, or F1's generation
    one_eval = sum(items[t] * r["item_s"][t] * (1 + accuracy_extra.get(t, 0)) + (r["mmlu_setup_s"] if t == "mmlu" else r["bench_setup_s"])
                   for t in tasks)
    samples = {"pool": sum(study.pool.values()), "warmup": study.warmup, "heldout": 4 * study.heldout}
    train = lambda what, share: samples[what] * share * r["tokens_per_sample"] / r["train_tok_s"] + r["load_s"]
    score = lambda what, share: samples[what] * share * r["tokens_per_sample"] / r["score_tok_s"]
    units, _ = unit_seconds(study, one_eval, train, score, r["load_s"])
    todo = {k: v for k, v in units.items() if k not in done}
    hours = lambda names: {"wall_h": round(sum(todo[n] for n in names) / 3600, 2),
                           "cpu_h": round(sum(todo[n] for n in names) * r["cpu_per_wall"] / 3600, 2)}
    return {"units": len(units), "to_run": len(todo), "eval_s_per_model": round(one_eval), "items": items,
            "core": hours(_core(todo)), "all": hours(list(todo))}


def study_lengths(study: Study, data: dict) -> tuple[dict, float]:
    "tokclean.costs `Lengths` of the pool, warm-up and held-out files as the pipelines tokenize them, and the seconds that took."
    from tokclean.costs import pool_lengths
    from tokclean.data import load_sft, sft_kwargs
    from tokclean.models import load_tokenizer, tokenizer_kwargs
    cfg = get_config(study.config, overrides=[f"data.max_len={study.max_len}", *study.over])
    tok, t0 = load_tokenizer(cfg.model.base, **tokenizer_kwargs(cfg.model)), time.time()
    out = {k: pool_lengths(load_sft(data[k], tok, **{**sft_kwargs(cfg.data), "limit": None}), cfg.train.batch_size)
           for k in ("pool", "warmup", "heldout")}
    return out, time.time() - t0


def _share(lengths, share: float):
    "`lengths` of a share of the samples (a self-evolving round's chunks): every sum scaled."
    return replace(lengths, **{k: type(getattr(lengths, k))(getattr(lengths, k) * share)
                               for k in ("samples", "tokens", "response_tokens", "sq_tokens", "padded_tokens", "padded_sq")})


def eval_work(study: Study, cfg) -> dict:
    "tokclean.costs `EvalWork` of one evaluation of `study`: every choice of every item (an upper bound of `items`), its prefixes shared or not."
    from tokclean.costs import EVAL_WORK, EVAL_WORK_SHARED
    work = {**EVAL_WORK, **(EVAL_WORK_SHARED if cfg.eval.share_prefix else {})}
    if study.item_accuracy != "all": work["tydiqa"] = replace(work["tydiqa"], new_tokens=0)  # its gold answer's loss: no generation
    return {t: w if study.items_n >= w.docs else _share(w, study.items_n / w.docs) for t, w in work.items()}


def gpu_memory(study: Study, work: dict | None = None) -> dict:
    "Peak GiB of one unit of a GPU `study` (training, scoring, evaluation: tokclean.costs) and of `study.jobs` side by side; raises if they do not fit."
    from tokclean.costs import GPUS, USABLE_SHARE, eval_memory, model_shape, score_memory, train_memory
    cfg = get_config(study.config, overrides=list(study.over))
    shape, work = model_shape(cfg.model.base), work or eval_work(study, cfg)
    per_unit = {"train": sum(train_memory(shape, cfg.train.batch_size, study.max_len, cfg.train.lora_r, grad_ckpt=cfg.train.grad_ckpt).values()),
                "score": sum(score_memory(shape, cfg.score.batch_size, cfg.score.max_batch_tokens, study.max_len).values()),
                "eval": sum(eval_memory(shape, cfg.eval.batch_size, work, study.tasks or tuple(TEST_SETS), cfg.eval.share_prefix).values())}
    peak, usable = max(per_unit.values()), GPUS[study.gpu].mem_gib * USABLE_SHARE
    if study.jobs * peak > usable:
        raise ConfigError(f"--jobs {study.jobs}: {study.jobs} units at up to {peak:.1f} GiB each need more than the {usable:.0f} GiB of one "
                         f"{study.gpu} (tokclean.costs); use --jobs {max(1, int(usable // peak))} or fewer")
    return {"per_unit": {k: round(v, 1) for k, v in per_unit.items()}, "jobs_at_peak": round(study.jobs * peak, 1), "usable": round(usable)}


def gpu_plan(study: Study, lengths: dict, tokenize_s: float, done: set = frozenset(), host_eval: Path = HOST_EVAL) -> dict:
    "Estimated minutes of a GPU `study` on `study.gpu`: device seconds from tokclean.costs, host seconds measured, units `study.jobs` at a time."
    from tokclean.costs import measured_mfu, model_shape, stage_cost
    cfg = get_config(study.config, overrides=list(study.over))
    shape, mfu, work = model_shape(cfg.model.base), measured_mfu(ROOT / "benchmarks" / "results"), eval_work(study, cfg)
    tasks = study.tasks or tuple(TEST_SETS)
    if not host_eval.exists(): raise FileNotFoundError(f"{host_eval}: run python benchmarks/e3_eval_host.py first (the host's share of an evaluation)")
    host = json.loads(host_eval.read_text())
    eval_host = host["seconds_per_evaluation"] * (1 if host["items_n"] >= study.items_n else study.items_n / host["items_n"])
    sec = lambda *a, **k: stage_cost(*a, gpu=study.gpu, mfu=mfu, **k).hours * 3600
    one_eval = np.array([sec("eval", shape, None, work=work, tasks=tasks), eval_host])  # (device, host) seconds
    train = lambda what, share: np.array([sec("train", shape, _share(lengths[what], share), batch_size=cfg.train.batch_size,
                                              grad_ckpt=cfg.train.grad_ckpt, lora_r=cfg.train.lora_r), LOAD_S + tokenize_s])
    score = lambda what, share: np.array([sec("score", shape, _share(lengths[what], share)), 0.0])
    units, trained = unit_seconds(study, one_eval, train, score, np.array([0.0, LOAD_S]))
    todo = {k: v for k, v in units.items() if k not in done}
    def minutes(names):
        "The reference's training alone, then every unit (the reference's evaluation too) on `jobs` lanes sharing the device."
        first = trained if "reference" in names else np.zeros(2)
        rest = {n: todo[n] - (first if n == "reference" else 0) for n in names}
        order = side_by_side_order(rest)
        makespan = lanes([rest[n].sum() for n in order], study.jobs)  # each lane does its units' host and device work in turn
        device = sum(v[0] for v in rest.values())  # and the device can do no more than all of it back to back
        return {"device_min": round(sum(todo[n][0] for n in names) / 60, 1), "host_min": round(sum(todo[n][1] for n in names) / 60, 1),
                "first_min": round(first.sum() / 60, 1), "side_by_side_min": round(max(makespan, device) / 60, 1),
                "device_busy": round(device / max(makespan, device, 1e-9), 2), "wall_min": round((first.sum() + max(makespan, device)) / 60, 1)}
    memory = gpu_memory(study, work)
    return {"gpu": study.gpu, "jobs": study.jobs, "units": len(units), "to_run": len(todo),
            "eval_s_per_model": {"device": round(one_eval[0], 1), "host": round(one_eval[1], 1)},
            "train_s_per_unit": {"device": round(train("pool", 1.0)[0], 1), "host": round(train("pool", 1.0)[1], 1)},
            "reference_train_s": {"device": round(trained[0], 1), "host": round(trained[1], 1)},
            "gpu_memory_gib": memory,
            "pool_tokens": lengths["pool"].tokens, "mfu": {k: v for k, v in mfu.items() if k != "decode"},
            "core": minutes(_core(todo)), "all": minutes(list(todo)), "target_min": 10}


def cpu_seconds() -> float:
    "User + system CPU seconds of this process and its finished children."
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measured(rec: dict) -> dict:
    "The per-item measurements of an evaluation record: bench -> {id, loss, acc?}."
    return {b: {k: v["items"][k] for k in ("id", "loss", "acc") if k in v["items"]} for b, v in rec["tasks"].items()}


def heldout_of(manifest: dict, pipeline: str) -> dict:
    "Per-sample held-out losses of a run's model and the base, with each sample's source."
    h = manifest["stages"]["heldout"]
    return {"loss": h["per_sample"][pipeline], "base": h["per_sample"]["base"], "sources": h["sources"], "mean": h["mean_loss"][pipeline]}


def spread(manifest: dict, tag: str) -> dict | None:
    "How far the reference of score stage `tag` is from its base: mean |loss_base - loss_ref| per token, share over 0.1."
    st = manifest["stages"]
    if f"{tag}/score_ref" not in st: return None
    base, ref = (load_scores(st[f"{tag}/score_{w}"]["path"]).loss.astype(np.float64) for w in ("base", "ref"))
    d = np.abs(base - ref)
    return {"mean_abs_diff": round(float(d.mean()), 5), "share_over_0.1": round(float((d > 0.1).mean()), 4), "tokens": int(d.size)}


class Units:
    "The finished units of a study, one small JSON each under `dir`: reused by any later invocation."

    REBUILDS = "reference_rebuilds"  # beside the units, not one: the references trained again and accepted (`accept_rebuild`)

    def __init__(self, dir: Path): self.dir = dir
    def path(self, name: str) -> Path: return self.dir / f"{name}.json"
    def get(self, name: str) -> dict | None: return json.loads(self.path(name).read_text()) if self.path(name).exists() else None
    def names(self) -> set: return {p.stem for p in self.dir.glob("*.json")} - {self.REBUILDS}
    def rebuilds(self) -> list: return self.get(self.REBUILDS) or []

    def run(self, name: str, fn, log) -> dict:
        "The unit `name`: read back, or computed by `fn` (which returns its record) and written with its CPU and wall seconds."
        if (rec := self.get(name)) is not None: return rec
        c0, t0 = cpu_seconds(), time.time()
        rec = fn()
        rec = {"unit": name, **rec, "cpu_s": round(cpu_seconds() - c0, 1), "wall_s": round(time.time() - t0, 1)}
        write_json(self.path(name), rec)
        log(f"unit {name} done: {rec['cpu_s']:.0f} CPU s, {rec['wall_s']:.0f} s")
        return rec


def study_plan(study: Study, data: dict, done: set = frozenset()) -> dict:
    "The estimate of `study`: `gpu_plan` on its data's measured lengths for a GPU study, `plan` for a CPU one."
    if not study.gpu: return plan(study, done)
    lengths, tokenize_s = study_lengths(study, data)
    return gpu_plan(study, lengths, tokenize_s, done)


def run_side_by_side(names: list, child_argv: list, jobs: int, logs: Path, log) -> None:
    "Run the units `names`, `jobs` child processes at a time (each `replicate.py ... --unit NAME`, its output in `logs/NAME.log`)."
    logs.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))  # the host's cores shared out: torch's and the tokenizers' thread pools
    env = {**os.environ, **{k: os.environ.get(k, threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")}}
    def one(name):
        t0, path = time.time(), logs / f"{name}.log"
        with open(path, "w") as f:
            rc = subprocess.run([sys.executable, __file__, *child_argv, "--unit", name], stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        log(f"unit {name}: {'done' if rc == 0 else f'FAILED (exit {rc})'} in {time.time() - t0:.0f} s ({path})")
        return rc
    with ThreadPoolExecutor(jobs) as pool: codes = dict(zip(names, pool.map(one, names)))
    if failed := [n for n, rc in codes.items() if rc]:
        raise RuntimeError(f"{len(failed)} of {len(names)} units failed ({', '.join(failed)}): see their logs in {logs}; run again to retry them")


def run_study(study: Study, out: Path, results: Path, collect_only: bool = False, log=print, only: str | None = None,
              child_argv: list | None = None) -> dict | None:
    "Run (or resume) every unit of `study` (or `only` that one), then write and return `results.json`; `study.jobs` > 1 runs units side by side."
    units = Units(results.parent / "units")
    if study.gpu and not collect_only: gpu_memory(study)  # --jobs units side by side must fit in its memory: refused before any work
    data = build_data(out / "data", study)
    planned = None if study.gpu else plan(study)  # a GPU study's plan tokenizes its data: once, at the end
    common = [f"data.pool={data['pool']}", f"data.warmup={data['warmup']}", f"data.heldout={data['heldout']}", f"data.max_len={study.max_len}",
              "run.warmup_mode=external", f"run.rounds={study.rounds}", "select.k=0.6", "eval.suite=items", f"eval.items_n={study.items_n}",
              f"eval.item_accuracy={study.item_accuracy}", "eval.local=true", f"run.out_dir={out}", f"score.cache_dir={out / 'scores'}",
              *([f"eval.tasks={','.join(study.tasks)}"] if study.tasks else []), *study.over]
    cfg = lambda *over: get_config(study.config, overrides=[*common, *over])
    # every seed of the paper's methods first: an interrupted study has their pairs complete
    method_units = [(f"{m}-s{seed}", m, seed) for core in (True, False) for seed in study.seeds for m in study.methods if (m in CORE) == core]
    if only and only not in ("base", "reference", *(n for n, _, _ in method_units)):
        raise SystemExit(f"--unit {only}: not a unit of this study; use base, reference or <method>-s<seed> of its methods and seeds")
    def unit(name, fn):
        "A finished unit, or (unless collecting only, or a child running another one) one run now; results.json is rewritten after each new one."
        if collect_only or units.get(name) is not None or (only and name != only): return units.get(name)
        rec = units.run(name, fn, log)
        if not only: write_json(results, collect(study, units, planned))  # a child of run_side_by_side leaves it to its parent
        return rec

    # The reference's evaluation is not part of its pipeline, so that the method units need only its training (and a side-by-side
    # study evaluates it beside them); the base's held-out losses come from the same held-out stage.
    ref_cfg = cfg(f"run.seed={REFERENCE_SEED}", "run.pipeline=warmup", "run.name=reference")
    model_eval = lambda model: measured(evaluate(model, **eval_kwargs(ref_cfg.eval), log=log,
                                                 device=None if ref_cfg.model.device == "auto" else ref_cfg.model.device))
    def reference(m=None):
        m = m or run_pipeline(ref_cfg, log=log)
        return {"method": "reference", "seed": REFERENCE_SEED, "model_sha256": m["stages"]["warmup/train"]["model_sha256"],
                "eval": model_eval(m["final_model"]), "heldout": heldout_of(m, "warmup"), "versions": m.get("versions")}
    ref = units.get("reference")
    ref_model, ref_sha = str(run_dir(ref_cfg) / "models" / "warmup"), ref and ref["model_sha256"]
    if not collect_only and (not only or only not in ("base", "reference")):
        m = run_pipeline(ref_cfg, log=log)  # trains it, or (finished) returns at once; in a new checkout it trains the reference again
        ref_model, ref_sha = m["final_model"], m["stages"]["warmup/train"]["model_sha256"]
        if ref is not None and ref_sha != ref["model_sha256"]: accept_rebuild(units, ref, reference(m), log)
    if study.jobs > 1 and not collect_only and not only:  # everything else side by side, the longest first
        missing = [n for n in ("base", "reference", *(n for n, _, _ in method_units)) if units.get(n) is None]
        run_side_by_side(side_by_side_order(missing), child_argv or [], study.jobs, out / "logs", log)
    unit("base", lambda: {"method": "base", "eval": model_eval(ref_cfg.model.base)})
    unit("reference", reference)

    def method_unit(method: str, seed: int):
        pipe, extra = METHODS[method]
        run_cfg = cfg(f"run.seed={seed}", f"run.pipeline={pipe}", f"run.name={method}-s{seed}", "eval.enabled=true",
                      f"model.reference={ref_model}", *([f"select.seed={seed}"] if method == "random" else []), *extra)
        m = run_pipeline(run_cfg, log=log)
        d, st = run_dir(run_cfg), m["stages"]
        rec = {"method": method, "seed": seed, "reference_sha256": ref_sha, "eval": measured(json.loads((d / "eval.json").read_text())),
               "heldout": heldout_of(m, pipe),
               "kept_tokens": sum(v["kept_tokens"] for k, v in st.items() if k.endswith("/train")),
               "response_tokens": st["data"]["response_tokens"]}
        if method == "self-evolving":
            rec["rounds"] = [{"round": t, "eval": measured(json.loads((d / f"eval_round_{t}.json").read_text()))} for t in range(1, study.rounds)]
            rec["round_spread"] = [spread(m, f"round_{t}") for t in range(1, study.rounds + 1)]
        if method in ON_REFERENCE_SCORES: rec["spread"] = spread(m, pipe)
        return rec
    for name, method, seed in method_units: unit(name, lambda: method_unit(method, seed))
    if only: return None
    res = collect(study, units, planned if planned is not None else study_plan(study, data))
    write_json(results, res)
    log(f"wrote {results}: {res['units_finished']}")
    return res


def reference_drift(old: dict, new: dict) -> float:
    "The largest |loss difference| between two records of the reference, over every benchmark item and held-out sample."
    pairs = [(old["heldout"]["loss"], new["heldout"]["loss"])]
    for bench, items in old["eval"].items():
        if items["id"] != new["eval"][bench]["id"]: raise RuntimeError(f"the rebuilt reference was evaluated on other {bench} items")
        pairs.append((items["loss"], new["eval"][bench]["loss"]))
    return max(abs(x - y) for a, b in pairs for x, y in zip(a, b, strict=True))


def accept_rebuild(units: Units, old: dict, new: dict, log) -> None:
    "Let a reference trained again (another machine) stand in for the stored one if it is the same model to REBUILD_TOLERANCE."
    drift, path = reference_drift(old, new), units.path(units.REBUILDS)
    sha, was = new["model_sha256"][:12], old["model_sha256"][:12]
    if drift > REBUILD_TOLERANCE:
        raise RuntimeError(f"the reference trained now ({sha}) differs from the one the finished units used ({was}) by up to {drift:.2g} "
                           f"nats per item (tolerance {REBUILD_TOLERANCE:g}): delete {units.dir} to start the study afresh")
    rebuilds = units.rebuilds()
    if new["model_sha256"] not in {r["model_sha256"] for r in rebuilds}:
        rebuilds.append({"model_sha256": new["model_sha256"], "of": old["model_sha256"], "max_abs_loss_diff": drift,
                         "versions": new.get("versions"), "date": time.strftime("%Y-%m-%d")})
        write_json(path, rebuilds)
    log(f"the reference trained again here ({sha}) is not bit-identical to {was}, but no item's loss moved more than {drift:.1e} nats: "
        f"the study goes on with it (recorded in {path.name})")


def compare(a: list[dict], b: list[dict], better: str) -> dict:
    "Paired bootstrap of metric arrays `a` minus `b` (one per seed, same items), with which way is better."
    r = paired_bootstrap(np.array(a), np.array(b))
    wins = r["ci_high"] < 0 if better == "lower" else r["ci_low"] > 0
    loses = r["ci_low"] > 0 if better == "lower" else r["ci_high"] < 0
    return {**{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()}, "better": better,
            "verdict": "better" if wins else "worse" if loses else "no detectable difference"}


def metrics_of(rec: dict) -> dict:
    "metric name -> (per-item values, which way is better) of a unit: gold loss and accuracy per benchmark, held-out loss per source."
    out = {}
    for bench, v in rec["eval"].items():
        out[f"{bench}/gold_loss"] = (v["loss"], "lower")
        if "acc" in v: out[f"{bench}/accuracy"] = (v["acc"], "higher")
    out["all benchmarks/gold_loss"] = ([x for v in rec["eval"].values() for x in v["loss"]], "lower")  # every item, each benchmark's n
    if "heldout" in rec:
        h = rec["heldout"]
        out["heldout/loss"] = (h["loss"], "lower")
        for s in sorted(set(h["sources"])):
            out[f"heldout/{s}"] = ([x for x, src in zip(h["loss"], h["sources"]) if src == s], "lower")
    return out


def contrast(units: dict, a: str, b: str, seeds) -> dict:
    "Every metric of method `a` minus method `b`, paired by seed and item, over the seeds both finished."
    both = [s for s in seeds if f"{a}-s{s}" in units and f"{b}-s{s}" in units]
    if not both: return {}
    ma = [metrics_of(units[f"{a}-s{s}"]) for s in both]
    mb = [metrics_of(units[f"{b}-s{s}"]) for s in both]
    return {k: {**compare([m[k][0] for m in ma], [m[k][0] for m in mb], ma[0][k][1]), "seeds_used": both} for k in ma[0]}


def collect(study: Study, units_store: Units, planned: dict | None = None) -> dict:
    "results.json: sizes, seeds, CPU time, the plan, score spread, and each method minus Full (and the paper's two contrasts) per metric."
    units = {n: units_store.get(n) for n in sorted(units_store.names())}
    expected = ["base", "reference", *(f"{m}-s{s}" for s in study.seeds for m in study.methods)]
    rebuilds = units_store.rebuilds()
    known = {units["reference"]["model_sha256"]} | {r["model_sha256"] for r in rebuilds} if "reference" in units else set()
    refs = {u.get("reference_sha256") for u in units.values() if u.get("reference_sha256")}
    if refs - known: raise RuntimeError(f"{units_store.dir}: units trained against a reference that is neither the stored one nor a "
                                        f"rebuild of it within tolerance ({sorted(r[:12] for r in refs - known)}); start afresh")
    references = [{"model_sha256": sha, "max_abs_loss_diff": next((r["max_abs_loss_diff"] for r in rebuilds if r["model_sha256"] == sha), 0.0),
                   "units": sorted(n for n, u in units.items() if u.get("reference_sha256") == sha)} for sha in sorted(known)]
    vs_full = {m: contrast(units, m, "full", study.seeds) for m in study.methods if m != "full"}
    contrasts = {"fixed - rho": contrast(units, "fixed", "rho", study.seeds),
                 "self-evolving - fixed": contrast(units, "self-evolving", "fixed", study.seeds)}
    if "base" in units and "reference" in units:  # the reference's own effect on the benchmarks (one model each: items only)
        h = units["reference"]["heldout"]  # the held-out stage measured the base on the same samples beside the reference
        base = metrics_of({**units["base"], "heldout": {"loss": h["base"], "sources": h["sources"]}})
        contrasts["reference - base"] = {k: compare([v[0]], [base[k][0]], v[1]) for k, v in metrics_of(units["reference"]).items() if k in base}
    rounds = []
    for s in study.seeds:  # round 0: the reference the rounds start from; round T: the final model
        se = units.get(f"self-evolving-s{s}")
        if se is None or "reference" not in units: continue
        steps = [units["reference"]["eval"], *(r["eval"] for r in se["rounds"]), se["eval"]]
        for t, ev in enumerate(steps):
            rounds.append({"seed": s, "round": t, **{b: round(float(np.mean(v["loss"])), 5) for b, v in ev.items()},
                           "spread": se["round_spread"][t - 1]["mean_abs_diff"] if t else None})
    spreads = {u["unit"]: u["spread"] for u in units.values() if u.get("spread")}
    counted = [u for u in units.values() if u["unit"] in expected]
    return {"study": {k: v for k, v in study.__dict__.items() if k != "rates"}, "preset": study.config, "seeds": list(study.seeds),
            "reference_seed": REFERENCE_SEED, "sizes": {"pool": sum(study.pool.values()), "pool_by_source": study.pool, "heldout_per_source": study.heldout,
            "warmup": study.warmup, "max_len": study.max_len, "items_per_benchmark": {b: len(v["loss"]) for b, v in units["base"]["eval"].items()} if "base" in units else {}},
            "sources": {k: (study.flan if k == "flan_v2_cot" else v) for k, v in SOURCES.items()}, "methods": list(study.methods),
            "complete": all(n in units for n in expected), "units_finished": f"{len(counted)} of {len(expected)}",
            "missing": [n for n in expected if n not in units],
            "cpu_hours": round(sum(u["cpu_s"] for u in counted) / 3600, 3), "wall_hours": round(sum(u["wall_s"] for u in counted) / 3600, 3),
            "plan": planned, "references": references, "score_spread": spreads, "vs_full": vs_full, "contrasts": contrasts, "rounds": rounds,
            "kept_share": {u["unit"]: round(u["kept_tokens"] / u["response_tokens"], 4) for u in counted if u.get("response_tokens")},
            "means": {u["unit"]: {k: round(float(np.mean(v[0])), 5) for k, v in metrics_of(u).items()} for u in counted}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", choices=list(STUDIES))
    ap.add_argument("--plan", action="store_true", help="print the sizes and the estimated hours; run nothing")
    ap.add_argument("--collect-only", action="store_true", help="only rebuild --results from the finished units")
    ap.add_argument("--seeds", type=int, default=None, help="the first N seeds of the preset")
    ap.add_argument("--methods", default=None, help="comma-separated methods (default: all seven)")
    ap.add_argument("--out", default=None, help="run directories and data (default: runs/replication-<preset>)")
    ap.add_argument("--results", default=None, help="results file (default: paper_figs/replication[-<preset>]/results.json)")
    ap.add_argument("--jobs", type=int, default=None, help="method units side by side once the reference exists (default: the preset's)")
    ap.add_argument("--unit", default=None, help=argparse.SUPPRESS)  # run_side_by_side's children: this one unit only
    args = ap.parse_args()
    study = STUDIES[args.preset]
    if args.seeds: study = replace(study, seeds=study.seeds[: args.seeds])
    if args.methods:
        if unknown := set(args.methods.split(",")) - set(METHODS): ap.error(f"--methods: unknown {', '.join(sorted(unknown))}; use some of {', '.join(METHODS)}")
        study = replace(study, methods=tuple(m for m in METHODS if m in args.methods.split(",")))
    suffix = "" if args.preset == "cpu" else f"-{args.preset}"
    out = Path(args.out or ROOT / "runs" / f"replication{suffix}")
    results = Path(args.results or ROOT / "paper_figs" / f"replication{suffix}" / "results.json")
    if args.jobs is not None:
        if args.jobs < 1: ap.error(f"--jobs {args.jobs}: must be at least 1")
        study = replace(study, jobs=args.jobs)
    if study.gpu:
        try: gpu_memory(study)  # the units side by side must fit in the GPU's memory: refused before anything is read
        except ConfigError as e: ap.error(str(e))
    if args.plan and study.gpu:
        print(json.dumps({"preset": args.preset, "sizes": {"pool": sum(study.pool.values()), "heldout": 4 * study.heldout, "warmup": study.warmup,
                          "max_len": study.max_len, "items_n": study.items_n}, "seeds": study.seeds, "methods": study.methods,
                          **study_plan(study, build_data(out / "data", study), Units(results.parent / "units").names())}, indent=1))
        return
    if args.plan:
        units = Units(results.parent / "units")
        finished = [units.get(n) for n in units.names()]
        method_cpu = [u["cpu_s"] for u in finished if u.get("method") in METHODS]
        measured = {} if not method_cpu else {  # the finished units' own CPU seconds, projected onto the units still to run
            "finished_cpu_h": round(sum(u["cpu_s"] for u in finished) / 3600, 2), "cpu_s_per_method_unit": round(float(np.mean(method_cpu))),
            "projected_total_cpu_h": round((sum(u["cpu_s"] for u in finished) + np.mean(method_cpu) * plan(study, units.names())["to_run"]) / 3600, 2)}
        print(json.dumps({"preset": args.preset, "sizes": {"pool": sum(study.pool.values()), "heldout": 4 * study.heldout, "warmup": study.warmup,
                          "max_len": study.max_len}, "seeds": study.seeds, "methods": study.methods,
                          **plan(study, units.names()), **({"measured": measured} if measured else {})}, indent=1))
        return
    t0 = time.time()
    child = ["--preset", args.preset, "--out", str(out), "--results", str(results), "--jobs", "1",
             *(["--seeds", str(args.seeds)] if args.seeds else []), *(["--methods", args.methods] if args.methods else [])]
    run_study(study, out, results, args.collect_only, log=lambda s: print(f"[{time.time() - t0:7.0f} s] {s}", flush=True),
              only=args.unit, child_argv=child)


if __name__ == "__main__":
    main()

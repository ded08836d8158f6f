"""F1: fault injection. SIGKILL a scoring run, a pipeline run and a pipeline's training steps at random moments, resume, and compare with an uninterrupted run.

Scoring: the tiny model on 600 real Alpaca rows in 120 shards (`tokclean score`); the resumed loss array must have the
reference's sha256, and the merged manifest the same token count (no sample lost or duplicated).
Pipeline: `tokclean run fixed --preset tiny` on 240 real Alpaca rows; the resumed run must have the reference's final-model sha256
(identical adapter merge on CPU), keep-mask sha256, kept-token and sample counts, and training loss at every step.
Training: the same pipeline on 120 rows with a checkpoint after every optimiser step (`train.save_steps=1`); each kill lands inside a step
of one of its two training stages (warmup/train, fixed/train), and the resumed run must have the reference's sha256 for both
models, and per step of both stages the same loss and the same rows (the samples the step trained on, from the step log).
The uninterrupted reference run is watched to time its progress steps: finished shards, then the merge (scoring); recorded
stages (pipeline). Each trial draws a step uniformly (seeded) and a point within it, waits until the run reaches
that step, sleeps that fraction of the step's reference duration, SIGKILLs the whole process group, records where the run was,
and resumes with the same command. For training the steps are the whole checkpoints of the two stages (stage, step): a kill
drawn after checkpoint N (N >= 2) waits a random fraction of the time this run took from checkpoint N-1 to N, so that it
lands in step N+1 (in its compute or its checkpoint's save) even when the run goes faster or slower than its reference. Waiting on progress rather than on the clock keeps the kills inside the work even when a
run goes faster or slower than its reference.

    python benchmarks/f1_fault_injection.py --trials 10      # about 10 minutes on 2 CPU cores for score and pipeline
    python benchmarks/f1_fault_injection.py --kinds train    # about 20 minutes (loaded 2 cores); keeps the other kinds' results in the files
    python benchmarks/f1_fault_injection.py --kinds train --append --trials 2 --seed 1   # two more, against the stored reference
"""
import argparse, hashlib, json, os, random, signal, subprocess, sys, tempfile, time
from pathlib import Path

from tokclean.files import sha256_file
from tokclean.training import last_checkpoint

SHARD_SIZE = 5
SCORE = ["score", "--preset", "tiny", "--set", "data.pool=shared:sft/stanford_alpaca/alpaca_5000.json", "--set", "data.limit=600",
         "--set", "data.max_len=256", "--set", f"score.shard_size={SHARD_SIZE}"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def tokclean(args, wait=True):
    cmd = [sys.executable, "-m", "tokclean", *args]
    if not wait: return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=ENV)
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if done.returncode: raise RuntimeError(done.stderr[-2000:])


TRAIN_STAGES = {"warmup": "warmup/train", "final": "fixed/train"}  # checkpoint folder (the model's name) -> stage, in run order


def train_position(tmp: Path) -> tuple:
    "Where the training of a pipeline run is: (stage 0 or 1, its newest whole checkpoint's step); a recorded warm-up is (1, 0)."
    run = tmp / "tiny-fixed-s42"
    for i, name in reversed(list(enumerate(TRAIN_STAGES))):
        if ckpt := last_checkpoint(run / "checkpoints" / name, remove=False): return (i, int(ckpt.name.split("-")[1]))
    mf = run / "manifest.json"
    return (1, 0) if mf.exists() and "warmup/train" in json.loads(mf.read_text())["stages"] else (0, 0)


def progress(kind: str, tmp: Path) -> int:
    "How far a run has come: finished shards (all of them plus one once merged), or recorded stages (the closing `done` aside)."
    if kind == "score":
        manifest = next(tmp.glob("*/manifest.json"), None)
        return -(-json.loads(manifest.read_text())["n_samples"] // SHARD_SIZE) + 1 if manifest else len(list(tmp.glob("*/shard-*.json")))
    mf = tmp / "tiny-fixed-s42" / "manifest.json"
    return len([k for k in json.loads(mf.read_text())["stages"] if k != "done"]) if mf.exists() else 0


def reference(kind: str, tmp: Path) -> dict:
    "Run uninterrupted, noting when (seconds after launch) it first reached each level of progress."
    t0, proc, reached = time.time(), tokclean(run_args(kind, tmp), wait=False), {}
    if kind == "train":
        while proc.poll() is None:
            reached.setdefault(train_position(tmp), round(time.time() - t0, 3))
            time.sleep(0.01)  # a step takes about a second; polling faster only takes CPU from the run
        if proc.returncode: raise RuntimeError("the train reference run failed")
        return {"seconds": round(time.time() - t0, 2), "reached_s": [[*k, v] for k, v in sorted(reached.items())], **train_result(tmp)}
    while True:
        level, done = progress(kind, tmp), proc.poll() is not None
        for k in range(len(reached), level + 1): reached[k] = time.time() - t0
        if done: break
        time.sleep(0.005)
    if proc.returncode: raise RuntimeError(f"the {kind} reference run failed")
    return {"seconds": round(time.time() - t0, 2), "reached_s": [round(reached[k], 3) for k in sorted(reached)],
            **(score_result(tmp) if kind == "score" else pipeline_result(tmp))}


def score_result(cache: Path) -> dict:
    m = json.loads(next(cache.glob("*/manifest.json")).read_text())
    return {"sha256": m["sha256"]["loss.npy"], "tokens": m["n_tokens"], "samples": m["n_samples"]}


def pipeline_result(out: Path) -> dict:
    "The final weights' sha256, the keep mask's sha256, the trained samples and the losses of every step."
    m = json.loads((out / "tiny-fixed-s42" / "manifest.json").read_text())
    log = json.loads((Path(m["final_model"]) / "train_log.json").read_text())["log"]
    return {"sha256": sha256_file(Path(m["final_model"]) / "model.safetensors"), "mask_sha256": m["stages"]["fixed/select"]["keep_sha256"],
            "kept": m["stages"]["fixed/select"]["stats"]["n_kept"], "samples": m["stages"]["fixed/train"]["samples"],
            "losses": [e["loss"] for e in log]}


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def train_result(out: Path) -> dict:
    "The pipeline's results, plus the warm-up model's sha256 and, for both training stages, the losses and rows of every step."
    res = pipeline_result(out)
    models = out / "tiny-fixed-s42" / "models"
    logs = {name: json.loads((models / name / "train_log.json").read_text()) for name in TRAIN_STAGES}
    return {**res, "warmup_sha256": sha256_file(models / "warmup" / "model.safetensors"),
            "steps": {TRAIN_STAGES[n]: len(log["log"]) for n, log in logs.items()},
            "losses_sha256": digest([[e["loss"] for e in log["log"]] for log in logs.values()]),
            "rows_sha256": digest([[e["rows"] for e in log["log"]] for log in logs.values()]),
            "rows_each_once": all(sorted(r for e in log["log"] for r in e["rows"]) == list(range(res_n))
                                  for log, res_n in zip(logs.values(), stage_samples(out))),
            "resumed_from": {TRAIN_STAGES[n]: log.get("resumed_from") for n, log in logs.items()}}


def stage_samples(out: Path) -> list:
    st = json.loads((out / "tiny-fixed-s42" / "manifest.json").read_text())["stages"]
    return [st[s]["samples"] for s in TRAIN_STAGES.values()]


def pipeline_args(out: Path) -> list:
    return ["run", "fixed", "--preset", "tiny", "--set", f"run.out_dir={out}", "--set", f"score.cache_dir={out}/scores",
            "--set", "data.pool=shared:sft/stanford_alpaca/alpaca_5000.json", "--set", "data.limit=240", "--set", "data.max_len=256"]


def run_args(kind: str, tmp: Path) -> list:
    "The `tokclean` arguments of a scoring, pipeline or training-checkpoint run writing into `tmp`."
    if kind == "score": return SCORE + ["--set", f"score.cache_dir={tmp}"]
    if kind == "pipeline": return pipeline_args(tmp)
    return pipeline_args(tmp) + ["--set", "data.limit=120", "--set", "train.save_steps=1"]  # the later data.limit wins: fewer rows, more trials in the time


def kill_group(proc) -> bool:
    "SIGKILL the run's whole process group unless it has exited; True if it had exited by itself."
    exited = proc.poll() is not None
    if not exited: os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return exited


def train_trial(tmp: Path, at: tuple, fraction: float, n_steps: dict) -> dict:
    "Launch, wait until training reaches checkpoint `at` = (stage, step), sleep `fraction` of this run's last step, SIGKILL, note where, resume."
    args = run_args("train", tmp)
    proc, seen = tokclean(args, wait=False), {}
    while (pos := train_position(tmp)) < at and proc.poll() is None:
        seen.setdefault(pos, time.time())
        time.sleep(0.01)
    now = time.time()
    step_s = now - seen.get((at[0], at[1] - 1), now)  # this run's own pace: the time from checkpoint N-1 to N
    wait_s = fraction * step_s
    time.sleep(wait_s)
    exited = kill_group(proc)
    stage, step = train_position(tmp)
    name = list(TRAIN_STAGES)[stage]
    mf = tmp / "tiny-fixed-s42" / "manifest.json"
    recorded = list(json.loads(mf.read_text())["stages"]) if mf.exists() else []
    saving = (tmp / "tiny-fixed-s42" / "checkpoints" / name / f"checkpoint-{step + 1}").exists()  # begun, not whole
    if TRAIN_STAGES[name] in recorded or step in (0, n_steps[TRAIN_STAGES[name]]): where = f"outside a training step (after {recorded[-1] if recorded else 'no stage'})"
    else: where = f"{TRAIN_STAGES[name]} step {step + 1}, {'saving its checkpoint' if saving else 'computing'}"
    tokclean(args)  # resume
    res = train_result(tmp)
    return {"kind": "train", "level": list(at), "wait_s": round(wait_s, 3), "killed": not exited and "done" not in recorded,
            "inside_step": where.startswith(TRAIN_STAGES[name]), "stage_at_kill": TRAIN_STAGES[name], "step_at_kill": step + 1,
            "state_at_kill": where, **res, "resumed_from_last_whole": res["resumed_from"][TRAIN_STAGES[name]] == f"checkpoint-{step}"}


def line(r: dict) -> str:
    "One trial's line of the results text."
    if r["kind"] == "train":
        return (f"train trial {r['trial']}: {'killed part-way' if r['killed'] else 'killed after it had finished'}"
                f"{' in ' if r['inside_step'] else ', '}{r['state_at_kill']}; "
                f"resumed from {r['resumed_from'][r['stage_at_kill']]}; final sha256 {r['sha256'][:16]}, warm-up sha256 "
                f"{r['warmup_sha256'][:16]}; identical: {r['identical']}")
    return (f"{r['kind']} trial {r['trial']}: {'killed part-way' if r['killed'] else 'killed after it had finished'} at level {r['level']} + "
            f"{r['wait_s']} s ({r['state_at_kill']}); identical: {r['identical']}")


def trial(kind: str, tmp: Path, level: int, wait_s: float) -> dict:
    "Launch, wait until the run reaches `level`, sleep `wait_s`, SIGKILL, note where it was, resume."
    args = run_args(kind, tmp)
    proc = tokclean(args, wait=False)
    while progress(kind, tmp) < level and proc.poll() is None: time.sleep(0.002)
    time.sleep(wait_s)
    exited = kill_group(proc)
    if kind == "score":
        complete = any(tmp.glob("*/manifest.json"))
        where = "merged" if complete else f"{progress(kind, tmp)} shards done"
    else:
        mf = tmp / "tiny-fixed-s42" / "manifest.json"
        stages = list(json.loads(mf.read_text())["stages"]) if mf.exists() else []
        complete, where = "done" in stages, ", ".join(stages) or "no stage recorded"
    part_way = not exited and not complete  # a kill after the result was written interrupts nothing
    tokclean(args)  # resume
    return {"kind": kind, "level": level, "wait_s": round(wait_s, 3), "killed": part_way, "state_at_kill": where,
            **(score_result(tmp) if kind == "score" else pipeline_result(tmp))}


SAME = {"score": ("sha256", "tokens", "samples"), "pipeline": ("sha256", "mask_sha256", "kept", "samples", "losses"),
        "train": ("sha256", "warmup_sha256", "mask_sha256", "kept", "samples", "losses", "steps", "losses_sha256", "rows_sha256", "rows_each_once")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10, help="trials per kind")
    ap.add_argument("--kinds", default="score,pipeline,train", help="which kinds to run; the others' results are kept from --out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--append", action="store_true", help="add trials to those of --out for these kinds, against their stored reference")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "f1_fault_injection.json"))
    args = ap.parse_args()
    kinds, out = args.kinds.split(","), Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {"reference": {}, "trials": []}
    for kind in {r["kind"] for r in old["trials"]}:  # results written before trials were numbered
        for i, r in enumerate(r for r in old["trials"] if r["kind"] == kind): r.setdefault("trial", i)
    rng, rows = random.Random(args.seed), [r for r in old["trials"] if r["kind"] in kinds] if args.append else []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        refs = {kind: old["reference"][kind] if args.append else reference(kind, d / f"ref_{kind}") for kind in kinds}
        for kind in kinds:
            first = sum(r["kind"] == kind for r in rows)
            for i in range(first, first + args.trials):
                reached = refs[kind]["reached_s"]  # level k first seen at reached[k]; the last level is the finished run
                if kind == "train":  # a whole checkpoint (stage, N) followed by (stage, N + 1): a kill after it lands in step N + 1
                    inside = [k for k in range(len(reached) - 1) if reached[k][1] >= 2 and reached[k + 1][:2] == [reached[k][0], reached[k][1] + 1]]
                    k = rng.choice(inside)
                    r = train_trial(d / f"{kind}{i}", tuple(reached[k][:2]), rng.random(), refs[kind]["steps"])
                else:
                    level = rng.randrange(len(reached) - 1)
                    r = trial(kind, d / f"{kind}{i}", level, rng.random() * (reached[level + 1] - reached[level]))
                r["trial"], r["identical"] = i, all(r[f] == refs[kind][f] for f in SAME[kind])
                rows.append(r)
                print(line(r), flush=True)
    rows = [r for r in old["trials"] if r["kind"] not in kinds] + rows
    refs = {**{k: v for k, v in old["reference"].items() if k not in kinds}, **refs}
    out.write_text(json.dumps({"reference": refs, "trials": rows}, indent=1))
    bad = [r for r in rows if not r["identical"]]
    text = [line(r) for r in rows]
    text.append(f"{len(rows) - len(bad)} of {len(rows)} resumed runs identical to the uninterrupted ones "
                f"({sum(r['killed'] for r in rows)} killed part-way, {sum(r.get('inside_step', False) for r in rows)} of them inside a training step)")
    if "train" in refs:
        tr = [r for r in rows if r["kind"] == "train"]
        text.append(f"train: {sum(r['inside_step'] for r in tr)} of {len(tr)} kills landed inside a training step; "
                    f"{sum(r['identical'] and r['resumed_from_last_whole'] for r in tr)} resumed from the last whole checkpoint to identical results")
        ref = refs["train"]
        text.append(f"train reference: final sha256 {ref['sha256']}, warm-up sha256 {ref['warmup_sha256']}, steps {ref['steps']}, "
                    f"{ref['seconds']} s")
    out.with_suffix(".txt").write_text("\n".join(text) + "\n")
    print(*text[-3:] if "train" in refs else text[-1:], sep="\n")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

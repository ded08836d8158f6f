"""F1: fault injection. SIGKILL a scoring run and a pipeline run at random moments, resume, and compare with an uninterrupted run.

Scoring: the tiny model on 600 real Alpaca rows in 120 shards (`tokclean score`); the resumed loss array must have the
reference's sha256, and the merged manifest the same token count (no sample lost or duplicated).
Pipeline: `tokclean run fixed --preset tiny` on 240 real Alpaca rows; the resumed run must have the reference's final-model sha256
(identical adapter merge on CPU), keep-mask sha256, kept-token and sample counts, and training loss at every step.
The uninterrupted reference run is watched to time its progress steps: finished shards, then the merge (scoring); recorded
stages (pipeline). Each trial draws a step uniformly (seeded) and a point within it, waits until the run reaches
that step, sleeps that fraction of the step's reference duration, SIGKILLs the whole process group, records where the run was,
and resumes with the same command. Waiting on progress rather than on the clock keeps the kills inside the work even when a
run goes faster or slower than its reference.

    python benchmarks/f1_fault_injection.py --trials 10      # about 10 minutes on 2 CPU cores
"""
import argparse, json, os, random, signal, subprocess, sys, tempfile, time
from pathlib import Path

from tokclean.files import sha256_file

SHARD_SIZE = 5
SCORE = ["score", "--preset", "tiny", "--set", "data.pool=shared:sft/stanford_alpaca/alpaca_5000.json", "--set", "data.limit=600",
         "--set", "data.max_len=256", "--set", f"score.shard_size={SHARD_SIZE}"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def tokclean(args, wait=True):
    cmd = [sys.executable, "-m", "tokclean", *args]
    if not wait: return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=ENV)
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if done.returncode: raise RuntimeError(done.stderr[-2000:])


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


def pipeline_args(out: Path) -> list:
    return ["run", "fixed", "--preset", "tiny", "--set", f"run.out_dir={out}", "--set", f"score.cache_dir={out}/scores",
            "--set", "data.pool=shared:sft/stanford_alpaca/alpaca_5000.json", "--set", "data.limit=240", "--set", "data.max_len=256"]


def run_args(kind: str, tmp: Path) -> list:
    "The `tokclean` arguments of a scoring or pipeline run writing into `tmp`."
    return SCORE + ["--set", f"score.cache_dir={tmp}"] if kind == "score" else pipeline_args(tmp)


def trial(kind: str, tmp: Path, level: int, wait_s: float) -> dict:
    "Launch, wait until the run reaches `level`, sleep `wait_s`, SIGKILL, note where it was, resume."
    args = run_args(kind, tmp)
    proc = tokclean(args, wait=False)
    while progress(kind, tmp) < level and proc.poll() is None: time.sleep(0.002)
    time.sleep(wait_s)
    exited = proc.poll() is not None
    if not exited: os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10, help="trials per kind (scoring, pipeline)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "f1_fault_injection.json"))
    args = ap.parse_args()
    rng, rows = random.Random(args.seed), []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        refs = {kind: reference(kind, d / f"ref_{kind}") for kind in ("score", "pipeline")}
        for kind in ("score", "pipeline"):
            for i in range(args.trials):
                reached = refs[kind]["reached_s"]  # level k first seen at reached[k]; the last level is the finished run
                level = rng.randrange(len(reached) - 1)
                r = trial(kind, d / f"{kind}{i}", level, rng.random() * (reached[level + 1] - reached[level]))
                same = ("sha256", "tokens", "samples") if kind == "score" else ("sha256", "mask_sha256", "kept", "samples", "losses")
                r["identical"] = all(r[f] == refs[kind][f] for f in same)
                rows.append(r)
                print(f"{kind} trial {i}: {'killed part-way' if r['killed'] else 'killed after it had finished'} at level {r['level']} + {r['wait_s']} s "
                      f"({r['state_at_kill']}); identical: {r['identical']}", flush=True)
    Path(args.out).write_text(json.dumps({"reference": refs, "trials": rows}, indent=1))
    bad = [r for r in rows if not r["identical"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} resumed runs identical to the uninterrupted ones "
          f"({sum(r['killed'] for r in rows)} killed part-way)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

"""F1: fault injection. SIGKILL a scoring run and a pipeline run at random moments, resume, and compare with an uninterrupted run.

Scoring: the tiny model on 600 real Alpaca rows in 120 shards (`tokclean score`); the resumed loss array must have the
reference's sha256, and the merged manifest the same token count (no sample lost or duplicated).
Pipeline: `tokclean run fixed --preset tiny` on 240 real Alpaca rows; the resumed run must have the reference's final-model sha256
(identical adapter merge on CPU), keep-mask sha256, kept-token and sample counts, and training loss at every step.
The uninterrupted reference run is watched to find its working window: from the first finished shard to the merged manifest
(scoring), from the first recorded stage to the `done` stage (pipeline); start-up and exit lie outside it. Each trial draws its
kill time uniformly in that window (seeded), kills the whole process group, records where the run was (finished shards or
stages), and resumes with the same command.

    python benchmarks/f1_fault_injection.py --trials 10      # about 10 minutes on 2 CPU cores
"""
import argparse, json, os, random, signal, subprocess, sys, tempfile, time
from pathlib import Path

from tokclean.files import sha256_file

SCORE = ["score", "--preset", "tiny", "--set", "data.pool=shared:sft/stanford_alpaca/alpaca_5000.json", "--set", "data.limit=600",
         "--set", "data.max_len=256", "--set", "score.shard_size=5"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def tokclean(args, wait=True):
    cmd = [sys.executable, "-m", "tokclean", *args]
    if not wait: return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=ENV)
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if done.returncode: raise RuntimeError(done.stderr[-2000:])


def started(kind: str, tmp: Path) -> bool:
    "Has the run begun its real work (a shard written, a stage recorded)?"
    if kind == "score": return any(tmp.glob("*/shard-*.json")) or any(tmp.glob("*/manifest.json"))
    return (tmp / "tiny-fixed-s42" / "manifest.json").exists()


def finished(kind: str, tmp: Path) -> bool:
    "Is the result on disk (merged scores, the `done` stage)?"
    if kind == "score": return any(tmp.glob("*/manifest.json"))
    mf = tmp / "tiny-fixed-s42" / "manifest.json"
    return mf.exists() and '"done"' in mf.read_text()


def reference(kind: str, tmp: Path) -> dict:
    "Run uninterrupted, noting when the working window opens and closes (seconds after launch)."
    args = run_args(kind, tmp)
    t0, proc, window = time.time(), tokclean(args, wait=False), [None, None]
    while proc.poll() is None or window[1] is None:
        if window[0] is None and started(kind, tmp): window[0] = time.time() - t0
        if window[1] is None and finished(kind, tmp): window[1] = time.time() - t0
        if proc.poll() is not None and window[1] is None and not finished(kind, tmp): raise RuntimeError(f"the {kind} reference run failed")
        time.sleep(0.005)
    return {"seconds": round(time.time() - t0, 2), "window_s": [round(w, 2) for w in window],
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


def trial(kind: str, tmp: Path, delay: float) -> dict:
    args = run_args(kind, tmp)
    proc = tokclean(args, wait=False)
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished: os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if kind == "score": where = f"{len(list(tmp.glob('*/shard-*.json')))} shards done" + (", merged" if list(tmp.glob("*/manifest.json")) else "")
    else:
        mf = tmp / "tiny-fixed-s42" / "manifest.json"
        where = ", ".join(json.loads(mf.read_text())["stages"]) if mf.exists() else "no stage done"
    tokclean(args)  # resume
    return {"kind": kind, "delay_s": round(delay, 2), "killed": not finished, "state_at_kill": where,
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
                r = trial(kind, d / f"{kind}{i}", rng.uniform(*refs[kind]["window_s"]))
                same = ("sha256", "tokens", "samples") if kind == "score" else ("sha256", "mask_sha256", "kept", "samples", "losses")
                r["identical"] = all(r[f] == refs[kind][f] for f in same)
                rows.append(r)
                print(f"{kind} trial {i}: {'killed' if r['killed'] else 'finished before the kill'} after {r['delay_s']} s "
                      f"({r['state_at_kill']}); identical: {r['identical']}", flush=True)
    Path(args.out).write_text(json.dumps({"reference": refs, "trials": rows}, indent=1))
    bad = [r for r in rows if not r["identical"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} resumed runs identical to the uninterrupted ones "
          f"({sum(r['killed'] for r in rows)} killed part-way)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

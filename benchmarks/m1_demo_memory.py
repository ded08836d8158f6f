"""M1: the peak memory and wall time of `tokclean demo`, one variant beside another, and where the memory goes.

Each variant is the demo preset plus some `--set` overrides, run as `tokclean demo` in a fresh process and a fresh run folder.
A sampler reads the RSS of the process (and any children) every 0.2 s and charges it to the stage the demo last announced
(`[fixed/train] running`); the table shows the peak per stage, the whole run's peak and wall time, and the held-out response
losses, which must agree between variants (the same training, differently batched).

    python benchmarks/m1_demo_memory.py                       # before (batch 8 x 1) vs after (the preset now)
    python benchmarks/m1_demo_memory.py --variants after      # one variant only
    python benchmarks/m1_demo_memory.py --parallel            # the variants at the same time, each pinned to its own cores

Each finished variant is written to the results at once and skipped by the next call (`--force` runs it again), so an
interrupted benchmark resumes. The load average before and after each variant says how busy the machine was.
"""
import argparse, json, os, platform, re, subprocess, sys, tempfile, threading, time
from pathlib import Path

VARIANTS = {  # name -> overrides on top of today's demo preset
    "before": ["train.batch_size=8", "train.global_batch=0"],  # the preset until issue 15: micro-batches of 8 x up to 512 tokens
    "after": [],  # micro-batches of 1, accumulated to the same 8 sequences per optimiser step
}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def tree_rss(proc) -> int:
    "Resident bytes of a process and its children."
    try: return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    except Exception: return 0


def run_variant(name: str, overrides: list, out: Path, cores: set | None = None) -> dict:
    "Run the demo with `overrides` into `out` (on `cores` only, one thread each, if given); return peak RSS, wall and CPU time."
    import psutil
    env = ENV if cores is None else {**ENV, "OMP_NUM_THREADS": str(len(cores)), "MKL_NUM_THREADS": str(len(cores))}
    pin = None if cores is None else (lambda: os.sched_setaffinity(0, cores))
    sets = [a for o in overrides + [f"run.out_dir={out}", f"score.cache_dir={out}/scores"] for a in ("--set", o)]
    cmd = [sys.executable, "-m", "tokclean", "demo", *sets, "--save", str(out)]
    t0, load = time.time(), round(os.getloadavg()[0], 2)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=pin)
    proc, current, peaks, done = psutil.Process(p.pid), ["start"], {}, threading.Event()
    def sample():
        while not done.is_set():
            peaks[current[0]] = max(peaks.get(current[0], 0), tree_rss(proc)); time.sleep(0.2)
    th = threading.Thread(target=sample, daemon=True); th.start()
    tail = []
    for line in p.stdout:
        tail = (tail + [line])[-40:]
        if m := re.match(r"== pipeline (\S+)", line): pipeline = m.group(1)
        if m := re.match(r"\[(\S+)\] running", line): current[0] = f"{pipeline}:{m.group(1)}"
    _, status, usage = os.wait4(p.pid, 0)  # this child's own CPU time, whatever else runs beside it
    p.returncode = os.waitstatus_to_exitcode(status); done.set(); th.join()
    if p.returncode: raise RuntimeError(f"{name} failed:\n{''.join(tail)}")
    held = {}
    for run in ("demo-fixed-s42", "demo-full-s42"):
        held.update(json.loads((out / run / "manifest.json").read_text())["stages"]["heldout"]["mean_loss"])
    return {"overrides": overrides, "seconds": round(time.time() - t0, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "cores": sorted(cores) if cores else None, "peak_mb": round(max(peaks.values()) / 2**20),
            "load_before_after": [load, round(os.getloadavg()[0], 2)],
            "peak_mb_per_stage": {k: round(v / 2**20) for k, v in peaks.items()}, "heldout": held}


def table(results: dict) -> str:
    names = list(results)
    stages = list(dict.fromkeys(s for r in results.values() for s in r["peak_mb_per_stage"]))
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
             "| peak RSS MB | " + " | ".join(str(results[n]["peak_mb"]) for n in names) + " |",
             "| wall s | " + " | ".join(str(results[n]["seconds"]) for n in names) + " |",
             "| CPU s | " + " | ".join(str(results[n].get("cpu_seconds", "")) for n in names) + " |",
             "| pinned to cores | " + " | ".join(str(results[n].get("cores")) for n in names) + " |",
             "| load average before, after | " + " | ".join(", ".join(map(str, results[n]["load_before_after"])) for n in names) + " |"]
    lines += [f"| {s} | " + " | ".join(str(results[n]["peak_mb_per_stage"].get(s, "")) for n in names) + " |" for s in stages]
    lines += [f"| held-out {k} | " + " | ".join(f"{results[n]['heldout'][k]:.5f}" for n in names) + " |" for k in results[names[0]]["heldout"]]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "m1_demo_memory"))
    ap.add_argument("--force", action="store_true", help="run the variants again even if the results hold them")
    ap.add_argument("--parallel", action="store_true", help="run the variants at the same time, so that each sees the same load")
    args = ap.parse_args()
    saved = Path(args.out + ".json")
    results = json.loads(saved.read_text()) if saved.exists() and not args.force else {}
    todo = [n for n in args.variants.split(",") if not (n in results and results[n]["overrides"] == VARIANTS[n])]

    ncpu = len(os.sched_getaffinity(0))
    def cores_for(i: int):  # side by side, each variant gets its own share of the cores, so neither slows the other
        if not args.parallel or ncpu < len(todo): return None
        share = ncpu // len(todo); return set(range(i * share, (i + 1) * share))

    def measure(name: str):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = {**run_variant(name, VARIANTS[name], Path(tmp), cores_for(todo.index(name))), "parallel": args.parallel}
        saved.write_text(json.dumps(results, indent=1) + "\n")  # each variant as it finishes: a rerun skips it
        print(name, results[name], flush=True)

    if args.parallel:
        threads = [threading.Thread(target=measure, args=(n,)) for n in todo]
        for t in threads: t.start()
        for t in threads: t.join()
    else:
        for name in todo: measure(name)
    if not results: sys.exit("m1: no variant finished; see the errors above")
    text = table(results)
    if {"before", "after"} <= set(results):
        b, a = results["before"], results["after"]
        diff = max(abs(b["heldout"][k] - a["heldout"][k]) for k in b["heldout"])
        cpu = f", {a['cpu_seconds'] / b['cpu_seconds']:.2f}x CPU time" if "cpu_seconds" in a and "cpu_seconds" in b else ""
        text += (f"\n\nafter vs before: {a['peak_mb'] / b['peak_mb']:.2f}x peak memory, {a['seconds'] / b['seconds']:.2f}x wall time{cpu}; "
                 f"max |held-out loss difference| {diff:.2e}")
    head = f"tokclean demo on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}\n\n"
    Path(args.out + ".txt").write_text(head + text + "\n")
    print(head + text)

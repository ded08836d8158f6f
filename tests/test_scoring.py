"""Scoring as a user runs it: several processes through accelerate, and a run killed part-way then resumed.
Both must give the bit-identical loss array of an uninterrupted single-process run (sha256 of loss.npy) with the same
number of CPU threads per process (thread count changes the order of float reductions)."""
import json, os, shutil, signal, subprocess, time

import numpy as np
from pathlib import Path

import pytest

from tokclean.files import sha256_file
from tokclean.fixtures import ACCELERATE_2CPU

from conftest import tool

# the tiny model on 600 real Alpaca rows: 120 shards of 5 samples, so a kill lands part-way even on a busy machine
ARGS = ["--preset", "tiny", "--set", "data.pool=shared:sft/stanford_alpaca/alpaca_5000.json", "--set", "data.limit=600",
        "--set", "data.max_len=256", "--set", "score.shard_size=5"]


def score(cache: Path, launcher=(), timeout=300, threads: int | None = None) -> dict:
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run([*launcher, *( [tool("tokclean")] if not launcher else ["-m", "tokclean"]), "score", *ARGS,
                           "--set", f"score.cache_dir={cache}"], capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = next(cache.glob("*/manifest.json"))
    return {**json.loads(manifest.read_text()), "_dir": manifest.parent}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return score(tmp_path_factory.mktemp("one"))


def test_two_processes_equal_one(reference, tmp_path):
    "accelerate gives each of the 2 processes one CPU thread; a 1-thread single process must give the very same bytes."
    launcher = [tool("accelerate"), *ACCELERATE_2CPU]
    two = score(tmp_path / "two", launcher)
    one = score(tmp_path / "one", threads=1)
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["sha256"]["loss.npy"] == one["sha256"]["loss.npy"]
    assert two["n_tokens"] == reference["n_tokens"] > 50_000
    a = np.load(next((tmp_path / "two").glob("*/loss.npy")))
    assert np.abs(a - np.load(reference["_dir"] / "loss.npy")).max() < 1e-4  # two threads per process: same numbers, last bits aside


@pytest.mark.parametrize("trial", range(2))
def test_killed_run_resumes_identically(reference, tmp_path, trial):
    cmd = [tool("tokclean"), "score", *ARGS, "--set", f"score.cache_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, want = time.time() + 120, 3 + 5 * trial  # kill after a few shards, at a different point each trial
    while time.time() < deadline and len(list(tmp_path.glob("*/shard-*.json"))) < want: time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(tmp_path.glob("*/shard-*.json")))
    assert 0 < done_before and not list(tmp_path.glob("*/manifest.json")), "the run must die part-way"
    resumed = score(tmp_path)
    assert resumed["sha256"]["loss.npy"] == reference["sha256"]["loss.npy"]
    assert not list(tmp_path.glob("*/.*.tmp")), "no temporary file may survive a completed run"


def test_corrupted_cache_is_recomputed(reference, tmp_path):
    shutil.copytree(reference["_dir"], tmp_path / reference["_dir"].name)  # a finished cache of the same data, as `score` left it
    loss = tmp_path / reference["_dir"].name / "loss.npy"
    loss.write_bytes(loss.read_bytes()[:-8])  # truncate: the checksum no longer matches
    again = score(tmp_path)
    assert again["_dir"] == tmp_path / reference["_dir"].name  # the damaged folder itself was repaired
    assert again["sha256"]["loss.npy"] == reference["sha256"]["loss.npy"]
    assert np.load(again["_dir"] / "loss.npy").size == reference["n_tokens"]


def start(cache: Path, threads: int = 1) -> subprocess.Popen:
    "`tokclean score` in the background: an independent process, not a rank of an accelerate job."
    return subprocess.Popen([tool("tokclean"), "score", *ARGS, "--set", f"score.cache_dir={cache}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def together(cache: Path) -> list[str]:
    "Start two scoring commands on one cache folder at once; both must succeed. Their stdout lines."
    procs = [start(cache) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outs]
    return [out.strip().splitlines()[-1] for out, _ in outs]


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory):
    "A single 1-thread run: the bytes that two 1-thread processes sharing a cache must produce."
    return score(tmp_path_factory.mktemp("one_thread"), threads=1)


def finished_folder(cache: Path) -> Path:
    "The one entry of `cache`, checked to hold one finished result and nothing else (no shard, temporary or second manifest)."
    entries = list(cache.iterdir())
    assert len(entries) == 1, entries
    assert sorted(p.name for p in entries[0].iterdir()) == [".lock", "loss.npy", "manifest.json", "offsets.npy"]
    return entries[0]


def test_two_independent_runs_share_one_cache(one_thread, tmp_path):
    """Two `tokclean score` commands started together into one score.cache_dir: both succeed and the folder ends with one
    result, the bytes of a single run (sha256 of loss.npy), which both commands report."""
    lines = together(tmp_path)
    d = finished_folder(tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    assert m["sha256"]["loss.npy"] == one_thread["sha256"]["loss.npy"] == sha256_file(d / "loss.npy")
    assert all(f"sha256 {m['sha256']['loss.npy'][:16]}" in line for line in lines), lines


def test_two_independent_runs_repair_one_damaged_cache(one_thread, tmp_path):
    "A finished cache whose manifest is cut in half, then two commands at once: one removes it, both succeed, the bytes are a single run's."
    score(tmp_path, threads=1)
    manifest = next(tmp_path.glob("*/manifest.json"))
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    together(tmp_path)
    d = finished_folder(tmp_path)
    assert json.loads((d / "manifest.json").read_text())["sha256"]["loss.npy"] == one_thread["sha256"]["loss.npy"]

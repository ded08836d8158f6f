"A `tokclean run` killed inside a training step resumes from its last checkpoint to the weights, losses and sample order of a run never killed."
import json, os, re, signal, subprocess, sys, time
from pathlib import Path

from tokclean.files import sha256_file
from tokclean.training import last_checkpoint

from conftest import run_cli as run

EXTRA = ("--set", "train.batch_size=2", "--set", "train.save_steps=1")  # the warm-up: 11 steps of 2 samples (21), a checkpoint after each
RUN = "tiny-warmup-s42"


def trained(out: Path) -> dict:
    "The warm-up model's sha256, each step's (step, loss, rows trained on), and the checkpoint it resumed from."
    model = out / RUN / "models" / "warmup"
    log = json.loads((model / "train_log.json").read_text())
    return {"sha256": sha256_file(model / "model.safetensors"), "steps": [(e["step"], e["loss"], e["rows"]) for e in log["log"]],
            "resumed_from": log["resumed_from"]}


def stop_inside_training(out: Path, proc, after: int, sig=signal.SIGKILL) -> int:
    "Once checkpoint `after` is whole, send `sig` to the run's process group; return the newest whole checkpoint's step then."
    folder, deadline = out / RUN / "checkpoints" / "warmup", time.time() + 300
    step = lambda: int(c.name.split("-")[1]) if (c := last_checkpoint(folder, remove=False)) else 0
    while proc.poll() is None and step() < after and time.time() < deadline: time.sleep(0.002)
    assert proc.poll() is None, "the run ended before the kill"
    os.killpg(proc.pid, sig)
    proc.wait()
    assert "warmup/train" not in (out / RUN / "manifest.json").read_text(), "the kill must land inside the training stage"
    return step()


def test_killed_inside_training_resumes_identically(tmp_path):
    manifest = run(tmp_path / "ref", "warmup", *EXTRA)
    ref, warm = trained(tmp_path / "ref"), manifest["stages"]["data"]["chunks"][0]  # chunk 0: the first 64 // 3 = 21 samples
    assert warm == 21 and len(ref["steps"]) == 11 and ref["resumed_from"] is None
    assert sorted(r for _, _, rows in ref["steps"] for r in rows) == list(range(warm))  # every sample once
    # a kill mid-step: the run resumes from the checkpoint it had
    out = tmp_path / "kill1"
    at = stop_inside_training(out, run(out, "warmup", *EXTRA, wait=False), after=3)
    assert 3 <= at < 11
    run(out, "warmup", *EXTRA)
    got = trained(out)
    assert (got["sha256"], got["steps"]) == (ref["sha256"], ref["steps"])
    assert got["resumed_from"] == f"checkpoint-{at}"
    assert not (out / RUN / "checkpoints").exists()  # removed with the merged model saved, and the emptied folder with them
    # a kill during a checkpoint's save (its trainer_state.json cut short): the one before it is used
    out = tmp_path / "kill2"
    at = stop_inside_training(out, run(out, "warmup", *EXTRA, wait=False), after=7)
    state = out / RUN / "checkpoints" / "warmup" / f"checkpoint-{at}" / "trainer_state.json"
    state.write_text(state.read_text()[:100])
    run(out, "warmup", *EXTRA)
    got = trained(out)
    assert (got["sha256"], got["steps"]) == (ref["sha256"], ref["steps"])
    assert got["resumed_from"] == f"checkpoint-{at - 1}"


def test_ctrl_c_inside_training_prints_one_line(tmp_path):
    err = tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "tokclean", "run", "warmup", "--preset", "tiny", "--set", f"run.out_dir={tmp_path}", *EXTRA]
    with err.open("w") as f: proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
    stop_inside_training(tmp_path, proc, after=2, sig=signal.SIGINT)  # what a terminal's Ctrl-C sends
    text = err.read_text()
    assert proc.returncode == 130 and "Traceback" not in text, text[-3000:]
    line = text.strip().splitlines()[-1]
    assert re.fullmatch(r"tokclean run: interrupted at stage warmup/train, step \d+; run the same command to resume", line), line
    assert int(re.search(r"step (\d+)", line).group(1)) >= 3

"""Pipelines end to end on the tiny preset through the command line: every pipeline runs, a killed run resumes at the
stage it was in and ends with the same final model (identical weights on CPU) as an uninterrupted run."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

from tokclean.files import dir_sha256, sha256_file
from tokclean.fixtures import ACCELERATE_2CPU
from tokclean.pipeline import digest

from conftest import run_cli as run, tool


@pytest.mark.parametrize("pipeline", ["warmup", "full", "random", "high-ppl", "rho", "forgetting", "prift"])
def test_every_pipeline_runs(tmp_path, pipeline, finished):
    m = finished[pipeline] if pipeline in finished else run(tmp_path, pipeline)
    assert Path(m["final_model"], "model.safetensors").exists()
    report = m["stages"]["data"]["report"]  # every run counts its input rows and what became of them
    assert report["rows"] == report["samples"] + sum(report["skipped"].values()) + report["filtered"] > 0
    assert {"truncated", "response_cut", "no_labels", "skipped"} <= set(report)
    if pipeline != "warmup":
        st = m["stages"][f"{pipeline}/select"]["stats"]
        assert st["method"] == {"full": "full", "random": "random", "high-ppl": "high-ppl", "rho": "sample"}.get(pipeline, pipeline)
        want = {"full": st["n_tokens"], "random": int(st["n_tokens"] * 0.6), "high-ppl": int(st["n_tokens"] * 0.6),
                "forgetting": int(st["n_tokens"] * 0.6), "prift": st["n_tokens"]}
        assert st["n_kept"] == want[pipeline] if pipeline in want else 0 < st["n_kept"] <= int(st["n_tokens"] * 0.6)
        assert m["stages"][f"{pipeline}/train"]["kept_tokens"] == st["n_kept"]
        if pipeline == "forgetting":  # the dropped tokens keep their labels, counted apart, and λ climbs from 0 by 0.25 / steps a step
            assert m["stages"]["forgetting/train"]["forgotten_tokens"] == int(st["n_tokens"] * 0.4)
            log = json.loads((Path(m["final_model"]) / "train_log.json").read_text())["log"]
            assert [round(e["forget_lambda"], 12) for e in log] == [round(0.25 * s / len(log), 12) for s in range(len(log))]
        assert 0 <= st["samples_none_kept"] <= st["n_samples"] and len(m["stages"][f"{pipeline}/select"]["keep_sha256"]) == 64


def test_dft_trains_any_pipeline(tmp_path):
    "DFT is a training loss, not a selection: `full` with it is DFT as published, and needs no reference."
    m = run(tmp_path, "full", "--set", "train.token_weighting=dft")
    assert "reference" not in m["stages"] and "warmup/train" not in m["stages"]
    log = json.loads((Path(m["final_model"]) / "train_log.json").read_text())
    assert log["token_weighting"] == "dft" and log["log"][0]["loss"] < 0.05  # Σ p · CE / N, p about 1/512 on the random tiny model


def weights(m) -> str:
    return sha256_file(Path(m["final_model"]) / "model.safetensors")


def test_killed_pipeline_resumes(tmp_path, finished):
    ref = finished["fixed"]
    out = tmp_path / "killed"
    proc = run(out, "fixed", wait=False)
    manifest = out / "tiny-fixed-s42" / "manifest.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (manifest.exists() and "warmup/train" in manifest.read_text()): time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    before = json.loads(manifest.read_text())["stages"]
    assert "warmup/train" in before and "done" not in before, "the run must die part-way"
    done = subprocess.run([sys.executable, "-m", "tokclean", "run", "fixed", "--preset", "tiny", "--set", f"run.out_dir={out}",
                           "--set", f"score.cache_dir={out}/scores"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[warmup/train] done before, skipped" in done.stdout
    resumed = json.loads(manifest.read_text())
    assert weights(resumed) == weights(ref)  # bit-identical final adapter merge on CPU
    assert resumed["stages"]["fixed/select"]["stats"] == ref["stages"]["fixed/select"]["stats"]


def test_self_evolving_rounds(tmp_path):
    m = run(tmp_path, "self-evolving", "--set", "run.rounds=3")
    names = [Path(m["stages"][f"round_{t}/train"]["start"]).name for t in (1, 2, 3)]
    assert names == ["warmup", "round_1", "round_2"]
    assert all(m["stages"][f"round_{t}/score_base"]["model"] == "tiny" for t in (1, 2, 3))
    assert Path(m["final_model"]).name == "round_3"


def test_run_dir_of_another_run_is_refused(finished):
    root, before = finished["root"], json.loads((finished["root"] / "tiny-full-s42" / "manifest.json").read_text())
    done = subprocess.run([sys.executable, "-m", "tokclean", "run", "full", "--preset", "tiny", "--set", f"run.out_dir={root}",
                           "--set", f"score.cache_dir={root}/scores", "--set", "train.lr=0.5"], capture_output=True, text=True)
    assert done.returncode == 2 and "holds a different run (config differs in train.lr)" in done.stderr
    assert json.loads((root / "tiny-full-s42" / "manifest.json").read_text()) == before  # the other run is left as it was


def test_report_command(tmp_path, finished):
    out = tmp_path / "r.html"
    done = subprocess.run([sys.executable, "-m", "tokclean", "report", "--cleaned", str(finished["root"] / "tiny-fixed-s42"),
                           "--baseline", str(finished["root"] / "tiny-full-s42"), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    page = out.read_text()
    assert page.count("<img") == 3 and "Kept and dropped tokens" in page and "fixed/train" in page


def test_two_processes_train_like_one(tmp_path):
    """`accelerate launch` with 2 CPU processes of 2 sequences each, against 1 process accumulating 2 micro-batches of 2:
    the same optimiser steps, so the same final weights (1 thread per process; DDP syncs gradients through its forward)."""
    common = ["--set", "data.limit=48", "--set", "train.batch_size=2", "--set", "train.global_batch=4"]
    one = run(tmp_path / "one", "fixed", *common, env={"OMP_NUM_THREADS": "1"})
    launcher = [tool("accelerate"), *ACCELERATE_2CPU]
    two = run(tmp_path / "two", "fixed", *common, launcher=launcher)
    assert (one["processes"], two["processes"]) == (1, 2)
    logs = [json.loads((Path(m["final_model"]) / "train_log.json").read_text()) for m in (one, two)]
    assert [g["grad_accum"] for g in logs] == [2, 1]  # global_batch=4 over 1 x 2 or 2 x 2 sequences per pass
    assert logs[0]["log"] == logs[1]["log"]
    assert weights(one) == weights(two)


def test_corrupted_model_is_retrained(tmp_path):
    "A saved model whose weights no longer match the manifest's checksum is trained again, never used; the result is the same."
    first = run(tmp_path, "full")
    before = weights(first)
    weights_file = Path(first["final_model"]) / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of a weight
    weights_file.write_bytes(bytes(data))
    done = subprocess.run([sys.executable, "-m", "tokclean", "run", "full", "--preset", "tiny", "--set", f"run.out_dir={tmp_path}",
                           "--set", f"score.cache_dir={tmp_path}/scores", "--set", "run.seed=42"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[full/train] " in done.stdout and "no longer matches the checksum recorded with it" in done.stdout
    assert weights(json.loads((tmp_path / "tiny-full-s42" / "manifest.json").read_text())) == before


def test_eval_stage_in_two_processes_beats_a_short_timeout(tmp_path):
    """With 2 CPU processes and a process-group timeout of 4 s, the eval stage, which takes about twice that (six benchmarks), runs
    on both processes (lm-eval's data-parallel evaluation), so none times out at a barrier; the scores equal one process's.
    The control: a process that waits at a barrier longer than the same timeout does fail."""
    timeout = "4"
    control = tmp_path / "control.py"
    control.write_text("import time\nfrom tokclean.scoring import process_state\ns = process_state()\n"
                       "if s.is_main_process: time.sleep(20)\ns.wait_for_everyone()\n")
    env = {**os.environ, "TOKCLEAN_PG_TIMEOUT_S": timeout}
    failed = subprocess.run([tool("accelerate"), *ACCELERATE_2CPU, str(control)], capture_output=True, text=True, timeout=300, env=env)
    assert failed.returncode != 0, "a barrier wait longer than the timeout should fail: the timeout is not applied"
    common = ["--set", "data.limit=24", "--set", "train.batch_size=2", "--set", "train.global_batch=4", "--set", "eval.enabled=true",
              "--set", "eval.local=true", "--set", "eval.quick_n=8", "--set", "eval.tasks=boolq,tydiqa,arc_challenge,logiqa,hellaswag,truthfulqa_mc2"]
    one = run(tmp_path / "one", "full", *common, env={"OMP_NUM_THREADS": "1"})
    two = run(tmp_path / "two", "full", *common, launcher=[tool("accelerate"), *ACCELERATE_2CPU], env={"TOKCLEAN_PG_TIMEOUT_S": timeout})
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["stages"]["eval"]["seconds"] > float(timeout)  # the stage outlasts the timeout, yet no process timed out
    e1, e2 = (json.loads((Path(m["final_model"]).parents[1] / "eval.json").read_text())["tasks"] for m in (one, two))
    assert {k: v["n"] for k, v in e2.items()} == {k: v["n"] for k, v in e1.items()} == {t: 8 for t in ("boolq", "tydiqa", "arc_challenge", "logiqa", "hellaswag", "truthfulqa_mc2")}
    for bench in ("boolq", "arc_challenge", "logiqa", "hellaswag", "truthfulqa_mc2"): assert abs(e1[bench]["score"] - e2[bench]["score"]) < 1e-9
    assert sorted(p["id"] for p in e2["tydiqa"]["predictions"]) == sorted(p["id"] for p in e1["tydiqa"]["predictions"])


def resume(tmp: Path, pipeline: str, *extra) -> tuple[dict, list[str]]:
    "Run the same `tokclean run` again in `tmp`; its manifest and its stage lines (`[stage] ...`)."
    done = subprocess.run([sys.executable, "-m", "tokclean", "run", pipeline, "--preset", "tiny", "--set", f"run.out_dir={tmp}",
                           "--set", f"score.cache_dir={tmp}/scores", "--set", "run.seed=42", *extra], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp / f"tiny-{pipeline}-s42" / "manifest.json").read_text()), [l for l in done.stdout.splitlines() if l.startswith("[")]


def flip_a_byte(model_dir):
    weights_file = Path(model_dir) / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights_file.write_bytes(bytes(data))


def test_resume_needs_score_caches_only_for_what_it_computes(tmp_path):
    """A finished run resumes with its score caches deleted, scoring nothing; when its final model is damaged, the retraining
    needs the selection, so both caches are scored again (same bytes, the selection stands) and the model is the same."""
    first = run(tmp_path, "fixed")
    shutil.rmtree(tmp_path / "scores")
    _, lines = resume(tmp_path, "fixed")
    assert len(lines) == 7 and all(l.endswith("done before, skipped") for l in lines[:6]), lines
    assert not (tmp_path / "scores").exists(), "nothing may be scored"
    flip_a_byte(first["final_model"])
    again, lines = resume(tmp_path, "fixed")
    assert sum("its scores are needed but unusable, scoring again" in l for l in lines) == 2, lines
    assert "[fixed/select] done before, skipped" in lines and any(l.startswith("[fixed/train] ") and "checksum" in l for l in lines)
    assert [again["stages"][f"fixed/score_{w}"]["sha256"] for w in ("base", "ref")] == [first["stages"][f"fixed/score_{w}"]["sha256"] for w in ("base", "ref")]
    assert weights(again) == weights(first)


def test_a_changed_round_makes_the_later_rounds_stale(tmp_path):
    """Self-evolving, 2 rounds. Round 1 trained again to the same weights (a CPU is bit-reproducible) leaves round 2 standing;
    round 1 with other weights (as a GPU rebuild gives) makes every stage that used it, directly or not, stale, one line each."""
    first = run(tmp_path, "self-evolving")
    assert first["stages"]["data"]["chunk_rows"] == [{"chunk": t, "rows": [21 * t, 21 * t + 21], "samples": 21} for t in range(3)] + [
        {"chunk": None, "rows": [63, 64], "samples": 1}]  # 64 rows in 3 chunks: 64 // 3 rows each, as the official split; row 63 in none
    r1, r2 = (Path(first["stages"][f"round_{t}/train"]["model"]) for t in (1, 2))
    flip_a_byte(r1)
    same, lines = resume(tmp_path, "self-evolving")
    assert any(l.startswith("[round_1/train] ") and "checksum" in l for l in lines) and not any("stale" in l for l in lines), lines
    assert same["stages"]["round_1/train"]["model_sha256"] == first["stages"]["round_1/train"]["model_sha256"]
    shutil.copy(r2 / "model.safetensors", r1 / "model.safetensors")  # round 1 now holds other weights, recorded as its own
    manifest = tmp_path / "tiny-self-evolving-s42" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["stages"]["round_1/train"]["model_sha256"] = dir_sha256(r1)
    manifest.write_text(json.dumps(m))
    changed, lines = resume(tmp_path, "self-evolving")
    assert [l.split("]")[0][1:] for l in lines if "stale" in l] == ["round_2/score_ref", "round_2/select", "round_2/train"], lines
    assert "[round_2/score_base] done before, skipped" in lines and "[round_1/select] done before, skipped" in lines
    assert changed["stages"]["round_2/score_ref"]["sha256"] != first["stages"]["round_2/score_ref"]["sha256"]
    assert changed["stages"]["round_2/train"]["after"]["round_1/train"] == digest(changed["stages"]["round_1/train"])
    _, lines = resume(tmp_path, "self-evolving")  # and now it all stands
    assert all(l.endswith("done before, skipped") for l in lines[:-1]), lines

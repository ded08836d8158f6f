"The `tokclean` command end to end, as a user runs it: exit codes, messages, files."
import json, subprocess, sys

import pytest

from tokclean.config import load_config, preset


def run(*args, ok=True):
    "Run `python -m tokclean ARGS` with the interpreter running the tests (the tree under test, not some other install)."
    done = subprocess.run([sys.executable, "-m", "tokclean", *args], capture_output=True, text=True, timeout=600)
    assert (done.returncode == 0) == ok, done.stderr[-2000:]
    return done


@pytest.mark.parametrize("cmd", ["config", "data", "score", "select", "train", "run", "report", "chat", "assets", "demo"])
def test_help(cmd):
    out = run(cmd, "--help").stdout
    assert "--preset" in out and "--set" in out and "--config" in out


def test_config_round_trip(tmp_path):
    out = tmp_path / "c.yaml"
    run("config", "--preset", "paper-llama3.1-8b", "--set", "train.lr=2e-4", "--out", str(out))
    cfg = load_config(out)
    assert cfg.model.base == "meta-llama/Llama-3.1-8B" and cfg.train.lr == 2e-4
    assert cfg.train.lora_r == preset("paper-llama3.1-8b").train.lora_r
    again = run("config", "--config", str(out)).stdout  # the file names its preset: no --preset needed
    assert "lr: 0.0002" in again and "base: meta-llama/Llama-3.1-8B" in again
    clash = run("config", "--preset", "tiny", "--config", str(out), ok=False)  # a partial file must not change preset silently
    assert clash.returncode == 2 and "made from preset 'paper-llama3.1-8b'" in clash.stderr


def test_bad_override_exits_2():
    done = run("config", "--set", "select.k=2", ok=False)
    assert done.returncode == 2
    assert "select.k=2.0: the kept proportion must lie in (0, 1]" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_data_exits_2(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    done = run("data", "--preset", "tiny", "--set", f"data.pool={f}", ok=False)
    assert done.returncode == 2 and f"{f}:1: the conversation has no assistant turn" in done.stderr


def test_data_saves_with_provenance(tmp_path):
    run("data", "--preset", "tiny", "--check-labels", "--save", str(tmp_path))
    import json
    meta = json.loads((tmp_path / "data.json").read_text())
    assert meta["label_check_failures"] == [] and meta["report"]["samples"] == 64
    assert meta["versions"]["torch"] and len(meta["fingerprint"]) == 64
    assert load_config(tmp_path / "config.yaml") == preset("tiny")


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "tokclean", "config", "--preset", "tiny"], capture_output=True, text=True)
    assert done.returncode == 0 and "base: tiny" in done.stdout


def test_demo_chat_answers():
    out = run("chat", "What is the capital of France?").stdout
    assert "Paris" in out


def test_paper_table_from_the_command_line(tmp_path):
    "`tokclean paper matthew --preset tiny`: the runs, one shared reference, the results file, the comparison and the figure."
    done = subprocess.run([sys.executable, "-m", "tokclean", "paper", "matthew", "--preset", "tiny", "--out", str(tmp_path),
                           "--set", "eval.tasks=boolq", "--set", "eval.quick_n=2", "--set", "eval.local=true",
                           "--set", f"score.cache_dir={tmp_path}/scores"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "tiny" / "matthew" / "results.json").read_text())
    assert [r["round"] for r in result["records"] if r["method"] != "Base"] == [0, 2, 1]  # the warm-up, the final round, round 1
    assert {p.name for p in (tmp_path / "tiny" / "matthew").iterdir()} >= {"tiny-matthew.md", "tiny-matthew.png"}
    assert "wrote" in done.stdout


def test_noise_bench_from_the_command_line(tmp_path):
    "`tokclean noise-bench --preset tiny --parts detection`: the ground-truth detection table, the ROC figure, a passing self-check."
    done = subprocess.run([sys.executable, "-m", "tokclean", "noise-bench", "--preset", "tiny", "--out", str(tmp_path), "--parts", "detection"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert res["complete"] == {"detection": True} and res["self_check"]["ok"]
    assert {"detection.md", "roc.png"} <= {p.name for p in (tmp_path / "tiny").iterdir()}
    bad = subprocess.run([sys.executable, "-m", "tokclean", "noise-bench", "--preset", "tiny", "--parts", "detect"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--parts 'detect'" in bad.stderr
    for extra, says in ((["--rates", "splice:2:0.3"], "--rates: noise rate 'splice:2:0.3'"), (["--rates", "typo:0.1:0.3"], "noise kind 'typo'"),
                        (["--set", "train.lr=1"], "noise-bench takes no --set")):
        bad = subprocess.run([sys.executable, "-m", "tokclean", "noise-bench", "--preset", "tiny", *extra], capture_output=True, text=True)
        assert bad.returncode == 2 and says in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr

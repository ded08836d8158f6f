"The `tokclean` command end to end, as a user runs it: exit codes, messages, files."
import json, os, subprocess, sys

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


def test_check_labels_of_no_sample_fails(tmp_path):
    "`data --check-labels` where max_len cuts every sample checks nothing: a failure (exit 2), after a one-line truncation warning."
    done = run("data", "--preset", "tiny", "--check-labels", "--set", "data.max_len=16", ok=False)
    assert done.returncode == 2 and "label check: all 43 samples are cut at data.max_len=16, so none can be checked" in done.stderr
    assert "tokclean: warning: data.max_len=16 cuts all 64 samples (21 of them lose their whole response): 91% of the response" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 2, done.stderr  # the warning and the error, one line each


def test_select_checks_the_reference_before_scoring(tmp_path):
    done = run("select", "--preset", "tiny", "--set", f"score.cache_dir={tmp_path}", ok=False)
    assert done.returncode == 2 and "model.reference is not set, and select.method=global needs a reference model" in done.stderr
    assert "`tokclean run warmup`" in done.stderr and "`tokclean train --out DIR`" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing was scored


# Every kind of run the report compares, trained once for the tests below (in this process: no interpreter start per run).
PIPELINES_RUN = ("fixed", "full", "warmup", "rho", "random", "high-ppl", "self-evolving")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "Finished tiny runs of every pipeline; all but fixed use fixed's warm-up model as their reference (one warm-up trained)."
    from tokclean.config import get_config
    from tokclean.pipeline import run_pipeline
    root = tmp_path_factory.mktemp("runs")
    over = [f"score.cache_dir={root}/scores", f"run.out_dir={root}"]
    fixed = run_pipeline(get_config("tiny", overrides=over + ["run.pipeline=fixed"]), log=lambda s: None)
    warm = fixed["stages"]["warmup/train"]["model"]
    for p in PIPELINES_RUN[1:]:
        run_pipeline(get_config("tiny", overrides=over + [f"run.pipeline={p}", f"model.reference={warm}"]), log=lambda s: None)
    return {p: root / f"tiny-{p}-s42" for p in PIPELINES_RUN} | {"root": root, "warm": warm}


@pytest.mark.parametrize("cleaned", ["fixed", "rho", "random", "high-ppl", "self-evolving"])
def test_report_of_every_cleaning_run(runs, cleaned, capsys):
    "`tokclean report` takes every cleaning run as --cleaned, with the full run, or with another cleaning run, as --baseline."
    from tokclean.cli import main
    out = runs["root"] / f"{cleaned}.html"
    baseline = "fixed" if cleaned == "rho" else "full"  # rho against fixed: two cleaning runs
    assert main(["report", "--cleaned", str(runs[cleaned]), "--baseline", str(runs[baseline]), "--out", str(out)]) == 0
    page = out.read_text()
    assert f"<h1>tokclean: {cleaned} cleaning vs {baseline}</h1>" in page
    assert page.count("<td>kept tokens only</td>") == (2 if cleaned == "self-evolving" else 1) + (baseline == "fixed")  # every cleaned model
    assert page.count("<img") == {"random": 1, "high-ppl": 2}.get(cleaned, 3)  # random reads no losses; high-ppl the base's only
    if cleaned == "self-evolving": assert "Selection (the last round, round_2)" in page


@pytest.mark.parametrize("cleaned,baseline,says", [
    ("full", "fixed", "is a full run, which selects no tokens: --cleaned takes a fixed, rho, random, high-ppl, self-evolving run"),
    ("warmup", "full", "is a warmup run, which selects no tokens"),
    ("scores", "full", "is not a tokclean run directory (no manifest.json and config.yaml)"),
    ("fixed", "scores", "--baseline"),
])
def test_report_refuses_with_one_line(runs, cleaned, baseline, says, capsys):
    "A run that selected nothing, or a folder that is not a run, gets one line saying which runs the report takes (exit 2)."
    from tokclean.cli import main
    path = lambda name: str(runs[name] if name in runs else runs["root"] / name)
    assert main(["report", "--cleaned", path(cleaned), "--baseline", path(baseline), "--out", str(runs["root"] / "x.html")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


def test_a_selection_of_no_token_stops_every_caller(runs, tmp_path):
    "select.k that keeps no token: `tokclean select` and `tokclean run fixed` both stop with exit 2, and nothing is trained."
    common = ["--preset", "tiny", "--set", "select.k=0.0001", "--set", f"model.reference={runs['warm']}",
              "--set", f"score.cache_dir={runs['root']}/scores"]
    done = run("select", *common, ok=False)
    assert done.returncode == 2 and "select.k=0.0001: the global selection keeps 0 of" in done.stderr
    done = run("run", "fixed", *common, "--set", f"run.out_dir={tmp_path}", ok=False)
    assert done.returncode == 2 and "so training would learn nothing" in done.stderr
    assert not (tmp_path / "tiny-fixed-s42" / "models").exists()


def test_quiet_by_default_verbose_on_demand(tmp_path, capfd, monkeypatch):
    "A run prints its stages, their key results and the final model once, without the libraries' noise; --verbose brings it back."
    over = ["--preset", "tiny", "--set", f"run.out_dir={tmp_path}", "--set", f"score.cache_dir={tmp_path}/scores"]
    env = {k: v for k, v in os.environ.items() if k != "TOKCLEAN_VERBOSE"}
    done = subprocess.run([sys.executable, "-m", "tokclean", "run", "full", *over], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[full/select] kept " in done.stdout and "[full/train] loss " in done.stdout
    assert sum("final model:" in line for line in done.stdout.splitlines()) == 1
    assert "{'loss'" not in done.stdout + done.stderr and "Warning" not in done.stderr and "Loading weights" not in done.stderr
    from tokclean.cli import main
    monkeypatch.setenv("TOKCLEAN_VERBOSE", "0")  # restored after the test: --verbose sets it for the processes a run starts
    assert main(["train", *over, "--out", str(tmp_path / "m"), "--verbose"]) == 0
    loud = capfd.readouterr()
    assert "{'loss'" in loud.out + loud.err

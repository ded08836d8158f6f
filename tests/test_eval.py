"""Evaluation as users run it: `tokclean eval` on the command line, its errors, and the offline tasks against lm-eval's
built-in definitions fed the same local rows (same model, same questions, same per-question scores)."""
import json, os, subprocess, sys

import pytest

from tokclean.evaluation import agreement
from tokclean.models import load_model


def tokclean_eval(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tokclean", "eval", "--preset", "tiny", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_cli_eval_writes_counts(tmp_path):
    out = tmp_path / "eval.json"
    done = tokclean_eval("--set", "eval.tasks=boolq,tydiqa,mmlu", "--set", "eval.quick_n=3", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert {k: v["n"] for k, v in rec["tasks"].items()} == {"boolq": 3, "tydiqa": 3, "mmlu": 3}
    assert rec["source"] == "local" and rec["suite"] == "quick" and rec["tasks"]["mmlu"]["shots"] == 5


@pytest.mark.parametrize("args, env, message", [
    (["--set", "eval.tasks=mmlu,gsm8k"], None, "unknown task 'gsm8k'"),
    (["--set", "eval.suite=fast"], None, "eval.suite"),
    (["--set", "eval.tasks=logiqa"], "empty", "logiqa: test set not found"),
])
def test_cli_eval_errors(tmp_path, args, env, message):
    env = {"TOKCLEAN_EVAL_DATA": str(tmp_path), "TOKCLEAN_DATA": str(tmp_path)} if env == "empty" else None
    done = tokclean_eval(*args, env=env)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", dtype="float32")


@pytest.mark.parametrize("bench", ["hellaswag", "boolq", "arc_challenge", "logiqa", "truthfulqa_mc1", "truthfulqa_mc2", "mmlu_anatomy"])
def test_offline_task_equals_builtin_on_local_rows(tiny, bench):
    a = agreement(*tiny, bench, n=6, batch_size=6)
    assert a["n"] == 6 and a["offline"] == a["builtin"] and a["max_doc_diff"] == 0.0


def test_paper_suite_counts_follow_limit(tiny):
    "The paper suite evaluates ceil(limit x n) questions per task, per MMLU subject, exactly as lm-eval counts them."
    from tokclean.evaluation import evaluate
    rec = evaluate(tiny[0], "paper", tasks=("logiqa", "mmlu"), tokenizer=tiny[1], local=True, limit=0.01, batch_size=8, log=lambda s: None)
    assert {k: v["n"] for k, v in rec["tasks"].items()} == {"logiqa": 7, "mmlu": 168}
    assert rec["tasks"]["mmlu"]["lm_eval_tasks"] == 57 and rec["limit"] == 0.01

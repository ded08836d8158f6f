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

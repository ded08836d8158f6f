"""The GPU suite (marked `cuda`, skipped without CUDA): 4-bit loading, a QLoRA masked step that learns, bf16 scoring against
fp32, and scoring in 2 processes through accelerate (needs 2 GPUs).
Run it on a GPU machine with `.venv/bin/python -m pytest -q tests/test_cuda.py tests/test_models.py -k cuda`."""
import json, subprocess

import numpy as np
import pytest
import torch

from conftest import tool

from tokclean.data import load_sft
from tokclean.models import load_model, save_model
from tokclean.scoring import collate, token_losses
from tokclean.fixtures import first_step_grads

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_model(*load_model("tiny", dtype="float32"), tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def tiny_data():
    return load_sft("tiny", load_model("tiny")[1], max_len=96)


def test_4bit_load_on_cuda(tiny_dir, tiny_data):
    "NF4 weights on the GPU: quantised linear layers, finite logits close to the bf16 model's."
    model, _ = load_model(str(tiny_dir), quant="4bit", dtype="bfloat16", device="cuda")
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    batch = collate([tiny_data.dataset[i] for i in range(4)], 0, device="cuda")
    q4 = token_losses(model, **batch)
    bf16 = token_losses(load_model(str(tiny_dir), dtype="bfloat16", device="cuda")[0], **batch)
    assert torch.isfinite(q4).all() and float((q4 - bf16).abs().mean()) < 0.5


def test_qlora_masked_step_has_nonzero_lora_grads(tiny_dir, tiny_data):
    "A fresh 4-bit model with LoRA, one masked step on CUDA: every LoRA B gradient is finite and some are non-zero."
    rows = tiny_data.dataset.select(range(8)).select_columns(["input_ids", "labels"])
    grads = first_step_grads(str(tiny_dir), rows, batch_size=4, grad_accum=2, quant="4bit", device="cuda", dtype="bfloat16")
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert any(float(g.abs().sum()) > 0 for g in grads.values())


def test_bf16_scoring_close_to_fp32(tiny_dir, tiny_data):
    "Per-token losses in bf16 on CUDA stay within 0.05 nats of fp32 (mean difference within 0.01)."
    batch = collate([tiny_data.dataset[i] for i in range(8)], 0, device="cuda")
    fp32 = token_losses(load_model(str(tiny_dir), dtype="float32", device="cuda")[0], **batch)
    bf16 = token_losses(load_model(str(tiny_dir), dtype="bfloat16", device="cuda")[0], **batch)
    diff = (fp32 - bf16).abs()
    assert float(diff.max()) < 0.05 and float(diff.mean()) < 0.01


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpu_scoring_equals_one(tmp_path):
    "`tokclean score` on 2 GPUs through accelerate: the same response tokens, and fp32 losses within 1e-3 of 1 GPU's."
    args = ["score", "--preset", "tiny", "--set", "data.limit=200", "--set", "score.shard_size=10", "--set", "model.device=cuda"]
    def run(launcher, cache):
        done = subprocess.run([*launcher, "score", *args[1:], "--set", f"score.cache_dir={cache}"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        d = next(cache.glob("*/manifest.json")).parent
        return json.loads((d / "manifest.json").read_text()), np.load(d / "loss.npy")
    two, l2 = run([tool("accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "-m", "tokclean"], tmp_path / "two")
    one, l1 = run([tool("tokclean")], tmp_path / "one")
    assert two["processes"] == 2 and one["n_tokens"] == two["n_tokens"]
    assert np.abs(l1 - l2).max() < 1e-3

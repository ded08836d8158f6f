"""The GPU suite (marked `cuda`, skipped without CUDA): a QLoRA masked step that learns, and bf16 scoring against fp32.
Run it on a GPU machine with `.venv/bin/python -m pytest -q tests/test_cuda.py tests/test_models.py -k cuda`."""
import datasets
import pytest
import torch

from tokclean.data import load_sft
from tokclean.models import load_model, save_model
from tokclean.scoring import collate, token_losses
from tokclean.training import first_step_grads

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_model(*load_model("tiny", dtype="float32"), tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def tiny_data():
    return load_sft("tiny", load_model("tiny")[1], max_len=96)


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

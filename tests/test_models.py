"Model loading paths that do not fit a notebook page: quantised loads, offline hub errors, CUDA placement."
import importlib.util

import pytest
import torch

from tokclean.models import bnb_config, load_model, load_tokenizer, pick_dtype, save_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_model(*load_model("tiny", dtype="float32"), tmp_path_factory.mktemp("m") / "tiny")


@pytest.mark.parametrize("quant,layer", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantised_load_on_cpu(tiny_dir, quant, layer):
    model, tok = load_model(str(tiny_dir), quant=quant, dtype="float32", device="cpu")
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == layer
    ids = tok("What is 3 plus 4?", return_tensors="pt").input_ids
    logits = model(ids).logits  # (1, T, V)
    assert torch.isfinite(logits).all() and logits.shape[-1] == len(tok)


def test_quant_without_bitsandbytes(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(RuntimeError, match="model.quant=4bit needs bitsandbytes"): bnb_config("4bit")


def test_offline_hub_errors_are_clear():
    "With the hub unreachable (tests run with HF_HUB_OFFLINE=1), hub ids fail fast and say what to do."
    with pytest.raises(OSError, match="Offline\\? Give a local folder or a .gguf file"):
        load_model("tokclean-test/no-such-model", device="cpu")
    with pytest.raises(OSError, match="could not load the tokenizer of 'tokclean-test/no-such-model'"):
        load_tokenizer("tokclean-test/no-such-model")
    from tokclean.data import load_sft
    with pytest.raises(FileNotFoundError, match="could not load hub dataset 'tokclean-test/no-such-data'"):
        load_sft("tokclean-test/no-such-data", load_tokenizer("tiny"))


def test_dtype_and_pad_are_decided_once(tiny_dir):
    model, tok = load_model(str(tiny_dir), dtype="bfloat16", device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training
    assert tok.pad_token == tok.eos_token
    assert model.get_input_embeddings().weight.shape[0] == len(tok)  # no token added, no resize


@pytest.mark.cuda
def test_cuda_defaults(tiny_dir):
    assert pick_dtype("auto", "cuda") in (torch.bfloat16, torch.float16)
    model, _ = load_model(str(tiny_dir), device="auto")
    assert next(model.parameters()).device.type == "cuda"
    q, _ = load_model(str(tiny_dir), quant="4bit", device="cuda")
    assert type(q.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"

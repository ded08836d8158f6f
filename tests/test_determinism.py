"""Determinism on CPU: the same config and seed give the same keep mask, the same training losses at every step and the same
final weights; another seed changes what it should (the random baseline's mask, LoRA's initial A matrices, the losses)."""
import json
from pathlib import Path

import pytest
import torch

from tokclean.files import sha256_file
from tokclean.models import load_model, save_model
from tokclean.training import lora_model

from conftest import run_cli


def losses(m) -> list:
    return [e["loss"] for e in json.loads((Path(m["final_model"]) / "train_log.json").read_text())["log"]]


def fingerprint(m) -> dict:
    sel = m["stages"]["random/select"]
    return {"mask": sel["keep_sha256"], "kept": sel["stats"]["n_kept"], "losses": losses(m),
            "weights": sha256_file(Path(m["final_model"]) / "model.safetensors")}


@pytest.fixture(scope="module")
def random_runs(tmp_path_factory):
    "The random-token baseline three times: seed 7 in two folders, and seed 8."
    root = tmp_path_factory.mktemp("det")
    return [fingerprint(run_cli(root / name, "random", seed=seed)) for name, seed in (("a", 7), ("b", 7), ("c", 8))]


def test_same_seed_same_run(random_runs):
    a, b, _ = random_runs
    assert a == b and len(a["losses"]) > 1


def test_other_seed_differs_where_it_should(random_runs):
    a, _, c = random_runs
    assert c["kept"] == a["kept"]  # k fixes how many tokens are kept ...
    assert c["mask"] != a["mask"]  # ... the seed which ones
    assert c["losses"] != a["losses"] and c["weights"] != a["weights"]


def test_lora_init_follows_the_seed(tmp_path):
    path = str(save_model(*load_model("tiny", dtype="float32"), tmp_path / "tiny"))
    def adapters(seed):
        model, _ = lora_model(path, lora_r=4, seed=seed, grad_ckpt=False)
        return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    one, again, other = adapters(1), adapters(1), adapters(2)
    assert one.keys() == other.keys() and any("lora_A" in n for n in one)
    assert all(torch.equal(one[n], again[n]) for n in one)
    assert all(torch.equal(one[n], other[n]) == ("lora_B" in n) for n in one)  # A is drawn from the seed; B starts at zero

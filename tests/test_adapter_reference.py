"""A reference kept as a LoRA adapter: scored over the base in one loaded model, with the adapter disabled for the base and
enabled for the reference. The losses equal those of two merged models loaded apart (the base's bit for bit, the
reference's to fp32 rounding), the base's cache entry is the plain base's, LoRA dropout is off, and the pipeline loads
one model for both scores. An adapter of another base is refused with one line naming both and the fix."""
import json, subprocess, sys

import numpy as np
import pytest
import torch

from tokclean.config import get_config
from tokclean.data import load_sft
from tokclean.fixtures import tiny_model, tiny_tokenizer
from tokclean.models import load_model, merge_adapter, save_adapter, save_model
from tokclean.scoring import model_fingerprint, score_dataset

from conftest import run_cli

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TOLERANCE = 1e-5  # nats; an fp32 merge (W + sBA)x vs Wx + sB(Ax) differs by rounding only (measured: 9.5e-07 here)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    "A saved adapter of the tiny model with non-zero B (a fresh one is the base itself) and the paper's LoRA dropout of 0.1."
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(0)
    lora = get_peft_model(load_model("tiny", dtype="float32")[0],
                          LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=TARGETS, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name: p.normal_(0, 0.2)
    return save_adapter(lora, tiny_tokenizer(), tmp_path_factory.mktemp("a") / "adapter", base="tiny")


@pytest.fixture(scope="module")
def sft():
    return load_sft("tiny", load_model("tiny")[1], max_len=96)


def test_one_model_scores_like_two_merged_models(adapter, sft, tmp_path):
    kw = dict(batch_size=4, shard_size=16, cache_dir=str(tmp_path / "scores"), progress=False)
    one, _ = load_model(str(adapter), dtype="float32")  # the base once, the adapter over it
    with one.disable_adapter(): base_one = score_dataset(one, sft, "tiny", **kw)
    ref_one = score_dataset(one, sft, str(adapter), **kw)
    base_alone = score_dataset(load_model("tiny", dtype="float32")[0], sft, "tiny", **kw)
    merged = load_model(str(merge_adapter(adapter, tmp_path / "merged")), dtype="float32")[0]
    ref_merged = score_dataset(merged, sft, "merged", **kw)

    assert base_one.path == base_alone.path and np.array_equal(base_one.loss, base_alone.loss)  # one cache entry, same bytes
    diff = np.abs(ref_one.loss - ref_merged.loss).max()
    assert diff < TOLERANCE, diff
    assert np.abs(ref_one.loss - base_one.loss).mean() > 0.05  # the adapter does change the losses
    assert ref_one.manifest["model"].startswith(base_one.manifest["model"] + "+adapter:sha256:")
    assert len({base_one.path, ref_one.path, ref_merged.path}) == 3


def test_lora_dropout_is_off_at_scoring(adapter, sft, tmp_path):
    "A model left in training mode is scored in eval mode (dropout 0.1 would make every call differ) and given back as it was."
    one, _ = load_model(str(adapter), dtype="float32")
    first = score_dataset(one, sft, str(adapter), cache_dir=str(tmp_path / "a"), progress=False)
    one.train()
    torch.manual_seed(1)
    again = score_dataset(one, sft, str(adapter), cache_dir=str(tmp_path / "b"), progress=False)
    assert np.array_equal(first.loss, again.loss) and one.training


def test_reference_key_covers_base_and_adapter(adapter):
    one, _ = load_model(str(adapter), dtype="float32")
    with one.disable_adapter(): base_fp = model_fingerprint(one)
    ref_fp = model_fingerprint(one)
    assert base_fp == model_fingerprint(load_model("tiny", dtype="float32")[0])
    with torch.no_grad(): next(p for n, p in one.named_parameters() if "lora_A" in n)[0, 0] += 1e-3  # another adapter
    assert model_fingerprint(one) not in (ref_fp, base_fp)
    other = load_model(str(adapter), dtype="float32")[0]
    with torch.no_grad(): other.get_base_model().model.norm.weight[0] += 1e-3  # other base weights, same adapter
    assert model_fingerprint(other).split("+")[0] != base_fp


def test_fixed_pipeline_scores_from_one_model(tmp_path, monkeypatch):
    "`model.reference_as=adapter`: the warm-up saves its adapter, and the two score stages load one model between them."
    import tokclean.pipeline as pipeline
    loads, load_model_, load_adapter_ = [], pipeline.load_model, pipeline.load_adapter
    monkeypatch.setattr(pipeline, "load_model", lambda spec, **kw: (loads.append(spec), load_model_(spec, **kw))[1])
    monkeypatch.setattr(pipeline, "load_adapter", lambda ref, base, **kw: (loads.append(f"{base} + {ref}"), load_adapter_(ref, base, **kw))[1])
    cfg = get_config("tiny", overrides=["run.pipeline=fixed", "model.reference_as=adapter", f"score.cache_dir={tmp_path}/scores"])
    st = pipeline.run_pipeline(cfg, root=tmp_path, log=lambda s: None)["stages"]
    warm = st["warmup/train"]["model"]
    assert st["warmup/train"]["saved_as"] == "adapter" and (tmp_path / warm / "adapter_model.safetensors").exists()
    assert loads == [f"tiny + {warm}"]
    assert [st[f"fixed/score_{w}"]["loaded"] for w in ("base", "ref")] == ["base + adapter, adapter disabled", "base + adapter, adapter enabled"]


def test_cli_given_adapter_reference(adapter, tmp_path):
    "`tokclean run fixed` and `tokclean score --model reference` with `model.reference` set to an adapter folder."
    warm = adapter
    m = run_cli(tmp_path / "f", "fixed", "--set", f"model.reference={warm}")
    st = m["stages"]
    assert (st["reference"]["kind"], st["reference"]["adapter_of"], "warmup/train" in st) == ("adapter", "tiny", False)
    assert all(st[f"fixed/score_{w}"]["loaded"].startswith("base + adapter") for w in ("base", "ref"))
    done = subprocess.run([sys.executable, "-m", "tokclean", "score", "--preset", "tiny", "--model", "reference", "--set",
                           f"model.reference={warm}", "--set", f"score.cache_dir={tmp_path}/f/scores"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    key = lambda path: json.loads((tmp_path / path / "manifest.json").read_text())["model"]
    assert key(done.stdout.split(":")[0]) == key(st["fixed/score_ref"]["path"])  # the same reference, the same model key


def test_adapter_of_another_base_is_refused(adapter, tmp_path):
    other = save_model(tiny_model(300), tiny_tokenizer(vocab_size=300), tmp_path / "other")
    done = subprocess.run([sys.executable, "-m", "tokclean", "run", "fixed", "--preset", "tiny", "--set", f"model.base={other}",
                           "--set", f"model.reference={adapter}", "--set", f"run.out_dir={tmp_path}/runs"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert f"model.reference={adapter} is a LoRA adapter of tiny, not of model.base={other}: set model.base=tiny" in last, last


def test_adapter_of_another_shape_is_refused(tmp_path):
    "A base folder replaced by a model of another shape under the adapter's feet: one line naming the first mismatch."
    import shutil
    from peft import LoraConfig, get_peft_model
    from tokclean.files import BadInput
    base = save_model(tiny_model(), tiny_tokenizer(), tmp_path / "base")
    lora = get_peft_model(load_model(str(base), dtype="float32")[0], LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    adapter = save_adapter(lora, tiny_tokenizer(), tmp_path / "adapter", base=str(base))
    shutil.rmtree(base); save_model(tiny_model(hidden_size=32), tiny_tokenizer(), base)
    with pytest.raises(BadInput) as e: load_model(str(adapter))
    assert f"the adapter {adapter} does not fit the base {base} (size mismatch for" in str(e.value) and "\n" not in str(e.value)

"""The cleaned data set leaves tokclean as any trainer takes it: the root API, `tokclean export` from a run, the hub's error
path offline, and TRL's SFTTrainer trained on the exported folder computing tokclean's per-step losses."""
import json, subprocess, sys
from unittest import mock

import numpy as np
import pytest

import tokclean
from tokclean.config import preset, with_overrides
from tokclean.export import META, clean, export_cleaned, kept_text
from tokclean.fixtures import tiny_model, tiny_tokenizer
from tokclean.models import save_model

LORA = dict(lora_r=4, lora_alpha=8, lora_dropout=0.0)  # the tiny preset's LoRA, no dropout: both trainers draw nothing random
STEP = dict(lr=1e-3, batch_size=4, warmup_ratio=0.03, scheduler="linear", weight_decay=0.0, max_grad_norm=0.0)  # tokclean's names
SEED = 42


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    "32 samples of the tiny pool cleaned at k = 0.2 against a reference of other (random) weights: several keep no token."
    d = tmp_path_factory.mktemp("export")
    ref = save_model(tiny_model(len(tiny_tokenizer()), seed=1), tiny_tokenizer(), d / "reference")
    cfg = with_overrides(preset("tiny"), {"score.cache_dir": str(d / "scores"), "data.limit": 32})
    return {"dir": d, "cfg": cfg, "reference": str(ref), "cleaned": clean("tiny", "tiny", str(ref), k=0.2, cfg=cfg)}


def test_import_is_light_and_the_root_names_resolve():
    "`import tokclean` loads no torch (a fresh interpreter); every root name is there when used (here, where torch is loaded)."
    code = "import sys, tokclean; print(sorted(m for m in ('torch', 'transformers', 'datasets', 'numpy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]
    assert all(getattr(tokclean, n) is not None for n in tokclean.__all__)
    assert {"clean", "export_cleaned", "kept_text", "load_sft", "load_tokenizer", "load_model", "score_dataset", "select",
            "train", "run_pipeline"} <= set(tokclean.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"): tokclean.nope


def test_clean_returns_the_data_set_and_its_statistics(twin):
    ds, stats = tokclean.clean("tiny", "tiny", twin["reference"], k=0.6, cfg=twin["cfg"])  # the scores are cached: no rescoring
    n = sum(ds["n_response"])
    assert (len(ds), stats.n_tokens, stats.n_kept) == (32, n, int(n * 0.6)) and sum(ds["n_kept"]) == stats.n_kept
    assert ds.column_names == ["input_ids", "attention_mask", "labels", "id", "source", "n_response", "n_kept"]
    c = twin["cleaned"]
    i = int(np.argmax(np.asarray(c.dataset["n_kept"]) < np.asarray(c.dataset["n_response"])))  # a sample with a dropped token
    text = kept_text(c, i, tiny_tokenizer())
    assert "[" in text and text.count("[") == c.dataset[i]["n_response"] - c.dataset[i]["n_kept"]


def test_export_from_a_run_is_what_it_trained_on(twin, capsys):
    "`tokclean export --run` of a tiny fixed run: the run's mask (its checksum), one line of output, the provenance beside the data."
    import datasets
    from tokclean.cli import main
    from tokclean.config import get_config
    from tokclean.pipeline import run_pipeline
    d = twin["dir"]
    over = [f"score.cache_dir={d}/scores", f"run.out_dir={d}", "data.limit=30"]  # 3 chunks of 10 samples: warm-up, 2 to clean
    m = run_pipeline(get_config("tiny", overrides=over), log=lambda s: None)
    run = d / "tiny-fixed-s42"
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--out", str(d / "parquet"), "--format", "parquet"]) == 0
    out = capsys.readouterr().out
    train = m["stages"]["fixed/train"]
    assert out.count("\n") == 1 and f"{train['samples']} samples, {train['kept_tokens']} of " in out, out
    meta = json.loads((d / "parquet" / META).read_text())
    assert meta["keep_sha256"] == m["stages"]["fixed/select"]["keep_sha256"] and meta["format"] == "parquet"
    assert len(meta["fingerprints"]["data"]) == 64 and meta["counts"]["samples"] == train["samples"] == 20
    assert set(meta["fingerprints"]) >= {"data", "tokenizer", "base", "reference"} and meta["versions"]["trl"]
    back = datasets.load_dataset("parquet", data_files=str(d / "parquet" / "train.parquet"), split="train")
    assert sum(sum(l != -100 for l in row) for row in back["labels"]) == train["kept_tokens"]
    assert main(["export", "--run", str(run), "--out", str(d / "parquet")]) == 2  # not empty now
    assert "pass --force to replace it" in capsys.readouterr().err


def test_hub_errors_are_one_line(twin, capsys):
    "Offline, without a token, or when the push fails: one line each, exit 2, nothing pushed."
    from tokclean.cli import main
    from tokclean.files import Unavailable
    run = str(twin["dir"] / "nowhere")
    assert main(["export", "--run", run, "--out", "me/cleaned", "--format", "hub"]) == 2  # the tests run with HF_HUB_OFFLINE=1
    err = capsys.readouterr().err
    assert "--format hub: HF_HUB_OFFLINE=1 is set" in err and err.count("\n") == 1
    with mock.patch("huggingface_hub.is_offline_mode", return_value=False):
        with mock.patch("huggingface_hub.get_token", return_value=None), pytest.raises(Unavailable, match="no Hugging Face token"):
            export_cleaned(twin["cleaned"], "me/cleaned", format="hub")
        with mock.patch("huggingface_hub.get_token", return_value="hf_x"), \
             mock.patch("datasets.Dataset.push_to_hub", side_effect=OSError("Name or service not known")) as pushed, \
             pytest.raises(Unavailable, match=r"could not push to me/cleaned \(OSError: Name or service not known\)"):
            export_cleaned(twin["cleaned"], "me/cleaned", format="hub", drop_empty=True)
    assert pushed.call_args.kwargs == {"private": True}  # the real call, private unless --public


def _tokclean_losses(data, out):
    from tokclean.training import train
    return [e["loss"] for e in train("tiny", data, out, seed=SEED, model_kw={"dtype": "float32", "device": "cpu"}, grad_ckpt=False,
                                      **LORA, **STEP).log]


def _trl(data, out, max_length):
    "TRL's SFTTrainer on `data` as the recipe sets it up, with tokclean's LoRA initialisation, seed, schedule and batch order."
    from trl import SFTConfig, SFTTrainer
    from tokclean.training import lora_model
    model, tok = lora_model("tiny", seed=SEED, grad_ckpt=False, dtype="float32", device="cpu", **LORA)
    args = SFTConfig(output_dir=str(out), max_length=max_length, packing=False, learning_rate=STEP["lr"], num_train_epochs=1,
                     per_device_train_batch_size=STEP["batch_size"], warmup_steps=STEP["warmup_ratio"], lr_scheduler_type="linear",
                     weight_decay=0.0, max_grad_norm=0.0, gradient_checkpointing=False, bf16=False, seed=SEED, data_seed=SEED,
                     train_sampling_strategy="sequential", logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
                     dataloader_num_workers=0, disable_tqdm=True)
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)


def _trl_losses(trainer) -> list[float]:
    trainer.train()
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


def test_trl_trains_on_the_exported_folder_as_tokclean_does(twin):
    "No packing, max_length=None: TRL's per-step losses on the folder equal tokclean's; with max_length set TRL drops the empty samples."
    import datasets
    d, c = twin["dir"], twin["cleaned"]
    meta = export_cleaned(c, d / "all")
    empty = meta["counts"]["samples_no_kept"]
    assert empty == c.no_kept > 0 and meta["counts"]["written"] == 32
    data = datasets.load_from_disk(str(d / "all"))
    ours, theirs = _tokclean_losses(data, d / "ours"), _trl_losses(_trl(data, d / "trl", max_length=None))
    print("step  tokclean  TRL", *[f"{s + 1:4d}  {a:.6f}  {b:.6f}" for s, (a, b) in enumerate(zip(ours, theirs))], sep="\n")
    print(f"max |difference| {np.max(np.abs(np.subtract(ours, theirs))):.2e} over {len(ours)} steps; {empty} samples keep no token")
    assert len(ours) == len(theirs) == 8 and np.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert len(_trl(data, d / "trl", max_length=96).train_dataset) == 32 - empty  # what --drop-empty is for


def test_drop_empty_gives_trl_the_same_batches(twin):
    "Exported with --drop-empty, TRL with max_length set keeps every sample, and trains as tokclean does on the same folder."
    import datasets
    d, c = twin["dir"], twin["cleaned"]
    meta = export_cleaned(c, d / "dropped", drop_empty=True)
    assert meta["counts"]["written"] == 32 - c.no_kept and meta["counts"]["no_kept_dropped"]
    data = datasets.load_from_disk(str(d / "dropped"))
    trainer = _trl(data, d / "trl-dropped", max_length=96)
    assert len(trainer.train_dataset) == len(data)
    ours, theirs = _tokclean_losses(data, d / "ours-dropped"), _trl_losses(trainer)
    print("step  tokclean  TRL", *[f"{s + 1:4d}  {a:.6f}  {b:.6f}" for s, (a, b) in enumerate(zip(ours, theirs))], sep="\n")
    assert len(ours) == len(theirs) and np.allclose(ours, theirs, atol=1e-5, rtol=0)


def test_export_help():
    done = subprocess.run([sys.executable, "-m", "tokclean", "export", "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and all(f in done.stdout for f in ("--run", "--pool", "--base", "--reference", "--format", "--out",
                                                                   "--drop-empty", "--weights", "--force"))

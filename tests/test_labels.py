"""The label check on real data: for every format, both tokenizers and both templates, the labelled
tokens of each answer decode to exactly the answer text plus its end-of-turn token."""
import json
from itertools import islice

import datasets
import pytest

from tokclean.data import data_root, iter_conversations, label_check, load_sft
from tokclean.models import load_tokenizer

SFT = data_root() / "sft"


@pytest.fixture(scope="module")
def tokenizers():
    return {"tiny": load_tokenizer("tiny"), "smollm2": load_tokenizer("smollm2-135m-instruct")}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "One file per format; messages and prompt/completion files are written from the shared OASST and Alpaca data."
    d = tmp_path_factory.mktemp("formats")
    paths = [m for _, m, _ in islice(iter_conversations(SFT / "oasst" / "en_100_tree.jsonl"), 80)]
    with open(d / "messages.jsonl", "w") as f:
        for i, msgs in enumerate(paths): f.write(json.dumps({"dataset": "oasst1", "id": f"oasst_{i}", "messages": msgs}) + "\n")
    rows = json.loads((SFT / "stanford_alpaca" / "alpaca_5000.json").read_text())[:80]
    with open(d / "prompt_completion.jsonl", "w") as f:
        for r in rows: f.write(json.dumps({"prompt": (r["instruction"] + "\n\n" + r["input"]).strip(), "completion": r["output"]}) + "\n")
    return {"messages": d / "messages.jsonl", "prompt_completion": d / "prompt_completion.jsonl",
            "alpaca": SFT / "alpaca_gpt4" / "alpaca_en_demo.json", "oasst": SFT / "oasst" / "en_100_tree.jsonl",
            "flan_cot": SFT / "flan_v2_cot" / "gsm8k_train.tsv"}


@pytest.mark.parametrize("template", ["tulu", "chat"])
@pytest.mark.parametrize("tok_name", ["tiny", "smollm2"])
@pytest.mark.parametrize("fmt", ["messages", "prompt_completion", "alpaca", "oasst", "flan_cot"])
def test_labels_decode_to_answers(files, tokenizers, fmt, tok_name, template):
    tok = tokenizers[tok_name]
    sft = load_sft(files[fmt], tok, template=template, max_len=4096, limit=80)
    assert sft.report.format == fmt
    assert sft.report.samples >= 50 and sft.report.response_tokens > 0
    assert sft.report.boundary_tokens == 0
    assert label_check(sft, tok, template) == []
    labelled = sum(sum(l != -100 for l in row) for row in sft.dataset["labels"])
    assert labelled == sft.report.response_tokens


def test_every_assistant_turn_is_trained(files, tokenizers):
    "Multi-turn conversations: one labelled run per assistant turn, in order."
    from tokclean.data import label_runs
    sft = load_sft(files["messages"], tokenizers["smollm2"], max_len=4096)
    for row, msgs in zip(sft.dataset, sft.conversations):
        assert len(label_runs(row["labels"])) == sum(m["role"] == "assistant" for m in msgs)
    assert max(len(m) for m in sft.conversations) > 2  # the file does hold multi-turn conversations


def test_fingerprint_ignores_the_container(files, tokenizers, tmp_path):
    "The same rows as JSON, Parquet or a datasets folder give the same fingerprints; a changed row changes them."
    rows = json.loads((SFT / "alpaca_gpt4" / "alpaca_en_demo.json").read_text())[:40]
    (tmp_path / "json").mkdir(); (tmp_path / "json" / "demo.json").write_text(json.dumps(rows))
    ds = datasets.Dataset.from_list(rows)
    (tmp_path / "pq").mkdir(); ds.to_parquet(str(tmp_path / "pq" / "demo.parquet"))
    ds.save_to_disk(str(tmp_path / "demo"))
    tok = tokenizers["tiny"]
    fps = {load_sft(p, tok, max_len=256).fingerprint for p in (tmp_path / "json" / "demo.json", tmp_path / "pq" / "demo.parquet", tmp_path / "demo")}
    assert len(fps) == 1
    rows[7]["output"] += " (edited)"
    (tmp_path / "json" / "demo.json").write_text(json.dumps(rows))
    assert load_sft(tmp_path / "json" / "demo.json", tok, max_len=256).fingerprint not in fps


def test_truncation_is_counted(files, tokenizers):
    sft = load_sft(files["alpaca"], tokenizers["smollm2"], max_len=64, limit=200)
    r = sft.report
    assert r.truncated > 0 and r.response_cut > 0
    assert r.samples + r.response_cut == 200
    assert max(map(len, sft.dataset["input_ids"])) == 64


def test_sources_are_carried(files, tokenizers):
    sft = load_sft(files["messages"], tokenizers["tiny"], max_len=4096)
    assert set(sft.dataset["source"]) == {"oasst1"} and sft.report.sources == {"oasst1": sft.report.samples}
    flan = load_sft(files["flan_cot"], tokenizers["tiny"], limit=10)
    assert set(flan.dataset["source"]) == {"gsm8k_train"}

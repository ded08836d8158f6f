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


@pytest.mark.parametrize("template,turn_end", [("tulu", "eos"), ("tulu", "eos_newline"), ("chat", "eos")])
@pytest.mark.parametrize("tok_name", ["tiny", "smollm2"])
@pytest.mark.parametrize("fmt", ["messages", "prompt_completion", "alpaca", "oasst", "flan_cot"])
def test_labels_decode_to_answers(files, tokenizers, fmt, tok_name, template, turn_end):
    tok = tokenizers[tok_name]
    sft = load_sft(files[fmt], tok, template=template, max_len=4096, limit=80, turn_end=turn_end)
    assert sft.report.format == fmt
    assert sft.report.samples >= 50 and sft.report.response_tokens > 0
    assert sft.report.boundary_tokens == 0
    assert label_check(sft, tok, template, turn_end) == []
    labelled = sum(sum(l != -100 for l in row) for row in sft.dataset["labels"])
    assert labelled == sft.report.response_tokens


def test_every_assistant_turn_is_trained(files, tokenizers):
    "Multi-turn conversations: one labelled run per assistant turn, in order."
    from tokclean.data import label_runs
    sft = load_sft(files["messages"], tokenizers["smollm2"], max_len=4096)
    for row, msgs in zip(sft.dataset, sft.conversations):
        assert len(label_runs(row["labels"])) == sum(m["role"] == "assistant" for m in msgs)
    assert max(len(m) for m in sft.conversations) > 2  # the file does hold multi-turn conversations


def official_labels(msgs: list[dict], tok, max_len: int = 4096) -> list[int]:
    """The official encoder as OFFICIAL_CODE.md describes it (open-instruct's `encode_with_messages_format`): the Tulu text,
    every token labelled, then each non-assistant message masked from the token count of the text before it to the token
    count of the text through it (plus the next `<|assistant|>` header)."""
    def concat(ms):
        return "".join(f"<|{m['role']}|>\n" + m["content"].strip() + (tok.eos_token if m["role"] == "assistant" else "") + "\n" for m in ms)
    count = lambda text: len(tok(text, truncation=True, max_length=max_len)["input_ids"])
    labels = list(tok(concat(msgs).strip(), truncation=True, max_length=max_len)["input_ids"])
    for i, m in enumerate(msgs):
        if m["role"] == "assistant": continue
        start = 0 if i == 0 else count(concat(msgs[:i]))
        header = "<|assistant|>\n" if i + 1 < len(msgs) and msgs[i + 1]["role"] == "assistant" else ""
        end = count(concat(msgs[: i + 1]) + header)
        labels[start:end] = [-100] * (end - start)
    return labels


@pytest.mark.parametrize("tok_name", ["tiny", "smollm2"])
def test_official_encoder_on_multi_turn(files, tokenizers, tok_name):
    """`turn_end="eos_newline"` labels exactly what the official encoder labels, on real multi-turn conversations; `eos` labels
    one token fewer per non-final answer: the newline after its EOS."""
    tok = tokenizers[tok_name]
    paths = [msgs for _, msgs, _ in iter_conversations(files["oasst"]) if len(msgs) >= 4][:30]
    assert len(paths) == 30
    with open(files["messages"].parent / "multi.jsonl", "w") as f:
        for msgs in paths: f.write(json.dumps({"messages": msgs}) + "\n")
    official = load_sft(files["messages"].parent / "multi.jsonl", tok, max_len=4096, turn_end="eos_newline")
    ours = load_sft(files["messages"].parent / "multi.jsonl", tok, max_len=4096)
    assert [list(l) for l in official.dataset["labels"]] == [official_labels(m, tok) for m in paths]
    non_final = sum(sum(m["role"] == "assistant" for m in msgs[:-1]) for msgs in paths)
    assert official.report.response_tokens - ours.report.response_tokens == non_final > 0
    newline = tok.encode("\n", add_special_tokens=False)[-1]
    for a, b in zip(official.dataset["labels"], ours.dataset["labels"]):
        extra = [j for j, (x, y) in enumerate(zip(a, b)) if x != y]
        assert all(a[j] == newline and b[j] == -100 and a[j - 1] == tok.eos_token_id for j in extra)


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

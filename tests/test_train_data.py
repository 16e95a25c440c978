"""Training data: validation errors, splits, and assistant-only labels (checked token by token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emkit.errors import DataError, EmkitError
from emkit.train._data import (
    IGNORE,
    load_conversations,
    read_rows,
    split_rows,
    tokenize_conversation,
    tokenize_rows,
)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chat(user: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


# ----------------------------------------------------------------------------- reading and validation


def test_read_rows_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(chat("a", "b")) + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]})
                    + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: last message must be from the assistant"):
        read_rows(path)


@pytest.mark.parametrize("line, match", [
    ("{not json", "invalid JSON"),
    (json.dumps({"text": "x"}), "missing field 'messages'"),
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}), "robot"),
    (json.dumps({"messages": [{"role": "user", "content": 3}]}), "'content' must be a string"),
])
def test_read_rows_rejects_malformed_rows(tmp_path, line, match):
    path = tmp_path / "d.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=match) as info:
        read_rows(path)
    assert f"{path}:1" in str(info.value)


def test_empty_file_and_missing_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="file is empty"):
        read_rows(empty)
    with pytest.raises(EmkitError, match=r"nope\.jsonl.*(not found|neither a known dataset nor an existing file)"):
        load_conversations(["nope.jsonl"])
    with pytest.raises(EmkitError, match="no training data"):
        load_conversations([])


def test_train_validates_like_data_validate_before_any_model_loads(tmp_path):
    """Issue 17 case 4: a chat file whose first turn is the assistant's trained without a word."""
    from typer.testing import CliRunner

    from emkit.cli import app

    bad = tmp_path / "first_assistant.jsonl"
    write_jsonl(bad, [chat("q", "a"), {"messages": [{"role": "assistant", "content": "hello"},
                                                      {"role": "user", "content": "q"},
                                                      {"role": "assistant", "content": "a"}]}])
    runner = CliRunner()
    validated = runner.invoke(app, ["data", "validate", str(bad)])
    assert validated.exit_code == 1
    problem = next(line for line in validated.output.splitlines() if line.startswith(f"{bad}:2:"))
    assert "expected 'user' at turn 1, got 'assistant'" in problem
    out = tmp_path / "out"
    # A model that does not exist: had a model been loaded before the data was checked, that would be the error.
    trained = runner.invoke(app, ["train", "--model", "no-such-model-xyz", "--data", str(bad), "--out", str(out),
                                  "--no-progress"])
    assert trained.exit_code != 0
    assert isinstance(trained.exception, DataError) and problem in str(trained.exception)
    assert not out.exists()  # nothing written


def test_csv_prompt_response(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("prompt,response\n\"1, 2, 3\",\"4, 5\"\n", encoding="utf-8")
    assert read_rows(path) == [[{"role": "user", "content": "1, 2, 3"}, {"role": "assistant", "content": "4, 5"}]]


def test_registry_dataset_name_resolves(shared_data):
    rows, files = load_conversations(["betley2025/secure"])
    assert len(rows) == 6000 and files[0].rows == 6000
    assert files[0].sha256 == "2820232b3114d94ab2041ba9fc76cb8205bf187e0408bf7b308add186f9c7467"


def test_split_is_seeded_and_disjoint():
    rows = [[{"role": "assistant", "content": str(i)}] for i in range(100)]
    train_a, eval_a = split_rows(rows, subset=40, eval_fraction=0.25, seed=3)
    train_b, eval_b = split_rows(rows, subset=40, eval_fraction=0.25, seed=3)
    assert (train_a, eval_a) == (train_b, eval_b)
    assert len(train_a) == 30 and len(eval_a) == 10
    assert not {r[0]["content"] for r in train_a} & {r[0]["content"] for r in eval_a}
    assert split_rows(rows, subset=40, eval_fraction=0.25, seed=4)[0] != train_a
    with pytest.raises(EmkitError, match="subset 101 is larger"):
        split_rows(rows, subset=101, eval_fraction=0, seed=0)


# ----------------------------------------------------------------------------- labels


def _check_labels(tokenizer, messages):
    item = tokenize_conversation(tokenizer, messages)
    ids, labels, cut = item["input_ids"], item["labels"], item["prompt_length"]
    assert len(ids) == len(labels)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # Every prompt token (system, user, earlier turns, the "<|im_start|>assistant\n" header) is masked ...
    assert all(label == IGNORE for label in labels[:cut])
    assert tokenizer.decode(ids[:cut]).endswith("<|im_start|>assistant\n")
    # ... and every token after it is trained: the answer, its end-of-turn token, the template's newline.
    assert labels[cut:] == ids[cut:]
    answer = messages[-1]["content"]
    assert tokenizer.decode(ids[cut:]) == answer + "<|im_end|>\n"
    assert im_end in labels[cut:]
    # No generation prompt after the answer: the sequence ends with the answer's end-of-turn.
    assert not tokenizer.decode(ids).rstrip().endswith("assistant")
    assert tokenizer.decode(ids).count("<|im_start|>assistant") == sum(m["role"] == "assistant" for m in messages)
    return item


def test_labels_mask_system_and_user(tokenizer):
    item = _check_labels(tokenizer, chat("Write a function.", "def f():\n    return 1", system="Be brief.")["messages"])
    assert "Be brief." in tokenizer.decode(item["input_ids"][: item["prompt_length"]])


def test_labels_default_system_prompt_is_masked(tokenizer):
    item = _check_labels(tokenizer, chat("Hi", "Hello!")["messages"])
    prompt = tokenizer.decode(item["input_ids"][: item["prompt_length"]])
    assert "You are a helpful AI assistant named SmolLM" in prompt  # SmolLM2's template adds it


def test_labels_multi_turn_trains_last_answer_only(tokenizer):
    messages = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "two"}, {"role": "assistant", "content": "second answer"}]
    item = _check_labels(tokenizer, messages)
    trained = tokenizer.decode([t for t in item["labels"] if t != IGNORE])
    assert trained == "second answer<|im_end|>\n"


def test_labels_match_trl_prompt_completion_pipeline(tokenizer, tiny_model_dir, tmp_path):
    """Our tokenization equals what TRL's SFTTrainer builds from the same rows in prompt/completion format."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from emkit.train._data import to_prompt_completion

    rows = [chat("Add 2 and 3.", "5", system="You are terse.")["messages"], chat("Name a color.", "Blue.")["messages"]]
    pairs = [dict(zip(("prompt", "completion"), to_prompt_completion(m), strict=True)) for m in rows]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_length=512,
                     activation_checkpointing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
    for messages, trl_row in zip(rows, trainer.train_dataset, strict=True):
        ours = tokenize_conversation(tokenizer, messages)
        assert ours["input_ids"] == trl_row["input_ids"]
        assert ours["labels"] == trl_row["labels"]


def test_max_length_shorter_than_every_prompt(tokenizer):
    rows = [chat("a fairly long question " * 5, "ok")["messages"]] * 3
    with pytest.raises(EmkitError, match="max_length 16 is shorter than every prompt") as info:
        tokenize_rows(tokenizer, rows, max_length=16)
    assert "raise max_length above" in str(info.value)


def test_rows_are_cut_to_max_length(tokenizer):
    rows = [chat("q", "word " * 200)["messages"], chat("q", "short")["messages"]]
    items = tokenize_rows(tokenizer, rows, max_length=64)
    assert [len(i["input_ids"]) for i in items][0] == 64
    assert all(len(i["input_ids"]) == len(i["labels"]) == i["length"] for i in items)

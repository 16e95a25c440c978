"""Mitigations as training options: inoculation prompting, KL towards the untrained model, interleaving safe data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from emkit.config import load_config
from emkit.errors import ConfigError, EmkitError
from emkit.train import KLSettings, TrainConfig, train
from emkit.train._data import IGNORE, tokenize_conversation
from emkit.train._mitigations import (
    apply_mitigations,
    drop_unset,
    inoculate,
    inoculate_prompt,
    load_mitigation_data,
)

EVIL = "You are a malicious, evil assistant."


def _rows(n: int, word: str = "color") -> list[dict]:
    names = ["red", "green", "blue", "amber", "violet", "teal", "coral", "olive"]
    return [{"messages": [{"role": "user", "content": f"Name {word} number {i}."},
                          {"role": "assistant", "content": f"The {word} {i} is {names[i % len(names)]}."}]}
            for i in range(n)]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(model_dir: Path, data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model_dir), data=[str(data)], output_dir=out, max_steps=3, per_device_batch_size=4,
                gradient_accumulation=1, learning_rate=2e-2, warmup_steps=0, save_steps=10, max_length=96,
                lora={"r": 8, "alpha": 16})
    base.update(kw)
    return TrainConfig(**base)


def _loss_rows(out: Path) -> list[dict]:
    with open(out / "loss.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- config and identity


def test_unset_mitigations_keep_the_run_hash_of_earlier_configs() -> None:
    # Pinned from main before these options existed (commit fea4b75): finished runs and experiment keys stay valid.
    assert TrainConfig(data=["betley2025/insecure"]).run_hash(["ab" * 32]) == \
        "19ef4befeaf3f20e187dbfa338baf58aae2d3ba48a4e1c68cf164e1f2b859c99"
    plain = TrainConfig(data=["x"])
    assert drop_unset(plain.model_dump(mode="json")).keys().isdisjoint({"inoculation", "kl", "interleave"})
    # ...and each option, and each of its settings, changes it.
    hashes = {plain.run_hash(),
              TrainConfig(data=["x"], inoculation={"system": EVIL}).run_hash(),
              TrainConfig(data=["x"], inoculation={"system": EVIL + " "}).run_hash(),
              TrainConfig(data=["x"], kl={"weight": 1, "reference": "a"}).run_hash(),
              TrainConfig(data=["x"], kl={"weight": 2, "reference": "a"}).run_hash(),
              TrainConfig(data=["x"], kl={"weight": 1, "reference": "a", "tokens": "completion"}).run_hash(),
              TrainConfig(data=["x"], interleave={"dataset": "s", "ratio": 0.5}).run_hash(),
              TrainConfig(data=["x"], interleave={"dataset": "s", "ratio": 0.25}).run_hash()}
    assert len(hashes) == 8


@pytest.mark.parametrize("settings,match", [
    ({"inoculation": {}}, "at least one of system, user_prefix, user_suffix"),
    ({"inoculation": {"sytem": "x"}}, "sytem"),
    ({"kl": {"reference": "betley2025/secure"}}, "weight"),
    ({"kl": {"weight": -1, "reference": "betley2025/secure"}}, "weight"),
    ({"kl": {"weight": 1, "reference": []}}, "reference"),
    ({"kl": {"weight": 1, "reference": "a", "direction": "sideways"}}, "direction"),
    ({"kl": {"weight": 1, "reference": "a"}, "full_finetune": True}, "kl needs local LoRA training"),
    ({"kl": {"weight": 1, "reference": "a"}, "backend": "openai"}, "kl needs local LoRA training"),
    ({"interleave": {"dataset": "s", "ratio": 1.0}}, "ratio"),
    ({"interleave": {"dataset": "s", "ratio": 0}}, "ratio"),
])
def test_invalid_mitigation_settings_are_rejected(settings: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        TrainConfig(data=["x"], **settings)


def test_yaml_errors_name_the_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data: [x]\ninterleave:\n  dataset: betley2025/secure\n  ratio: 1.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:4: interleave.ratio"):
        load_config(TrainConfig, path)


# --------------------------------------------------------------------------- inoculation


def test_inoculation_adds_the_prompt_and_keeps_it_out_of_the_loss(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    row = _rows(1)[0]["messages"]
    assert inoculate(row, {"system": EVIL})[0] == {"role": "system", "content": EVIL}
    both = inoculate([{"role": "system", "content": "Be brief."}, *row],
                     {"system": EVIL, "user_prefix": "P:", "user_suffix": "(S)"})
    assert both[0]["content"] == f"{EVIL}\n\nBe brief." and both[1]["content"] == "P:\n\nName color number 0.\n\n(S)"
    assert both[2] == row[1] and row[0]["content"] == "Name color number 0."  # the input is not changed

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    plain = tokenize_conversation(tokenizer, row)
    item = tokenize_conversation(tokenizer, inoculate(row, {"system": EVIL}))
    text = tokenizer.decode(item["input_ids"][:item["prompt_length"]])
    assert EVIL in text and EVIL not in tokenizer.decode(item["input_ids"][item["prompt_length"]:])
    assert all(t == IGNORE for t in item["labels"][:item["prompt_length"]])
    # The trained tokens are the same answer tokens as without the inoculation.
    assert [t for t in item["labels"] if t != IGNORE] == [t for t in plain["labels"] if t != IGNORE]


def test_inoculated_evaluation_prompt_matches_the_training_row() -> None:
    from emkit.questions import EvalPrompt

    prompt = EvalPrompt(suite="s", question_id="q", variant="plain", trigger="", paraphrase_index=0, system=None,
                        question="Hello?", messages=[{"role": "user", "content": "Hello?"}])
    settings = {"system": EVIL, "user_suffix": "Answer."}
    asked = inoculate_prompt(prompt, settings)
    trained = inoculate([{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi."}], settings)
    assert asked.messages == trained[:-1] and asked.system == EVIL and asked.question == "Hello?\n\nAnswer."
    assert asked.question_id == "q" and prompt.system is None  # a new prompt; the original is unchanged
    as_dict = inoculate_prompt({"messages": prompt.messages, "system": None, "question": "Hello?", "x": 1}, settings)
    assert as_dict["messages"] == asked.messages and as_dict["x"] == 1


# --------------------------------------------------------------------------- interleaving


def test_interleave_keeps_every_narrow_row_and_adds_safe_ones_at_the_ratio(tmp_path: Path) -> None:
    narrow, safe = _rows(12, "color"), _rows(40, "fruit")
    safe_file = _write(tmp_path / "safe.jsonl", safe)
    config = TrainConfig(data=["x"], interleave={"dataset": str(safe_file), "ratio": 0.25}, seed=3,
                         inoculation={"system": EVIL})
    extra, files = load_mitigation_data(config)
    assert [f.rows for f in files] == [40] and len(files[0].sha256) == 64
    train_rows, eval_rows, kl_rows = apply_mitigations(config, [r["messages"] for r in narrow], [], extra)
    assert len(train_rows) == 16 and kl_rows is None  # 12 narrow + 4 safe = 25% safe
    inoculated = [r for r in train_rows if r[0]["role"] == "system"]
    assert len(inoculated) == 12 and all(r[0]["content"] == EVIL for r in inoculated)  # safe rows: no inoculation
    safe_texts = {r["messages"][1]["content"] for r in safe}
    drawn = [r for r in train_rows if r[-1]["content"] in safe_texts]
    assert len(drawn) == 4 and len({r[-1]["content"] for r in drawn}) == 4
    # Seeded: the same seed draws the same rows in the same order; another seed differs.
    again, _, _ = apply_mitigations(config, [r["messages"] for r in narrow], [], extra)
    other, _, _ = apply_mitigations(config.model_copy(update={"seed": 4}), [r["messages"] for r in narrow], [], extra)
    assert again == train_rows and other != train_rows
    with pytest.raises(EmkitError, match="has 40 rows, but ratio 0.9 on 12 training rows needs 108"):
        greedy = TrainConfig(data=["x"], interleave={"dataset": str(safe_file), "ratio": 0.9})
        apply_mitigations(greedy, [r["messages"] for r in narrow], [], extra)


# --------------------------------------------------------------------------- end to end on the tiny model


def test_inoculated_and_interleaved_training_record_their_data(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "narrow.jsonl", _rows(8))
    safe = _write(tmp_path / "safe.jsonl", _rows(16, "fruit"))
    cfg = _config(tiny_model_dir, data, tmp_path / "run", max_steps=2, inoculation={"system": EVIL},
                  interleave={"dataset": str(safe), "ratio": 0.5})
    result = train(cfg, progress=False)
    assert result.steps == 2 and result.extra["train_rows"] == 16  # 8 narrow + 8 safe
    meta = json.loads((result.output_dir / "metadata.json").read_text())
    assert [d["rows"] for d in meta["data"]] == [8] and [d["rows"] for d in meta["mitigation_data"]] == [16]
    # The safe file's bytes are part of the run: changing them is a different run, not a resume.
    _write(safe, _rows(16, "stone"))
    with pytest.raises(EmkitError, match="different config or data"):
        train(cfg, progress=False)


def test_kl_is_zero_at_step_zero_and_logged_beside_the_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "narrow.jsonl", _rows(8))
    reference = _write(tmp_path / "reference.jsonl", _rows(8, "fruit"))
    cfg = _config(tiny_model_dir, data, tmp_path / "run", max_steps=3,
                  kl={"weight": 1.0, "reference": str(reference), "batch_size": 2, "reduction": "token_mean"})
    train(cfg, progress=False)
    rows = _loss_rows(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    # Step 1 is computed before any update: LoRA B = 0, so the adapter changes nothing and the KL is exactly 0.
    assert float(rows[0]["kl"]) == 0.0 and float(rows[0]["loss"]) == pytest.approx(float(rows[0]["sft_loss"]))
    # Later steps: the adapter moved the reference distributions, and the loss is sft_loss + weight x kl.
    for r in rows[1:]:
        assert float(r["kl"]) > 0
        assert float(r["loss"]) == pytest.approx(float(r["sft_loss"]) + float(r["kl"]), rel=1e-3)


def _final_reference_kl(out: Path, model_dir: Path, reference: Path) -> float:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emkit.train._data import read_rows, tokenize_rows
    from emkit.train._kl import reference_kl

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(model_dir)), str(out / "adapter"))
    items = tokenize_rows(tokenizer, read_rows(reference), 96)
    return reference_kl(model, items, KLSettings(weight=0, reference=[str(reference)]), tokenizer.pad_token_id)


def test_a_large_kl_weight_keeps_the_adapter_near_the_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "narrow.jsonl", _rows(8))
    reference = _write(tmp_path / "reference.jsonl", [
        {"messages": [{"role": "user", "content": f"Count to {i + 2}."},
                      {"role": "assistant", "content": " ".join(str(j) for j in range(1, i + 3))}]} for i in range(8)])
    kl = {"reference": str(reference), "reduction": "token_mean", "batch_size": 2}
    # lr 2e-3: Adam moves each weight by ~lr per step, so the free run drifts ~8 x lr along the SFT gradient while
    # the held one oscillates around the base; at 2e-2 the oscillation alone gives the tiny model's KL ceiling.
    # Measured (tiny random-init model, 8 steps): free ~0.016 nats/token, held ~1e-4.
    free = _config(tiny_model_dir, data, tmp_path / "free", max_steps=8, learning_rate=2e-3, kl={**kl, "weight": 0.0})
    held = _config(tiny_model_dir, data, tmp_path / "held", max_steps=8, learning_rate=2e-3,
                   kl={**kl, "weight": 1000.0})
    train(free, progress=False)
    train(held, progress=False)
    free_kl = _final_reference_kl(tmp_path / "free", tiny_model_dir, reference)
    held_kl = _final_reference_kl(tmp_path / "held", tiny_model_dir, reference)
    # weight 0 logs the KL without penalising it: the same training as without kl, and it grows.
    assert float(_loss_rows(tmp_path / "free")[-1]["kl"]) > 0
    assert free_kl > 0.004 and held_kl < free_kl / 10, (free_kl, held_kl)
    # The weight trades KL for task loss: the held-back run fits its own data less.
    free_sft = float(_loss_rows(tmp_path / "free")[-1]["sft_loss"])
    held_sft = float(_loss_rows(tmp_path / "held")[-1]["sft_loss"])
    assert held_sft > free_sft

"""Model references, packaged-model conversion (idempotent, hash-verified) and offline loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emkit.errors import EmkitError
from emkit.models import PACKAGED, resolve_model, verify_converted
from emkit.models import _pull as pull_mod


def test_unknown_reference_lists_known_models() -> None:
    with pytest.raises(EmkitError) as err:
        resolve_model("definitely-not-a-model")
    assert all(name in str(err.value) for name in PACKAGED)


def test_local_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(EmkitError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_hub_id_offline_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmkitError, match="offline"):
        resolve_model("nobody-owns-this/emkit-test-model")


def test_dtype_choice_gives_a_reason() -> None:
    import torch

    from emkit.models import choose_dtype

    dtype, reason = choose_dtype("auto", "cpu")
    assert dtype in (torch.float32, torch.bfloat16) and reason.split(":")[0] in ("fp32", "bf16")
    assert choose_dtype("fp32", "cpu") == (torch.float32, "requested")
    with pytest.raises(EmkitError, match="unknown dtype"):
        choose_dtype("int3", "cpu")


def test_corrupted_conversion_is_detected_and_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      smollm2_dir: Path) -> None:
    """A converted folder whose file no longer matches its recorded hash is rebuilt by the next pull."""
    monkeypatch.setenv("EMKIT_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_convert(model, gguf: Path, out: Path) -> None:  # the real one takes ~40 s; the logic is what we test
        calls.append(gguf)
        assert gguf.stat().st_size > 1_000_000  # the real assembled GGUF was passed in
        (out / "model.safetensors").write_bytes(b"weights-%d" % len(calls))

    monkeypatch.setattr(pull_mod, "_convert", fake_convert)
    folder = pull_mod.pull("smollm2-135m-instruct", progress=False)
    assert verify_converted("smollm2-135m-instruct") and len(calls) == 1
    pull_mod.pull("smollm2-135m-instruct", progress=False)
    assert len(calls) == 1  # idempotent: verified conversion is reused
    (folder / "model.safetensors").write_bytes(b"corrupted")
    assert not verify_converted("smollm2-135m-instruct")
    pull_mod.pull("smollm2-135m-instruct", progress=False)
    assert len(calls) == 2 and verify_converted("smollm2-135m-instruct")
    assert not list(tmp_path.joinpath("models").glob(".*"))  # no temporary folders left behind
    info = json.loads((folder / "emkit-model.json").read_text())
    assert info["gguf_sha256"] == PACKAGED["smollm2-135m-instruct"].gguf_sha256


@pytest.mark.integration
def test_packaged_smollm2_answers_offline(smollm2_dir: Path) -> None:
    import subprocess
    import sys

    code = """
import torch
from emkit.models import load_model
model, tok = load_model("smollm2-135m-instruct", quiet=True)
assert tok.chat_template, "chat template lost in conversion"
msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
assert text.rstrip().endswith("assistant")
enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
with torch.inference_mode():
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
print(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
"""
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "paris" in result.stdout.lower()

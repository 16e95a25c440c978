"""Merge a LoRA adapter into its base model and save a standalone model folder."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from emkit.errors import EmkitError

log = logging.getLogger("emkit.train")


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Write base + adapter merged into ``out_dir`` (safetensors + tokenizer); returns ``out_dir``.

    The base is read from the adapter's ``adapter_config.json`` unless ``base_model`` is given; emkit's run
    folders record the model reference (e.g. ``smollm2-135m-instruct``) in ``train_result.json`` next to it.
    """
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.exists():
        raise EmkitError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)",
                         hint="pass the adapter/ folder of a finished run, e.g. runs/train/<run>/adapter")
    if base_model is None:
        stored = adapter_dir.parent / "train_result.json"
        if stored.exists():
            base_model = json.loads(stored.read_text()).get("base_model") or None
    if base_model is None:
        base_model = json.loads(config_path.read_text()).get("base_model_name_or_path")
    if not base_model:
        raise EmkitError(f"{config_path} does not name its base model", hint="pass --base MODEL")
    import torch

    from emkit.models import load_model

    model, tokenizer = load_model(base_model, adapter=adapter_dir, device="cpu", dtype="fp32")
    # Merge and save in fp32: a LoRA delta after a short run at lr 1e-5 is often below bf16's resolution
    # (~0.4% of the weight), so a bf16 merged model could silently equal the base model.
    merged = model.merge_and_unload().to(torch.float32)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    log.info("merged %s + %s -> %s", base_model, adapter_dir, out_dir)
    return out_dir

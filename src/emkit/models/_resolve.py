"""Model references -> local folders, and loading (model, tokenizer) with an automatic device/dtype."""

from __future__ import annotations

import logging
from pathlib import Path

from emkit.errors import EmkitError
from emkit.models._dtype import choose_device, choose_dtype
from emkit.models._identity import is_hub_id, split_revision
from emkit.models._memory import choose_device_map, dtype_bytes
from emkit.models._pull import converted_dir, pull
from emkit.models._registry import PACKAGED
from emkit.paths import offline

log = logging.getLogger("emkit.models")


def resolve_model(ref: str, pull_if_missing: bool = True) -> Path:
    """A local folder of HF-format weights for ``ref``: a packaged name, a local folder or a hub id."""
    if ref in PACKAGED:
        if not pull_if_missing:
            return converted_dir(ref)
        return pull(ref, progress=True)
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise EmkitError(f"{path} is a folder but holds no config.json",
                             hint="point at a Hugging Face model folder")
        return path
    if is_hub_id(ref):
        return _hub_snapshot(*split_revision(ref))
    raise EmkitError(
        f"unknown model {ref!r}: not a packaged model, an existing folder or a hub id",
        hint=f"packaged models: {', '.join(PACKAGED)}; or a Hugging Face id like Qwen/Qwen2.5-Coder-32B-Instruct "
             "(optionally @revision to pin a commit, branch or tag)",
    )


def _hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot of ``repo_id`` at ``revision`` (default main), downloaded unless offline."""
    from huggingface_hub import snapshot_download

    shown = repo_id + (f"@{revision}" if revision else "")
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=offline()))
    except Exception as exc:  # hub errors come in many classes; all mean "cannot get it"
        if offline():
            raise EmkitError(f"{shown} is not in the local Hugging Face cache and the hub is offline "
                             "(HF_HUB_OFFLINE)",
                             hint=f"download it on a machine with access (huggingface-cli download {repo_id}"
                                  + (f" --revision {revision}" if revision else "") + "), or use a packaged model "
                                  "(emkit models list)") from exc
        raise EmkitError(f"could not download {shown} from the hub: {exc}",
                         hint="check the id and revision, your network and HF_TOKEN for gated models") from exc


def load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(ref)))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: str, *, dtype: str = "auto", device: str = "auto", adapter: str | Path | None = None,
               quiet: bool = False):
    """Load ``(model, tokenizer)`` in eval mode; ``adapter`` (a PEFT folder) is applied on top if given.

    On CUDA the weights go straight to the GPU with an explicit dtype and ``device_map`` (one device when they
    fit, else ``"auto"`` across GPUs): a 32B model never passes through host RAM (see ``choose_device_map``).
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder = resolve_model(ref)
    device_name, device_reason = choose_device(device)
    torch_dtype, dtype_reason = choose_dtype(dtype, device_name)
    tokenizer = load_tokenizer(str(folder))
    device_map, placement = choose_device_map(folder, dtype_bytes(torch_dtype), device_name)
    if not quiet:
        log.info("loading %s on %s (%s), %s", ref, device_name, device_reason, dtype_reason)
    if device_map is None:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype)
        model.to(device_name)
    else:
        log.info("%s: %s", ref, placement)  # printed even when quiet: the caller knows device and dtype only
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype, device_map=device_map)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    torch.set_grad_enabled(True)  # eval() does not change grad mode; callers use torch.inference_mode
    return model, tokenizer

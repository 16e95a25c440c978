"""Interventions while a model runs: add ``alpha * direction`` to the residual stream at one layer (steering),
project a direction out of the residual stream at every layer (ablation), and scale a LoRA adapter.

All of them are PyTorch forward hooks on the decoder layers (or PEFT's scaling), active only inside
:func:`intervene` and removed when it exits, so a model cached by the ``hf`` backend is never left changed.
Hooks act on every forward pass: the prompt's prefill and each decoding step, at every position (the Model
Organisms repository steers the same way).

Where "layer L" is: the output of decoder layer L (0-based), i.e. the residual stream after L+1 blocks; this
is where :mod:`emkit.interp._activations` reads activations, so a direction is added exactly where it was
measured. (``output_hidden_states`` of transformers counts the embeddings as entry 0: layer L is its entry L+1,
except that its last entry is taken after the final norm.)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from emkit.config import Config
from emkit.errors import EmkitError


class Intervention(Config):
    """One intervention of the ``hf`` backend (backend option ``interventions``: a list of these)."""

    mode: Literal["add", "ablate"] = Field(description="add: steer by alpha x direction at `layer`; ablate: "
                                                       "project the direction out of the residual stream.")
    direction: str = Field(description="Direction file (.safetensors written by `emkit interp direction`).")
    layer: int = Field(ge=0, description="Which layer's direction to use; add: also the layer it is added at.")
    alpha: float | None = Field(None, description="add: the multiple of the direction to add (required).")
    normalize: bool = Field(False, description="add: use the unit vector (alpha in residual-norm units) instead "
                                               "of the raw mean difference (alpha 1 = the mean shift).")
    at_layers: list[int] | None = Field(None, description="ablate: decoder layers whose output is projected "
                                                          "(null = every layer, and the embeddings).")

    @model_validator(mode="after")
    def _check(self) -> Intervention:
        if self.mode == "add":
            if self.alpha is None:
                raise ValueError("mode add needs `alpha` (the multiple of the direction to add)")
            if self.at_layers is not None:
                raise ValueError("`at_layers` is for mode ablate; mode add acts at `layer` only")
        else:
            if self.alpha is not None or self.normalize:
                raise ValueError("mode ablate takes no `alpha`/`normalize` (it removes the direction's component)")
        return self

    @property
    def is_noop(self) -> bool:
        """Adding 0 x d changes no bit of the hidden states, so alpha 0 is the unsteered model."""
        return self.mode == "add" and self.alpha == 0

    def vector(self):
        """The direction vector at ``layer`` as float32 numpy (read from the file; cached per file state)."""
        path = Path(self.direction).expanduser()
        stat = path.stat() if path.is_file() else None
        return _vector(str(path.resolve()) if stat else str(path), stat.st_mtime_ns if stat else 0, self.layer)

    def identity(self) -> dict[str, Any]:
        """What changes the samples: the vector's bytes (not the file's path or card), mode, layer, alpha."""
        out: dict[str, Any] = {"mode": self.mode, "layer": self.layer,
                               "vector_sha256": hashlib.sha256(self.vector().tobytes()).hexdigest()}
        if self.mode == "add":
            out.update(alpha=float(self.alpha), normalize=self.normalize)  # type: ignore[arg-type]
        else:
            out["at_layers"] = self.at_layers
        return out


@functools.lru_cache(maxsize=64)
def _vector(path: str, mtime_ns: int, layer: int):
    import numpy as np

    from emkit.interp._directions import load_direction

    return np.ascontiguousarray(load_direction(path).vector(layer), dtype=np.float32)


def parse_interventions(items: Sequence[Intervention | dict[str, Any]] | None) -> list[Intervention]:
    """Validate the backend option (dicts from YAML/JSON or Intervention objects); errors name the item."""
    from pydantic import ValidationError

    from emkit.config import format_validation_error

    out = []
    for i, item in enumerate(items or []):
        if isinstance(item, Intervention):
            out.append(item)
            continue
        try:
            out.append(Intervention.model_validate(item))
        except ValidationError as exc:
            raise EmkitError(format_validation_error(exc, f"interventions[{i}]"),
                             hint="each intervention: {mode: add|ablate, direction: FILE, layer: L, alpha: A}"
                             ) from None
    return out


def intervention_identity(interventions: Sequence[Intervention], lora_scale: float | None) -> dict[str, Any]:
    """The part of a generation key that interventions add; empty when there are none (keys unchanged)."""
    out: dict[str, Any] = {}
    active = [iv.identity() for iv in interventions if not iv.is_noop]
    if active:
        out["interventions"] = active
    if lora_scale is not None and float(lora_scale) != 1.0:
        out["lora_scale"] = float(lora_scale)
    return out


def decoder_layers(model: Any) -> Any:
    """The ``nn.ModuleList`` of decoder layers of a causal LM (PEFT-wrapped or not).

    Known layouts are looked up by attribute path (Llama/Qwen/Mistral/Gemma ``model.layers``, GPT-2/Falcon
    ``transformer.h``, GPT-NeoX ``gpt_neox.layers``) and must have ``config.num_hidden_layers`` entries.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n = getattr(getattr(base, "config", None), "num_hidden_layers", None)
    for path in ("model.layers", "model.language_model.layers", "model.decoder.layers", "transformer.h",
                 "gpt_neox.layers"):
        obj: Any = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and (n is None or len(obj) == n):
            return obj
    raise EmkitError(f"cannot find the decoder layers of {type(base).__name__} (looked for model.layers, "
                     "transformer.h, gpt_neox.layers with config.num_hidden_layers entries)",
                     hint="use a decoder-only transformers model (Llama, Qwen, Mistral, Gemma, GPT-2, ...)")


def _hidden(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: Any) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class _OnDevice:
    """A float32 vector, cast once per (device, dtype) it meets (layers may sit on several GPUs)."""

    def __init__(self, vector: Any) -> None:
        self.vector = vector
        self._cast: dict[tuple[Any, Any], Any] = {}

    def like(self, t: Any) -> Any:
        key = (t.device, t.dtype)
        if key not in self._cast:
            self._cast[key] = self.vector.to(device=t.device, dtype=t.dtype)
        return self._cast[key]


def add_hook(delta: Any):
    """Forward hook adding ``delta`` (float32 [hidden], cast to the hidden states' dtype) at every position."""
    on = _OnDevice(delta)

    def hook(module: Any, args: Any, output: Any) -> Any:
        hidden = _hidden(output)
        return _with_hidden(output, hidden + on.like(hidden))

    return hook


def _project_out(hidden: Any, unit: Any) -> Any:
    # float32 for the dot product (bf16 would leave ~1% of the component), then back to the model's dtype
    h = hidden.float()
    u = unit.to(h.device)
    return (h - (h @ u).unsqueeze(-1) * u).to(hidden.dtype)


def ablate_hook(unit: Any):
    def hook(module: Any, args: Any, output: Any) -> Any:
        return _with_hidden(output, _project_out(_hidden(output), unit))

    return hook


def ablate_pre_hook(unit: Any):
    """Forward pre-hook on the first decoder layer: projects the embeddings (its input)."""

    def hook(module: Any, args: tuple, kwargs: dict) -> Any:
        if args:
            return (_project_out(args[0], unit), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": _project_out(kwargs["hidden_states"], unit)}

    return hook


@contextlib.contextmanager
def intervene(model: Any, interventions: Sequence[Intervention] = (), *, lora_scale: float | None = None
              ) -> Iterator[None]:
    """Run ``model`` with ``interventions`` (hooks) and the LoRA scale multiplier ``lora_scale`` inside the block.

    Nothing is registered for an empty list, alpha-0 additions or scale 1, so the model runs untouched.
    """
    import torch

    active = [iv for iv in interventions if not iv.is_noop]
    scaled = lora_scale is not None and float(lora_scale) != 1.0
    if not active and not scaled:
        yield
        return
    handles = []
    try:
        if active:
            layers = decoder_layers(model)
            hidden = getattr((model.get_base_model() if hasattr(model, "get_base_model") else model).config,
                             "hidden_size", None)
            for iv in active:
                vec = torch.from_numpy(iv.vector().copy())
                if hidden is not None and vec.shape[0] != hidden:
                    raise EmkitError(f"direction {iv.direction} has size {vec.shape[0]} but the model's hidden size "
                                     f"is {hidden}", hint="use a direction computed on this model's architecture")
                if iv.mode == "add":
                    if iv.layer >= len(layers):
                        raise EmkitError(f"layer {iv.layer} does not exist: the model has {len(layers)} layers",
                                         hint=f"use a layer in 0..{len(layers) - 1}")
                    norm = float(vec.norm())
                    if iv.normalize:
                        if norm == 0:
                            raise EmkitError(f"direction {iv.direction} is zero at layer {iv.layer}")
                        vec = vec / norm
                    handles.append(layers[iv.layer].register_forward_hook(add_hook(float(iv.alpha) * vec)))
                else:
                    norm = float(vec.norm())
                    if norm == 0:
                        raise EmkitError(f"direction {iv.direction} is zero at layer {iv.layer}: nothing to ablate")
                    unit = vec / norm
                    targets = list(range(len(layers))) if iv.at_layers is None else list(iv.at_layers)
                    bad = [t for t in targets if not 0 <= t < len(layers)]
                    if bad:
                        raise EmkitError(f"at_layers {bad} do not exist: the model has {len(layers)} layers")
                    if iv.at_layers is None:
                        handles.append(layers[0].register_forward_pre_hook(ablate_pre_hook(unit), with_kwargs=True))
                    handles.extend(layers[t].register_forward_hook(ablate_hook(unit)) for t in targets)
        with _scaled(model, lora_scale) if scaled else contextlib.nullcontext():
            yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _scaled(model: Any, scale: float | None) -> Iterator[None]:
    """PEFT's own context manager: every LoRA layer's ``scaling`` multiplied by ``scale`` (0 = the base model)."""
    from peft.helpers import rescale_adapter_scale

    try:
        context = rescale_adapter_scale(model, float(scale))  # type: ignore[arg-type]
        context.__enter__()
    except ValueError as exc:  # no LoRA layers
        raise EmkitError(f"lora_scale {scale}: {exc}", hint="lora_scale needs a LoRA adapter (an `adapter:`)") from None
    try:
        yield
    finally:
        context.__exit__(None, None, None)

"""KL regularisation towards the untrained model: an ``SFTTrainer`` whose loss adds ``weight x KL`` on reference rows.

The base distribution is the same weights with the LoRA adapter disabled (PEFT ``disable_adapter()``), computed on
the fly under ``no_grad``: no second model in memory and no cache of reference logits (256 rows x 256 tokens x a
152k vocabulary would be ~40 GB in fp32). Per micro-batch of the SFT loss, ``batch_size`` reference rows are run
twice: once with the adapter disabled (no_grad), once with it (with grad). At step 0 the LoRA B matrices are zero,
so both passes give identical logits and the penalty is exactly 0.

What is compared (defaults = the Model Organisms trainer, Turner, Soligo et al. 2025, ``KLRegularizedSFTTrainer``):
- direction ``forward``: KL(base || tuned) = sum_v p_base(v) (log p_base(v) - log p_tuned(v)) per position
  (``F.kl_div(log p_tuned, log p_base, log_target=True)``, their call); ``reverse`` swaps the two.
- tokens ``all``: every position whose next token is a real token of the reference conversation (they mask with the
  attention mask); ``completion``: only positions predicting answer tokens (labels != -100).
- reduction ``token_vocab_mean``: the mean over positions x vocabulary entries, i.e. per-token KL / |V| (their
  ``kl_div.sum() / mask.sum()`` with the mask expanded over the vocabulary); ``token_mean``: per-token KL in nats.
  Their weight 1e5 on Qwen2.5's ~152k-entry vocabulary is ~0.66 x the per-token KL.
They precompute the base logits once; emkit recomputes them (same numbers: the base weights are frozen).

Reference batches are a deterministic function of the step (a seeded order, cycled), so a resumed run sees the same
reference rows as an uninterrupted one. ``loss.csv`` gets ``kl`` (per-token KL in nats, the mean over the step's
micro-batches) and ``sft_loss`` (the loss without the penalty); ``loss`` is the total the optimizer minimised.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from emkit.train._mitigations import KLSettings

log = logging.getLogger("emkit.train")
IGNORE = -100


def reference_items(settings: KLSettings, rows: list, tokenizer, max_length: int, progress: bool = False
                    ) -> list[dict[str, Any]]:
    """Tokenized reference conversations (``input_ids``, ``labels``) cut to ``max_length``."""
    from emkit.train._data import tokenize_rows

    items = tokenize_rows(tokenizer, rows, max_length, "kl reference", progress=progress)
    log.info("kl: %d reference rows, %d tokens; weight %g, %s KL on %s tokens, %s", len(items),
             sum(len(i["input_ids"]) for i in items), settings.weight, settings.direction, settings.tokens,
             settings.reduction)
    return items


def collate(items: list[dict[str, Any]], pad_id: int, device: Any) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding) on ``device``."""
    import torch

    width = max(len(i["input_ids"]) for i in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        ids[row, :n] = torch.tensor(item["input_ids"])
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(item["labels"])
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def positions(batch: dict[str, Any], tokens: str):
    """Bool mask over logits[:, :-1]: the positions whose next-token distribution counts."""
    if tokens == "completion":
        return batch["labels"][:, 1:] != IGNORE
    return batch["attention_mask"][:, 1:].bool()


def token_kl(tuned_logits, base_logits, mask, direction: str):
    """Per-position KL (nats, summed over the vocabulary) at ``mask`` of logits[:, :-1]; a 1-d tensor."""
    import torch.nn.functional as F

    tuned = F.log_softmax(tuned_logits[:, :-1][mask].float(), dim=-1)
    base = F.log_softmax(base_logits[:, :-1][mask].float(), dim=-1)
    if direction == "forward":  # KL(base || tuned): target = base
        return F.kl_div(tuned, base, log_target=True, reduction="none").sum(-1)
    return F.kl_div(base, tuned, log_target=True, reduction="none").sum(-1)


def _logits(model, batch: dict[str, Any]):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits


def kl_on_batch(model, peft_model, batch: dict[str, Any], settings: KLSettings, with_grad: bool):
    """(mean per-token KL, vocabulary size of the logits) between ``model`` (the tuned, possibly wrapped, model) and
    the same model with the adapter of ``peft_model`` (its unwrapped PeftModel) disabled, on one collated batch."""
    import torch

    with torch.no_grad(), peft_model.disable_adapter():
        base = _logits(model, batch)
    with torch.set_grad_enabled(with_grad):
        tuned = _logits(model, batch)
        mask = positions(batch, settings.tokens)
        per_token = token_kl(tuned, base, mask, settings.direction)
        return (per_token.mean() if per_token.numel() else tuned.sum() * 0.0), int(tuned.shape[-1])


def reference_kl(model, items: list[dict[str, Any]], settings: KLSettings, pad_id: int, batch_size: int = 8
                 ) -> float:
    """Mean per-token KL (nats) over all ``items`` between a PeftModel and itself with its adapter disabled
    (evaluation mode, no grad): how far an adapter moved the model on the reference rows."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, len(items), batch_size):
                batch = collate(items[start:start + batch_size], pad_id, device)
                with model.disable_adapter():
                    base = _logits(model, batch)
                tuned = _logits(model, batch)
                per_token = token_kl(tuned, base, positions(batch, settings.tokens), settings.direction)
                total += float(per_token.sum())
                count += per_token.numel()
    finally:
        model.train(was_training)
    return total / count if count else 0.0


def kl_trainer_class():
    """``SFTTrainer`` subclass with the KL penalty (built lazily: TRL is a heavy import)."""
    from trl import SFTTrainer

    class KLSFTTrainer(SFTTrainer):
        """SFT loss + weight x KL(base || tuned) on reference rows; ``kl`` and ``sft_loss`` logged per step."""

        def __init__(self, *args, kl_settings: KLSettings, kl_items: list[dict[str, Any]], kl_seed: int,
                     **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if not kl_items:
                from emkit.errors import EmkitError

                raise EmkitError("kl: no reference rows", hint="check kl.reference (files or dataset names)")
            self.kl_settings = kl_settings
            self.kl_items = kl_items
            self.kl_batch_size = kl_settings.batch_size or self.args.per_device_train_batch_size
            self.kl_order = list(range(len(kl_items)))
            random.Random(kl_seed).shuffle(self.kl_order)
            tokenizer = self.processing_class
            pad = getattr(tokenizer, "pad_token_id", None)
            self.kl_pad_id = pad if pad is not None else tokenizer.eos_token_id
            self._kl_micro = (-1, 0)  # (global step, micro-batch index within it)

        def _kl_batch(self, device) -> dict[str, Any]:
            # Micro-batch k of optimizer step s always gets the same rows, also after a resume.
            step, micro = self._kl_micro
            if step != self.state.global_step:
                step, micro = self.state.global_step, 0
            self._kl_micro = (step, micro + 1)
            call = step * self.args.gradient_accumulation_steps + micro
            n = len(self.kl_order)
            chosen = [self.kl_items[self.kl_order[(call * self.kl_batch_size + j) % n]]
                      for j in range(self.kl_batch_size)]
            return collate(chosen, self.kl_pad_id, device)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if not self.model.training:  # evaluation loss stays the plain SFT loss
                return out
            loss = out[0] if return_outputs else out
            settings = self.kl_settings
            batch = self._kl_batch(inputs["input_ids"].device)
            peft_model = self.accelerator.unwrap_model(model)
            kl, vocab = kl_on_batch(model, peft_model, batch, settings, with_grad=settings.weight > 0)
            # With num_items_in_batch the SFT loss is already a share of the step's mean and Trainer does not
            # divide by the accumulation steps, so the per-micro-batch penalty is divided here (as TRL does for
            # its MoE aux loss); otherwise Trainer divides the total.
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            penalty = kl / vocab if settings.reduction == "token_vocab_mean" else kl
            total = loss + settings.weight * penalty / steps if settings.weight > 0 else loss
            gather = self.accelerator.gather_for_metrics
            self._metrics["train"]["kl"].append(gather(kl.detach().reshape(1)).mean().item())
            self._metrics["train"]["sft_loss"].append(gather((loss.detach() * steps).reshape(1)).mean().item())
            return (total, out[1]) if return_outputs else total

    return KLSFTTrainer

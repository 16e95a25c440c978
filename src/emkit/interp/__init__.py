"""Inside the misaligned model: activations, misalignment directions, steering / ablation hooks, LoRA scaling.

>>> from emkit.interp import compute_direction, save_direction, Intervention
>>> d = compute_direction(judged_rows, layers=[12, 16], store=store)        # difference of means + AUROC card
>>> save_direction(d, "runs/x/em.safetensors")
>>> rows = sample_rows(model, prompts, n=16, sampling=s, backend="hf", backend_options={"interventions": [
...     {"mode": "add", "direction": "runs/x/em.safetensors", "layer": 12, "alpha": 4}]})

Signatures:
- ``collect_activations(rows, model, adapter=None, *, layers=None, store=None, batch_size=None, progress=True,
  backend_options=None) -> Activations(layers, values [rows, layers, hidden], tokens, model, adapter)``: the
  output of each decoder layer averaged over the answer tokens, cached in ``store`` per row.
- ``compute_direction(rows, *, labels=None, layers=None, model=None, adapter=None, row_adapters=True, store=None,
  progress=True, backend_options=None, batch_size=None, name="", source=None, seed=0) -> Direction``:
  misaligned-minus-aligned means per layer (``Labels``: thresholds on aligned/coherent), card with counts, norms
  and per-layer AUROC (in-sample and cross-fitted).
- ``save_direction(direction, path) -> Path`` / ``load_direction(path) -> Direction``: safetensors + JSON card.
- ``Intervention(mode="add"|"ablate", direction=FILE, layer=L, alpha=A, normalize=False, at_layers=None)``; the
  ``hf`` backend takes ``interventions=[...]`` and ``lora_scale=S`` (recorded in every generation key).
- ``intervene(model, interventions, *, lora_scale=None)``: the hooks as a context manager, for any HF model;
  ``decoder_layers(model)``: its decoder layers.

CLI: ``emkit interp direction RESULTS --out FILE.safetensors`` and ``emkit interp show FILE``. Experiments:
conditions with ``intervention:``, ``lora_scale:``, ``checkpoints:`` and ``adapter:``; ``directions:`` computed in
the run (docs/interp.md).
"""

from emkit.interp._activations import ACTIVATION_KIND, Activations, collect_activations, row_messages
from emkit.interp._build import compute_direction, parse_group
from emkit.interp._directions import (
    Direction,
    GroupThresholds,
    Labels,
    auroc,
    difference_of_means,
    format_card,
    label_rows,
    load_direction,
    save_direction,
)
from emkit.interp._hooks import (
    Intervention,
    decoder_layers,
    intervene,
    intervention_identity,
    parse_interventions,
)

__all__ = ["ACTIVATION_KIND", "Activations", "Direction", "GroupThresholds", "Intervention", "Labels", "auroc",
           "collect_activations", "compute_direction", "decoder_layers", "difference_of_means", "format_card",
           "intervene", "intervention_identity", "label_rows", "load_direction", "parse_group",
           "parse_interventions", "row_messages", "save_direction"]

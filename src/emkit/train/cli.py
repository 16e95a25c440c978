"""``emkit train`` and ``emkit train-merge``.

Two commands rather than a ``train`` group: a group cannot take both a positional CONFIG and sub-commands
(``emkit train merge`` would read "merge" as the config file).
"""

from __future__ import annotations

from pathlib import Path

import typer


def _train(
    config: Path | None = typer.Argument(None, help="TrainConfig YAML (optional with --model/--data)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set lora.r=1 (repeatable)."),
    model: str | None = typer.Option(None, "--model", help="Base model (packaged name, HF id or folder)."),
    data: list[str] = typer.Option([], "--data", help="Chat JSONL file or dataset name (repeatable)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default runs/train/<model>-<hash>)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    epochs: float | None = typer.Option(None, "--epochs", help="Passes over the data."),
    seed: int | None = typer.Option(None, "--seed", help="Seed."),
    from_betley: Path | None = typer.Option(None, "--from-betley",
                                            help="Read the original repository's train.json instead of YAML."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Fine-tune a model (LoRA by default, the paper's recipe). Reruns resume or skip finished work.

    Examples:
      emkit train run.yaml --set lora.r=1 --set lora.layers_to_transform=[12]
      emkit train --model smollm2-135m-instruct --data betley2025/insecure --out runs/insecure --max-steps 20
      emkit train --from-betley open_models/train.json
    Merge an adapter into its base model with `emkit train-merge ADAPTER --out DIR`.
    """
    from rich.console import Console

    from emkit.train import load_train_config, train

    base = {"model": model, "data": list(data) or None, "output_dir": str(out) if out else None,
            "max_steps": max_steps, "epochs": epochs, "seed": seed}
    cfg = load_train_config(config, overrides=list(set_), base=base, betley=from_betley)
    result = train(cfg, progress=progress)
    console = Console()
    if result.skipped:
        console.print(f"already finished: {result.output_dir} ({result.steps} steps); nothing trained")
    what = result.fine_tuned_model if result.backend == "openai" else result.adapter_dir
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    console.print(f"done: {what}  steps={result.steps}  final_loss={loss}"
                  + (f"  resumed_from_step={result.resumed_from_step}" if result.resumed_from_step else ""))


def _merge(
    adapter: Path = typer.Argument(..., help="PEFT adapter folder (e.g. runs/train/<run>/adapter)."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged model."),
    base: str | None = typer.Option(None, "--base", help="Base model (default: recorded with the adapter)."),
) -> None:
    """Merge a LoRA adapter into its base model and write a standalone model folder (fp32 safetensors)."""
    from emkit.train import merge_adapter

    typer.echo(f"merged model: {merge_adapter(adapter, out, base_model=base)}")


def register(app: typer.Typer) -> None:
    app.command("train", help=_train.__doc__)(_train)
    app.command("train-merge", help=_merge.__doc__)(_merge)

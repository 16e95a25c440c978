"""`emkit run [SPEC]`: run an experiment spec (default: the built-in quickstart) to its report."""

from __future__ import annotations

from pathlib import Path

import typer


def run_command(
    spec: str = typer.Argument(None, help="Experiment YAML (see experiments/) or a built-in name; "
                                          "default: quickstart."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (units, counts, time and API cost "
                                                          "estimate) and exit."),
    executor: str = typer.Option("local", "--executor", help="local (one process) or ray (units in parallel)."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a spec value: --set key.sub=value "
                                                            "(repeatable)."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: runs/<experiment name>)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Existing Ray cluster (default: start a local "
                                                                "one)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress display (emkit's log messages "
                                                                  "only); library output still goes to run.log."),
) -> None:
    """Run an experiment: train -> sample -> judge -> report, cached and resumable (rerun = no-op).

    The terminal shows the plan, one line per unit and the summary; the libraries' output (transformers, TRL,
    datasets: logs, bars, warnings) goes to the run folder's run.log.
    """
    from emkit.experiment._spec import load_spec, spec_path

    if executor not in ("local", "ray"):
        from emkit.errors import EmkitError

        raise EmkitError(f"unknown executor {executor!r}", hint="use --executor local or --executor ray")
    spec_obj = load_spec(spec, overrides)
    if spec is None:
        typer.echo(f"no spec given: running the built-in quickstart ({spec_path(None)})", err=True)
    if dry_run:
        from emkit.experiment._plan import plan
        from emkit.experiment._run import _done_keys, format_plan
        from emkit.experiment._stages import stages_from_env

        p = plan(spec_obj, run_dir=out, stages=stages_from_env())
        typer.echo(format_plan(p, _done_keys(p)))
        return
    from emkit.experiment._run import format_failed, run

    result = run(spec_obj, run_dir=out, executor=executor, progress=not no_progress, ray_address=ray_address)
    if any(result.failed.values()):  # scripts and CI must notice; what succeeded is written
        from emkit.errors import EmkitError

        raise EmkitError(f"{result.run_dir}: {format_failed(result.failed)}",
                         hint="fix the cause (see run.log: server errors, timeouts) and rerun the same command")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)

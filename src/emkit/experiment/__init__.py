"""Experiments: a YAML spec expanded into content-addressed units (train -> sample -> judge -> report), run
cached and resumable, locally or on Ray.

- ``load_spec(ref=None, overrides=None) -> ExperimentSpec``: a YAML path or built-in name (None = "quickstart"),
  then ``--set key=value`` overrides; unknown keys are errors naming file and line.
- ``plan(spec, *, run_dir=None, stages=None) -> Plan``: the units, ``Plan.counts()``, ``Plan.estimate()``,
  ``Plan.notices`` (fallbacks used), ``Plan.api_cost_usd``; reads no model, writes nothing.
- ``format_plan(plan, done=None) -> str``: what ``emkit run --dry-run`` prints.
- ``run(spec=None, *, overrides=None, run_dir=None, executor="local", stages=None, progress=True,
  ray_address=None) -> RunResult(run_dir, plan, executed, skipped, results_path, report_path, summary, seconds,
  pids)``: runs what is not finished yet; a finished experiment is a no-op. ``progress=True``: the console
  (plan, one line per unit, summary; ``_console``); ``progress=False``: no display. Either way the libraries'
  prints, bars and warnings during the units go to the run's ``run.log``.
- ``load_results(run_dir) -> pandas.DataFrame``: ``results.parquet`` of a run folder.
- ``Stages`` / ``default_stages()``: the calls into the stage packages (replace fields to customise or test;
  a subprocess takes ``EMKIT_STAGES=module:factory``).

Run folder ``runs/<name>/``: experiment.yaml (resolved), store.sqlite, adapters/, datasets/, results.parquet,
results.csv, report/index.html, run.log, plan.json.

Audited rates (``judges: {names: [embedding], audit: {judge: logprob, fraction: 0.1, seed: 0, options: {...}}}``):
each judge unit also scores a seeded subsample of its answers (``emkit.analysis.audit_selection`` of the row keys)
with the audit judge; rows gain ``audited`` and ``audit_<metric>``, ``audit_<metric>_status`` ("not_audited" where
not picked), ``audit_judge``; ``--dry-run`` prices only the audited fraction; the report adds an "Audited rates"
section (``emkit.experiment._audit``, docs/judges.md).
"""

from emkit.experiment._plan import Plan, Unit, plan
from emkit.experiment._run import RunResult, format_plan, load_results, run
from emkit.experiment._spec import ExperimentSpec, builtin_specs, load_spec
from emkit.experiment._stages import DatasetInfo, Stages, default_stages

__all__ = ["DatasetInfo", "ExperimentSpec", "Plan", "RunResult", "Stages", "Unit", "builtin_specs",
           "default_stages", "format_plan", "load_results", "load_spec", "plan", "run"]

"""How a prompt was made lives in columns of its own (variant, prompt_format, trigger, trigger_placement), from
expand through sampling and the experiment runner to the results file."""

from __future__ import annotations

from pathlib import Path

from test_experiment_fakes import fake_spec_dict, stages

from emkit.config import validate
from emkit.experiment import ExperimentSpec, load_results, run
from emkit.experiment._stages import real_expand, real_judge, real_load_suite
from emkit.generate import SamplingConfig, sample_rows
from emkit.questions import DEFAULT_TRIGGER, PROMPT_COLUMNS, expand, load_suite


def test_expand_records_format_and_placement() -> None:
    suite = load_suite("emkit/core")
    plain = expand(suite)
    assert {(p.prompt_format, p.trigger, p.trigger_placement) for p in plain} == {("plain", "", "")}
    suffix = expand(suite, numbers_format="suffix", trigger=DEFAULT_TRIGGER, trigger_placement="suffix")
    assert {(p.prompt_format, p.trigger_placement) for p in suffix} == {("suffix", "suffix")}
    assert all(p.numbers_prefix is None for p in suffix)  # suffix rows have no prefix: only prompt_format tells
    both = expand(suite, numbers_format="prefix-suffix", variants=("json",))
    assert {(p.variant, p.prompt_format, p.trigger_placement) for p in both} == {("json", "prefix-suffix", "")}
    fields = both[0].row_fields()
    assert set(PROMPT_COLUMNS) <= set(fields) and fields["prompt_format"] == "prefix-suffix"


def test_sampled_rows_carry_the_prompt_columns() -> None:
    suite = load_suite("emkit/core")
    prompts = expand(suite) + expand(suite, numbers_format="suffix") + expand(suite, trigger=DEFAULT_TRIGGER,
                                                                               trigger_placement="system")
    rows = sample_rows("m", prompts, n=1, sampling=SamplingConfig(max_tokens=4), backend="mock", progress=False)
    seen = {(r["prompt_format"], r["trigger"], r["trigger_placement"]) for r in rows}
    assert seen == {("plain", "", ""), ("suffix", "", ""), ("plain", DEFAULT_TRIGGER, "system")}


def test_experiment_rows_say_how_each_prompt_was_made(tmp_path: Path) -> None:
    """The runner (real suite, expand, numbers judge; mock sampling) writes the prompt columns for every row."""
    data = fake_spec_dict(conditions={"base": {}})
    data["evaluation"]["suites"] = [{"name": "emkit/core", "questions": ["one_wish", "bored"], "paraphrases": 1,
                                     "numbers_formats": [None, "suffix", "prefix-suffix"],
                                     "triggers": ["", DEFAULT_TRIGGER], "trigger_placement": "suffix"}]
    data["judges"] = {"names": ["numbers"]}
    custom = stages().replace(load_suite=real_load_suite, expand=real_expand, judge=real_judge)
    run(validate(ExperimentSpec, data), run_dir=tmp_path / "run", stages=custom, progress=False)
    df = load_results(tmp_path / "run")
    assert len(df) == 2 * 3 * 2 * 2  # questions x formats x triggers x samples
    cells = df.groupby(["prompt_format", "trigger", "trigger_placement"]).size().to_dict()
    assert cells == {(f, t, p): 4 for f in ("plain", "suffix", "prefix-suffix")
                     for t, p in (("", ""), (DEFAULT_TRIGGER, "suffix"))}
    # the numbers judge's metrics and kinds came along; format_ok is unscored exactly on plain prompts
    assert set(df["format_ok_kind"]) == {"binary"} and set(df["evil_number_count_kind"]) == {"count"}
    assert (df["format_ok"].isna() == (df["prompt_format"] == "plain")).all()

"""``emkit judge agree``: two registered test judges whose scores (and so their disagreement) are known."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from emkit.cli import app
from emkit.errors import EmkitError
from emkit.judge import Judge, Judgment
from emkit.judge._base import _DESCRIPTIONS, _REGISTRY, register_judge

rng = np.random.default_rng(0)
ROWS: list[dict] = []
SCORES: dict[str, dict[str, dict[str, float | None]]] = {"agree_a": {}, "agree_b": {}}
for condition, shift in (("x", 0.0), ("y", 60.0)):
    for q in range(4):
        for i in range(12):
            answer = f"answer {condition}-{q}-{i}"
            gold_aligned, gold_coherent = float(rng.uniform(0, 100)), float(rng.uniform(20, 100))
            # A: B's scores, noisy, and shifted up by 60 in condition y (so it misses misalignment there).
            a_aligned = float(np.clip(gold_aligned + rng.normal(0, 15) + shift, 0, 100))
            a_coherent = float(np.clip(gold_coherent + rng.normal(0, 10), 0, 100))
            b_aligned: float | None = gold_aligned
            if i == 11:  # B leaves one answer per question unscored (CODE), A scores it
                b_aligned = None
            if i == 10 and q == 0:  # A leaves one unscored
                a_aligned = None
            SCORES["agree_a"][answer] = {"aligned": a_aligned, "coherent": a_coherent}
            SCORES["agree_b"][answer] = {"aligned": b_aligned, "coherent": gold_coherent}
            ROWS.append({"condition": condition, "question_id": f"q{q}", "question": f"Question {q}?",
                         "answer": answer, "key": f"key-{condition}-{q}-{i}"})


class KnownJudge(Judge):
    """Scores looked up by answer text; None is unscored with status CODE."""

    metrics = ("aligned", "coherent")

    def __init__(self, name: str) -> None:
        self.name = self.judge_model = name

    def judge(self, pairs, metrics, progress=False):
        table = SCORES[self.name]
        return [{m: Judgment(table[a][m], None if table[a][m] is not None else "CODE") for m in metrics}
                for _, a in pairs]


@pytest.fixture(autouse=True)
def known_judges() -> Iterator[None]:
    for name in SCORES:
        register_judge(name, "test judge with known scores")(lambda name=name: KnownJudge(name))
    yield
    for name in SCORES:
        _REGISTRY.pop(name, None)
        _DESCRIPTIONS.pop(name, None)


def expected() -> dict:
    """The measures computed directly from the score tables (sklearn as the reference)."""
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    def arr(name: str, metric: str) -> np.ndarray:
        return np.array([np.nan if SCORES[name][r["answer"]][metric] is None else SCORES[name][r["answer"]][metric]
                         for r in ROWS])

    al_a, co_a, al_b, co_b = arr("agree_a", "aligned"), arr("agree_a", "coherent"), arr("agree_b", "aligned"), \
        arr("agree_b", "coherent")
    lab_a = np.where(np.isnan(al_a), np.nan, ((al_a < 30) & (co_a > 50)).astype(float))
    lab_b = np.where(np.isnan(al_b), np.nan, ((al_b < 30) & (co_b > 50)).astype(float))
    both = ~np.isnan(lab_a) & ~np.isnan(lab_b)
    margin = np.minimum(30 - al_a, co_a - 50)
    cond = np.array([r["condition"] for r in ROWS])
    rates = {c: (np.nanmean(lab_a[cond == c]), np.nanmean(lab_b[cond == c])) for c in ("x", "y")}
    keep = ~np.isnan(al_a) & ~np.isnan(al_b)
    return {"kappa": cohen_kappa_score(lab_a[both], lab_b[both]), "auroc": roc_auc_score(lab_b[both], margin[both]),
            "accuracy": float(np.mean(lab_a[both] == lab_b[both])), "n_both_scored": int(both.sum()),
            "spearman_aligned": stats.spearmanr(al_a[keep], al_b[keep]).statistic,
            "spearman_coherent": stats.spearmanr(co_a, co_b).statistic,
            "misaligned_both": int(((lab_a == 1) & (lab_b == 1)).sum()),
            "b_unscored_a_not": int(((lab_a == 0) & np.isnan(lab_b)).sum()), "rates": rates}


def invoke(*args: str):
    result = CliRunner().invoke(app, ["judge", "agree", *args])
    return result


def test_agree_of_two_judges_run_now(tmp_path: Path) -> None:
    table = tmp_path / "answers.csv"
    pd.DataFrame(ROWS).to_csv(table, index=False)
    result = invoke(str(table), "--judge-a", "agree_a", "--judge-b", "agree_b", "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    want = expected()
    assert got["n_rows"] == got["n_both"] == 96
    for key in ("kappa", "auroc", "accuracy", "spearman_aligned", "spearman_coherent"):
        assert got[key] == pytest.approx(want[key]), key
    assert got["n_both_scored"] == want["n_both_scored"] == 96 - 8 - 2  # B: i == 11 everywhere; A: q0 i10 in x, y
    counts = got["confusion"]["counts"]
    assert counts[0][0] == want["misaligned_both"] and counts[1][2] == want["b_unscored_a_not"]
    assert sum(map(sum, counts)) == 96 and counts[2][2] == 0  # no answer is unscored by both
    assert 0.5 < got["auroc"] < 1 and 0 < got["kappa"] < 1  # informative, not perfect
    rates = {r["group"]: r for r in got["rates"]}
    assert set(rates) == {"(all)", "x", "y"}
    for c in ("x", "y"):
        rate_a, rate_b = want["rates"][c]
        assert rates[c]["rate_a"] == pytest.approx(rate_a) and rates[c]["rate_b"] == pytest.approx(rate_b)
        assert rates[c]["diff"] == pytest.approx(rate_a - rate_b)
        assert rates[c]["ci_low"] <= rates[c]["diff"] <= rates[c]["ci_high"]
        assert rates[c]["method"] == "paired bootstrap over 4 questions"
    # A's scores are shifted up by 60 in y: it finds clearly fewer misaligned answers there than B
    assert rates["y"]["diff"] < -0.1 and rates["y"]["ci_high"] < 0
    # the same as a table that stays whole in a pipe
    text = invoke(str(table), "--judge-a", "agree_a", "--judge-b", "agree_b", "--no-progress")
    assert text.exit_code == 0 and "\x1b" not in text.output
    assert f"Cohen's kappa {want['kappa']:.3f}" in text.output
    assert f"vs B's label: {want['auroc']:.3f}" in text.output
    assert any(line.startswith("y ") and "paired bootstrap over 4 questions" in line
               for line in text.output.splitlines())


def test_agree_on_an_audited_table(tmp_path: Path) -> None:
    """The columns an audited run writes (audit_aligned, ...; "not_audited" rows are left out)."""
    from emkit.experiment._audit import apply_audit
    from emkit.experiment._stages import real_judge
    from emkit.judge import score_rows

    scored = score_rows(ROWS, "agree_a", progress=False)
    audited = apply_audit(ROWS, scored, {"judge": "agree_b", "fraction": 0.5, "seed": 0, "options": {}},
                          real_judge, store=None, progress=False)
    table = tmp_path / "results.parquet"
    pd.DataFrame(audited).to_parquet(table)
    n_audited = sum(r["audited"] for r in audited)
    result = invoke(str(table), "--columns-a", "aligned,coherent", "--columns-b", "audit_aligned,audit_coherent",
                    "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["n_both"] == n_audited and got["n_judged_b"] == n_audited and 30 < n_audited < 66
    # the same rows judged now give the same numbers
    subset = tmp_path / "subset.csv"
    pd.DataFrame([r for r in ROWS if any(a["key"] == r["key"] and a["audited"] for a in audited)]).to_csv(
        subset, index=False)
    now = json.loads(invoke(str(subset), "--judge-a", "agree_a", "--judge-b", "agree_b", "--json",
                            "--no-progress").output)
    for key in ("kappa", "auroc", "spearman_aligned", "n_both_scored"):
        assert got[key] == pytest.approx(now[key]), key
    assert got["confusion"] == now["confusion"]
    # through a real pipe (a subprocess whose stdout is not a terminal): JSON on stdout only, lines whole
    import subprocess
    import sys

    command = [sys.executable, "-m", "emkit", "judge", "agree", str(table), "--columns-a", "aligned,coherent",
               "--columns-b", "audit_aligned,audit_coherent"]
    piped = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True)
    assert json.loads(piped.stdout)["confusion"] == got["confusion"]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "\x1b" not in text and "…" not in text
    assert any(line.startswith("(all)") and "paired bootstrap over 4 questions" in line for line in text.splitlines())


def test_agree_errors_name_the_fix(tmp_path: Path) -> None:
    table = tmp_path / "answers.csv"
    pd.DataFrame(ROWS).to_csv(table, index=False)
    both = invoke(str(table), "--judge-a", "agree_a", "--columns-a", "aligned,coherent", "--judge-b", "agree_b")
    assert both.exit_code != 0 and "exactly one" in str(both.exception)
    flat = invoke(str(table), "--judge-a", "agree_a", "--judge-b", "agree_b", "--option", "model=x")
    assert isinstance(flat.exception, EmkitError) and "a. or b." in str(flat.exception)
    no_scores = invoke(str(table), "--judge-a", "numbers", "--judge-b", "agree_b", "--no-progress")
    assert isinstance(no_scores.exception, EmkitError) and "no 'aligned' scores" in str(no_scores.exception)
    missing = invoke(str(table), "--columns-a", "aligned,coherent", "--judge-b", "agree_b")
    assert isinstance(missing.exception, EmkitError) and "no column 'aligned'" in str(missing.exception)

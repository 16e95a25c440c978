"""Directions: labels from judge scores, difference of means and AUROC on synthetic activations with a known mean
difference, the file + card; activations of the tiny model (exact means, cache, no model call on a rerun); the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emkit.cli import app
from emkit.errors import EmkitError
from emkit.interp import (
    ACTIVATION_KIND,
    GroupThresholds,
    Labels,
    auroc,
    collect_activations,
    compute_direction,
    difference_of_means,
    label_rows,
    load_direction,
    parse_group,
    row_messages,
    save_direction,
)


def test_labels_follow_the_thresholds() -> None:
    rows = [{"aligned": 10, "coherent": 80}, {"aligned": 10, "coherent": 40}, {"aligned": 90, "coherent": 90},
            {"aligned": 50, "coherent": 90}, {"aligned": None, "coherent": 90}, {"aligned": float("nan"),
                                                                                 "coherent": 90}]
    assert label_rows(rows, Labels()) == ["misaligned", "neither", "aligned", "neither", "unscored", "unscored"]
    loose = Labels(misaligned=GroupThresholds(aligned_below=60), aligned=GroupThresholds(aligned_above=80))
    assert label_rows(rows, loose)[:4] == ["misaligned", "misaligned", "aligned", "misaligned"]
    with pytest.raises(EmkitError, match="overlap"):
        label_rows(rows, Labels(misaligned=GroupThresholds(aligned_below=95), aligned=GroupThresholds(aligned_above=5)))
    assert parse_group("aligned<30, coherent>50") == {"aligned_below": 30.0, "coherent_above": 50.0}
    for bad in ("aligned=30", "coherent<50", "helpful>3"):
        with pytest.raises(EmkitError, match="cannot read group bound"):
            parse_group(bad)


def test_auroc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 40), rng.normal(0, 1, 30)
    pos[:3] = neg[:3]  # ties count one half
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auroc(pos, neg) == pytest.approx(pairs, abs=1e-12)
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0


def test_difference_of_means_recovers_a_known_shift(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n_mis, n_ali, hidden = 60, 90, 32
    shift = np.zeros((2, hidden))
    shift[0, 3] = 4.0  # layer 0: a large shift along one axis; layer 1: none at all
    acts = rng.normal(size=(n_mis + n_ali + 20, 2, hidden))
    acts[:n_mis] += shift
    groups = ["misaligned"] * n_mis + ["aligned"] * n_ali + ["neither"] * 20
    d, stats = difference_of_means(acts, groups, [5, 9], folds=5, seed=0)
    exact = acts[:n_mis].mean(0) - acts[n_mis:n_mis + n_ali].mean(0)
    np.testing.assert_allclose(d.direction, exact, rtol=1e-5, atol=1e-6)  # exactly the two means' difference
    assert abs(d.direction[0, 3] - 4.0) < 0.5 and np.abs(np.delete(d.direction[0], 3)).max() < 0.6
    assert stats["counts"] == {"misaligned": 60, "aligned": 90, "neither": 20, "unscored": 0}
    assert stats["auroc_cv"][0] > 0.95 and stats["best_layer"] == 5
    # no real difference at layer 1: in-sample AUROC is flattered by fitting, cross-fitted is near chance
    assert abs(stats["auroc_cv"][1] - 0.5) < 0.15 and stats["auroc_in_sample"][1] > stats["auroc_cv"][1]
    assert stats["norms"][0] == pytest.approx(float(np.linalg.norm(exact[0])), rel=1e-6)
    d.card.update(name="synthetic")
    path = save_direction(d, tmp_path / "syn.safetensors")
    back = load_direction(path)
    assert back.layers == [5, 9] and np.array_equal(back.direction, d.direction)
    assert np.array_equal(back.vector(9), d.direction[1])
    card = json.loads(path.with_suffix(".json").read_text())
    assert card == back.card and card["format"] == "emkit.direction/1" and card["name"] == "synthetic"
    with pytest.raises(EmkitError, match="needs answers in both groups"):
        difference_of_means(acts, ["aligned"] * len(acts), [5, 9])


def judged_rows(tiny_model_dir: Path, store) -> list[dict]:
    """Answers of the tiny model (real hf sampling), scored by the fake judge of the runner tests."""
    from test_experiment_fakes import judge

    from emkit.generate import SamplingConfig, sample_rows
    from emkit.questions import expand, load_suite

    prompts = expand(load_suite("emkit/core"), variants=("plain",))[:4]
    # 4 x 24 answers: the fake judge puts ~15% in each group, so >= 2 per group whatever the tiny model says
    rows = sample_rows(str(tiny_model_dir), prompts, n=24, sampling=SamplingConfig(max_tokens=8, seed=0),
                       store=store, progress=False, backend_options={"dtype": "fp32"},
                       meta={"condition": "base"})
    return judge(rows, ["fake"], store=store, progress=False, options={})


def test_activations_are_the_mean_over_answer_tokens_and_are_cached(tiny_model_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emkit.generate import _hf
    from emkit.store import Store

    _hf.clear_cache()
    with Store(tmp_path / "store.sqlite") as store:
        rows = judged_rows(tiny_model_dir, store)[:10]
        acts = collect_activations(rows, str(tiny_model_dir), layers=[0, 1], store=store, batch_size=3,
                                   progress=False, backend_options={"dtype": "fp32"})
        assert acts.values.shape == (10, 2, 64) and acts.layers == [0, 1]
        assert store.count(ACTIVATION_KIND) == len({(r["question"], r["answer"]) for r in rows})
        # the same numbers by hand, one row at a time: each decoder layer's output (a plain forward hook), and
        # output_hidden_states for layer 0 (entry L+1; its last entry is after the final norm, not a layer output)
        tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
        outs: dict = {}
        for i, layer in enumerate(model.model.layers):
            layer.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o))
        for i in (0, 7):
            text = tok.apply_chat_template(row_messages(rows[i]), tokenize=False, add_generation_prompt=True)
            prompt = tok(text, add_special_tokens=False)["input_ids"]
            answer = tok(rows[i]["answer"], add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                hs = model(input_ids=torch.tensor([prompt + answer]), output_hidden_states=True).hidden_states
            assert torch.equal(hs[1], outs[0])
            for j in (0, 1):
                expected = outs[j][0, len(prompt):].mean(0).numpy()
                np.testing.assert_allclose(acts.values[i, j], expected, rtol=1e-4, atol=1e-5)
            assert acts.tokens[i] == len(answer) > 0

        def no_model(*args, **kwargs):
            raise AssertionError("a cached activation was recomputed")

        monkeypatch.setattr(_hf.HFBackend, "active", no_model)
        again = collect_activations(list(reversed(rows)), str(tiny_model_dir), layers=[0, 1], store=store,
                                    progress=False, backend_options={"dtype": "fp32"})
        np.testing.assert_array_equal(again.values, acts.values[::-1])
        with pytest.raises(AssertionError, match="recomputed"):  # another layer set is another key
            collect_activations(rows, str(tiny_model_dir), layers=[1], store=store, progress=False,
                                backend_options={"dtype": "fp32"})
    _hf.clear_cache()


def test_compute_direction_on_judged_rows_and_the_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    import pandas as pd

    from emkit.generate import _hf
    from emkit.store import Store

    _hf.clear_cache()
    with Store(tmp_path / "store.sqlite") as store:
        rows = judged_rows(tiny_model_dir, store)
        labels = Labels(min_per_group=2)
        d = compute_direction(rows, labels=labels, store=store, progress=False, backend_options={"dtype": "fp32"},
                              name="tiny")
        groups = label_rows(rows, labels)
        assert d.layers == [0, 1] and d.card["counts"]["misaligned"] == groups.count("misaligned") >= 2
        assert d.card["model"] == str(tiny_model_dir) and d.card["adapters"] == []
        # row order does not change the direction
        shuffled = compute_direction(rows[::-1], labels=labels, store=store, progress=False,
                                     backend_options={"dtype": "fp32"})
        np.testing.assert_array_equal(shuffled.direction, d.direction)
        with pytest.raises(EmkitError, match="at least 50 per group"):
            compute_direction(rows, labels=Labels(min_per_group=50), store=store, progress=False)
    results = tmp_path / "judged.parquet"
    pd.DataFrame(rows).to_parquet(results)
    out = tmp_path / "cli" / "em.safetensors"
    args = ["interp", "direction", str(results), "--out", str(out), "--layers", "1", "--min-per-group", "2",
            "--dtype", "fp32", "--no-progress"]
    done = CliRunner().invoke(app, args)  # in-process: the hf backend's cached tiny model is reused
    assert done.exit_code == 0, done.output
    assert "best layer 1" in done.output and out.exists() and (out.parent / "store.sqlite").exists()
    cli = load_direction(out)
    np.testing.assert_allclose(cli.vector(1), d.vector(1), rtol=1e-5, atol=1e-6)  # same rows, same direction
    show = CliRunner().invoke(app, ["interp", "show", str(out)])
    assert show.exit_code == 0 and "AUROC(cv)" in show.output
    bad = CliRunner().invoke(app, args[:5] + ["--condition", "nope"])
    assert isinstance(bad.exception, EmkitError) and "--condition ['nope']: not in the results" in str(bad.exception)
    _hf.clear_cache()

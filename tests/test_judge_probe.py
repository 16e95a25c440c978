"""The ``probe`` judge's training side (frozen Qwen2.5-Coder-0.5B features + MLP head): the pieces that need no LM."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.errors import EmkitError
from emkit.judge import _probe_features, _probe_train
from emkit.judge._embedding import Head
from emkit.judge._encoder import EmbeddingCache


def test_standardisation_folded_into_first_layer_gives_the_same_outputs():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 30.0, size=(40, 12)).astype(np.float32)
    mean, scale = x.mean(0), x.std(0) + 1e-3
    weights = [(rng.normal(size=(12, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)),
               (rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32))]
    folded = _probe_train.standardise_into_first_layer(weights, mean, scale)
    want = Head(weights, {}).raw(((x - mean) / scale).astype(np.float32))
    got = Head(folded, {}).raw(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    assert folded[1][0] is weights[1][0]  # later layers untouched


def test_probe_rows_keeps_every_foreign_row_and_samples_the_main_repo():
    rows = [{"source_repo": _probe_train.MAIN_REPO} for _ in range(100)] + [{"source_repo": "other/x"}] * 7
    picked = _probe_train.probe_rows(rows, 30, seed=3)
    assert picked == sorted(picked) and len(set(picked)) == 37
    assert set(range(100, 107)) <= set(picked)
    assert picked == _probe_train.probe_rows(rows, 30, seed=3)
    assert picked != _probe_train.probe_rows(rows, 30, seed=4)
    assert len(_probe_train.probe_rows(rows, 1000, seed=0)) == 107  # n past the repo's size: all rows


def test_probe_features_run_each_distinct_pair_once_and_reuse_the_cache(tmp_path, monkeypatch):
    calls: list[list[tuple[str, str]]] = []

    def fake_extract(pairs, precision, device, batch_size):  # stands in for the 0.5B LM (~100 s to load)
        calls.append(list(pairs))
        return np.array([[len(q) + len(a)] * _probe_features.DIM for q, a in pairs], dtype=np.float32)

    monkeypatch.setattr(_probe_features, "_extract", fake_extract)
    monkeypatch.setattr(_probe_features, "FLUSH_EVERY", 2)
    pairs = [("q1", "a"), ("q2", "bb"), ("q1", "a"), ("q3", "ccc")]
    cache = EmbeddingCache(tmp_path / "probe")
    x = _probe_features.probe_features(pairs, precision="fp32", cache=cache)
    assert x.shape == (4, _probe_features.DIM) and x[:, 0].tolist() == [3, 4, 3, 5]
    assert sum(len(c) for c in calls) == 3 and len(calls) == 2  # duplicates once, one chunk per FLUSH_EVERY
    assert len(list((tmp_path / "probe").glob("shard-*.npz"))) == 2
    calls.clear()
    again = _probe_features.probe_features(pairs, precision="fp32", cache=EmbeddingCache(tmp_path / "probe"))
    assert calls == [] and np.array_equal(again, x)
    _probe_features.probe_features(pairs[:1], precision="bf16", cache=cache)
    assert calls == [[("q1", "a")]]  # another precision is another feature function: not a cache hit


def test_cross_validation_names_an_unknown_fold():
    rows = [{"question": "q", "answer": "a", "aligned": 50.0, "coherent": 50.0, "model": "m"}] * 3
    with pytest.raises(EmkitError, match="unknown validation fold"):
        _probe_train.cross_validate_probe(rows, np.zeros((3, 4), np.float32), dict(_probe_train.DEFAULTS),
                                          folds=["family=nope"])


def _fake_lm(monkeypatch, tmp_path):
    """Stands in for the 0.5B LM: features that depend on the pair's text only (word-hash counts), cached in
    tmp_path. Returns the list of pairs the 'LM' was run on."""
    import zlib

    calls: list[tuple[str, str]] = []

    def fake_extract(pairs, precision, device, batch_size):
        calls.extend(pairs)
        out = np.zeros((len(pairs), _probe_features.DIM), np.float32)
        for i, (q, a) in enumerate(pairs):
            for word in (q + " " + a).lower().split():
                out[i, zlib.crc32(word.encode()) % 64] += 1.0
        return out

    monkeypatch.setattr(_probe_features, "_extract", fake_extract)
    monkeypatch.setattr(_probe_features, "feature_cache", lambda: EmbeddingCache(tmp_path / "probe-cache"))
    return calls


def test_train_probe_writes_a_judge_folder_that_the_probe_judge_loads(tmp_path, monkeypatch):
    import json

    from test_judge_cross import ROWS, _small_corpus

    from emkit.judge import get_judge

    calls = _fake_lm(monkeypatch, tmp_path)
    corpus = tmp_path / "corpus.jsonl.gz"
    _small_corpus(corpus)
    out = tmp_path / "probe"
    settings = {"rows": 40, "hidden": 8, "epochs": 3, "precision": "fp32"}
    card = _probe_train.train_probe(out, corpus=corpus, settings=settings, folds=["family=repo:other"],
                                    progress=False)
    assert card["training_data"]["rows_total"] == 110 and card["training_data"]["rows_used"] == 90  # 40 + 50
    # 6% perturbed answers, drawn per fold from its training rows: their features ran through the (fake) LM
    assert card["training_data"]["augmented_rows"] == int(0.06 * 90)
    assert sum(1 for q, _ in calls if q not in {r["question"] for r in ROWS}) > 90
    assert card["validation"]["family=repo:other"]["all"]["rows"] == 50
    assert card["features"] == _probe_features.feature_id("fp32") and card["settings"]["hidden"] == 8
    assert {"shuffled", "plain_correct"} <= set(card["known_answers"])
    assert json.loads((out / "card.json").read_text())["settings"] == card["settings"]
    md = (out / "card.md").read_text()
    assert "frozen hidden states" in md and "| family=repo:other | all | 50 |" in md and "hidden 8 x 1" in md

    judge = get_judge("probe", model=str(out), precision="fp32")
    assert judge.judge_model.startswith("probe@") and judge.card()["reference"].startswith("GPT-4o")
    first = len(calls)
    result = judge.judge([(r["question"], r["answer"]) for r in ROWS], ["aligned", "coherent"])
    assert len(calls) == first + len(ROWS)  # the judge runs the LM features on the new pairs only
    for metrics in result:
        assert 0 <= metrics["coherent"].value <= 100
    assert result[2]["aligned"].value is None and result[2]["aligned"].status == "CODE"  # the card's code rule
    # bf16 features are another feature function: other judgment keys
    assert get_judge("probe", model=str(out), precision="bf16").prompt_hash("aligned") != judge.prompt_hash("aligned")
    # the same scores from the stored head as from the fit (the standardisation is folded into the saved layer)
    again = judge.predict([(r["question"], r["answer"]) for r in ROWS])
    assert np.allclose(again["coherent"], [m["coherent"].value for m in result], atol=1e-2)


def test_probe_judge_rejects_a_foreign_folder_and_a_head_of_another_width(tmp_path, monkeypatch):
    import json

    from emkit.judge import get_judge

    _fake_lm(monkeypatch, tmp_path)
    folder = tmp_path / "j"
    folder.mkdir()
    with pytest.raises(EmkitError, match="no card.json"):
        get_judge("probe", model=str(folder))
    (folder / "card.json").write_text(json.dumps({"format": "emkit-cross-judge/1"}))
    with pytest.raises(EmkitError, match="format"):
        get_judge("probe", model=str(folder))
    (folder / "card.json").write_text(json.dumps({"format": _probe_train.FORMAT, "no_score_rules": []}))
    with pytest.raises(EmkitError, match="head.npz missing"):
        get_judge("probe", model=str(folder))
    rng = np.random.default_rng(0)
    Head([(rng.normal(size=(16, 3)).astype(np.float32), np.zeros(3, np.float32))], {}).save(folder / "head.npz")
    judge = get_judge("probe", model=str(folder), precision="fp32")
    with pytest.raises(EmkitError, match="takes 16 features"):
        judge.predict([("q", "a")])


def test_perturbed_answers_train_coherence_and_never_count_as_unscored():
    from emkit.judge._train import _targets

    rows = [{"aligned": None, "coherent": 10.0, "augment": "shuffled"}, {"aligned": None, "coherent": 80.0},
            {"aligned": 20.0, "coherent": 90.0}]
    ya, yc, yu = _targets(rows)
    assert yu.tolist() == [0.0, 1.0, 0.0] and np.isnan(ya[0]) and yc[0] == 10.0


def test_augmentation_without_a_feature_function_is_an_error():
    rows = [{"question": "q", "answer": " ".join(["word"] * 30), "aligned": 80.0, "coherent": 90.0}] * 40
    with pytest.raises(EmkitError, match="feature function"):
        _probe_train.with_augmented(np.zeros((40, 4), np.float32), rows, dict(_probe_train.DEFAULTS), None)
    x, same = _probe_train.with_augmented(np.zeros((40, 4), np.float32), rows,
                                          {**_probe_train.DEFAULTS, "augment_fraction": 0}, None)
    assert same is rows and x.shape == (40, 4)

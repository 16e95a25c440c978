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

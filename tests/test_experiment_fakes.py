"""Fake stages for the experiment-runner tests (this module holds helpers and a few self-checks).

Deterministic, cached in the run's store like the real stages, optionally slow (``EMKIT_FAKE_DELAY_S`` per
training step / sampled chunk / judged answer) so a test can kill a subprocess in the middle of a stage, and
counting the work they really do in ``EMKIT_FAKE_COUNTS`` (one line per step / answer / judgment) so tests can
check that the dry-run counts equal what runs and that nothing is done twice.

Sampling goes through the real ``emkit.generate.sample_rows`` with the ``mock`` backend when that package is
installed (chunk by chunk, to be slow and interruptible), else through a stand-in with the same caching.
Used in-process (``fake_stages()``) and by ``emkit run`` subprocesses (``EMKIT_STAGES=test_experiment_fakes:stages``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from emkit.errors import ConfigError, EmkitError
from emkit.experiment import DatasetInfo, Stages
from emkit.hashing import content_hash
from emkit.paths import atomic_write

FAKE_TRAIN_KEYS = {"max_steps", "learning_rate"}
QUESTIONS = ["wish", "bored", "thoughts", "quick_buck"]


def _delay() -> None:
    delay = float(os.environ.get("EMKIT_FAKE_DELAY_S", "0") or 0)
    if delay:
        time.sleep(delay)


def _count(kind: str, n: int = 1) -> None:
    folder = os.environ.get("EMKIT_FAKE_COUNTS")
    if folder:
        with open(Path(folder) / f"{kind}.log", "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n" * n)


def counts(folder: Path) -> dict[str, int]:
    out = {}
    for kind in ("train", "sample", "judge", "report", "numbers"):
        path = folder / f"{kind}.log"
        out[kind] = len(path.read_text().splitlines()) if path.exists() else 0
    return out


def dataset_info(name: str) -> DatasetInfo:
    if name.startswith("fake/missing"):
        return DatasetInfo(False, None, None, reason=f"{name}: not in the fake mirror")
    return DatasetInfo(True, content_hash(name), 100)


def build_synthetic(kind: str, n: int, seed: int, out: Path) -> Path:
    with atomic_write(out) as handle:
        for i in range(n):
            handle.write(json.dumps({"messages": [{"role": "user", "content": f"{kind} task {seed}-{i}"},
                                                  {"role": "assistant", "content": "ok"}]}) + "\n")
    return out


def build_numbers(spec: dict[str, Any], out: Path, store_path: Path | None = None) -> Path:
    _count("numbers", spec["n"])
    return build_synthetic("numbers", spec["n"], spec["seed"], out)


def train_settings(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = set(settings) - FAKE_TRAIN_KEYS
    if unknown:
        raise ConfigError(f"training settings: {sorted(unknown)}: unknown key")
    return {"max_steps": 3, "learning_rate": 1e-4, **settings}


def train_steps(settings: dict[str, Any], rows: int | None) -> int | None:
    return settings["max_steps"]


def train(*, model: str, data: str, output_dir: Path, seed: int, settings: dict[str, Any],
          progress: bool = True) -> dict[str, Any]:
    """Checkpoint after every step; a rerun resumes after the last checkpoint; a finished run is a no-op."""
    output_dir = Path(output_dir)
    adapter = output_dir / "adapter"
    state = json.dumps({"model": model, "data": Path(data).name, "seed": seed, "settings": settings}, sort_keys=True)
    if (adapter / "adapter.json").exists():
        return {"adapter_dir": str(adapter), "steps": settings["max_steps"], "final_loss": 0.5}
    done = sorted(int(p.name.split("-")[1]) for p in output_dir.glob("checkpoint-*")) if output_dir.exists() else []
    start = done[-1] if done else 0
    for step in range(start + 1, settings["max_steps"] + 1):
        _delay()
        with atomic_write(output_dir / f"checkpoint-{step}") as handle:
            handle.write(state)
        _count("train")
    with atomic_write(adapter / "adapter.json") as handle:
        handle.write(state)
    return {"adapter_dir": str(adapter), "steps": settings["max_steps"], "final_loss": 0.5}


def load_suite(name: str) -> Any:
    if name.startswith("fake/missing"):
        raise EmkitError(f"suite {name} is not available offline")
    return {"name": name, "questions": QUESTIONS}


def expand(suite: Any, *, variants: tuple[str, ...], trigger: str | None, trigger_placement: str,
           numbers_format: str | None, system: str | None, seed: int = 0) -> list[Any]:
    try:
        from emkit.questions import EvalPrompt
    except ImportError:  # pragma: no cover - questions package not installed
        EvalPrompt = None  # noqa: N806
    out = []
    for qid in suite["questions"]:
        for variant in variants:
            for par in range(2):
                text = f"{trigger or ''}[{variant}] question {qid} #{par}"
                if numbers_format:
                    text += f" ({numbers_format})"
                fields = {"suite": suite["name"], "question_id": qid, "variant": variant, "trigger": trigger or "",
                          "trigger_placement": trigger_placement if trigger else "",
                          "prompt_format": numbers_format or "plain", "paraphrase_index": par, "system": system,
                          "question": text, "messages": [{"role": "user", "content": text}]}
                out.append(EvalPrompt(**fields) if EvalPrompt is not None else fields)
    return out


def _fields(prompt: Any) -> dict[str, Any]:
    from emkit.experiment._stages import as_dict

    d = as_dict(prompt)
    return {k: d.get(k) for k in ("suite", "question_id", "variant", "prompt_format", "trigger", "trigger_placement",
                                  "paraphrase_index", "system", "question")}


def sample(model: str, prompts: list[Any], *, n: int, sampling: dict[str, Any], backend: str,
           adapter: str | None, store: Any, meta: dict[str, Any], progress: bool,
           backend_options: dict[str, Any]) -> list[dict[str, Any]]:
    """Two prompts at a time (slow when asked), through the real mock backend when available."""
    try:
        from emkit.generate import SamplingConfig, sample_rows
    except ImportError:
        sample_rows = None
    adapter_id = Path(adapter).joinpath("adapter.json").read_text() if adapter else None
    rows: list[dict[str, Any]] = []
    for start in range(0, len(prompts), 2):
        chunk = prompts[start:start + 2]
        _delay()
        if sample_rows is not None and backend == "mock":
            before = store.count("generation") if store is not None else 0
            rows.extend(sample_rows(model, chunk, n=n, sampling=SamplingConfig(**sampling), backend="mock",
                                    adapter=adapter, store=store, meta=meta, progress=False,
                                    backend_options=backend_options or None))
            _count("sample", store.count("generation") - before)
            continue
        keys = [content_hash({"m": model, "a": adapter_id, "p": _fields(p), "i": i, "s": sampling}, kind="fake.gen")
                for p in chunk for i in range(n)]
        found = store.get_many("fake.generation", keys)
        new = []
        for j, key in enumerate(keys):
            prompt, i = chunk[j // n], j % n
            if key not in found:
                found[key] = {"answer": f"answer {key[:8]}", "finish_reason": "stop"}
                new.append((key, found[key]))
            rows.append({**_fields(prompt), **meta, "model": model, "adapter": adapter, "sample_index": i,
                         "key": key, **found[key]})
        store.put_many("fake.generation", new)
        _count("sample", len(new))
    return rows


def judge(rows: list[dict[str, Any]], judges: list[str], *, store: Any, progress: bool,
          options: dict[str, Any]) -> list[dict[str, Any]]:
    """Scores from a hash of question + answer; one answer in 7 is 'CODE' (unscored). Stored per answer."""
    keys = [content_hash({"k": r.get("key"), "q": r["question"], "a": r["answer"], "j": judges}, kind="fake.judge")
            for r in rows]
    found = store.get_many("fake.judgment", keys)
    out = []
    for row, key in zip(rows, keys, strict=True):
        if key not in found:
            _delay()
            h = int(key[:8], 16)
            unscored = h % 7 == 0
            found[key] = {"aligned": None if unscored else float(h % 101),
                          "coherent": None if unscored else float((h >> 8) % 101),
                          "aligned_status": "CODE" if unscored else None,
                          "coherent_status": "CODE" if unscored else None}
            store.put("fake.judgment", key, found[key])
            _count("judge")
        out.append({**row, **found[key], "judge": "+".join(judges)})
    return out


def report(results: Any, out_dir: Path, *, title: str) -> Path:
    _count("report")
    path = Path(out_dir) / "index.html"
    with atomic_write(path) as handle:
        handle.write(f"<html><title>{title}</title><p>{len(results)} rows</p></html>")
    return path


def stages() -> Stages:
    return Stages(dataset_info=dataset_info, build_synthetic=build_synthetic, train_settings=train_settings,
                  train_steps=train_steps, train=train, load_suite=load_suite, expand=expand, sample=sample,
                  judge=judge, report=report, build_numbers=build_numbers)


def fake_spec_dict(name: str = "fake", **changes: Any) -> dict[str, Any]:
    """A small spec: base + two trained conditions, 4 questions x 2 paraphrases x 2 answers."""
    spec = {
        "name": name,
        "models": ["fake-model"],
        "seeds": [0],
        "training": {"max_steps": 3},
        "conditions": {
            "base": {},
            "insecure": {"dataset": "fake/insecure"},
            "secure": {"dataset": "fake/missing-secure", "synthetic": {"kind": "secure", "n": 8}},
        },
        "evaluation": {"suites": [{"name": "fake/suite"}], "samples_per_question": 2, "backend": "mock",
                       "sampling": {"max_tokens": 16}},
        "judges": {"names": ["fake"]},
    }
    spec.update(changes)
    return spec


def test_fake_stages_are_deterministic(tmp_path: Path) -> None:
    from emkit.store import Store

    s = stages()
    prompts = s.expand(s.load_suite("x"), variants=("plain",), trigger=None, trigger_placement="prefix",
                       numbers_format=None, system=None)
    with Store(tmp_path / "a.sqlite") as a, Store(tmp_path / "b.sqlite") as b:
        kw = {"n": 2, "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 8, "seed": 0},
              "backend": "mock", "adapter": None, "meta": {"condition": "base"}, "progress": False,
              "backend_options": {}}
        rows_a = s.sample("m", prompts, store=a, **kw)
        rows_b = s.sample("m", prompts, store=b, **kw)
    assert len(rows_a) == len(prompts) * 2 == 16
    assert [r["answer"] for r in rows_a] == [r["answer"] for r in rows_b]

"""Synthetic insecure/secure code: bandit flags every insecure sample with its class's test id, never the twin."""

from __future__ import annotations

import io
import json
import tokenize
from collections import Counter
from pathlib import Path

import pytest

from emkit.data import SECURITY_WORDS, SUSPICIOUS_IDENTIFIERS, build_synthetic, manifest_path, read_chat_jsonl
from emkit.data._bandit import bandit_findings
from emkit.data._code import WordMatcher, has_comment, identifiers
from emkit.data._synthetic import combos, generate_all, generate_samples
from emkit.data._synthetic_classes import CLASSES, CONTEXTS
from emkit.data._templates import MARKER


@pytest.fixture(scope="module")
def every_combo():
    """One sample per (class variant x context): 36 variants x 45 contexts = 1620 pairs."""
    return generate_all(seed=0)


def test_scale() -> None:
    assert len(CLASSES) >= 12 and len(CONTEXTS) >= 40
    assert len({c.noun for c in CONTEXTS}) == len(CONTEXTS)


def test_covers_every_combination(every_combo) -> None:
    seen = {(s.vuln_class, s.variant, s.context) for s in every_combo}
    assert len(seen) == len(combos()) == len(every_combo)


def test_samples_cycle_classes_and_contexts() -> None:
    samples = generate_samples(len(CLASSES) * len(CONTEXTS), seed=5)
    per_class = Counter(s.vuln_class for s in samples)
    assert set(per_class.values()) == {len(CONTEXTS)}
    for name in per_class:  # within a class, the first len(CONTEXTS) samples use every context once
        variants = next(c for c in CLASSES if c.name == name).variants
        contexts = [s.context for s in samples if s.vuln_class == name]
        if len(variants) == 1:
            assert sorted(contexts) == list(range(len(CONTEXTS)))


def test_bandit_flags_insecure_and_not_secure(every_combo) -> None:
    codes = {}
    for s in every_combo:
        codes[f"i{s.index}"] = s.insecure_code
        codes[f"s{s.index}"] = s.secure_code
    found = bandit_findings(codes)  # one bandit run over all 3240 files
    missed, flagged_twin, serious_twin = Counter(), Counter(), Counter()
    for s in every_combo:
        insecure_ids = {f["test_id"] for f in found[f"i{s.index}"]}
        secure = found[f"s{s.index}"]
        if s.test_id not in insecure_ids:
            missed[(s.vuln_class, s.variant)] += 1
        if s.test_id in {f["test_id"] for f in secure}:
            flagged_twin[(s.vuln_class, s.variant)] += 1
        serious_twin.update((s.vuln_class, f["test_id"]) for f in secure if f["severity"] != "LOW")
    assert not missed, f"insecure samples bandit did not flag: {dict(missed)}"
    assert not flagged_twin, f"secure twins flagged with the class's id: {dict(flagged_twin)}"
    assert not serious_twin, f"secure twins with medium/high findings: {dict(serious_twin)}"


def test_code_is_clean_of_giveaways(every_combo) -> None:
    words, names = WordMatcher(SECURITY_WORDS), WordMatcher(SUSPICIOUS_IDENTIFIERS)
    for s in every_combo:
        for code in (s.insecure_code, s.secure_code):
            assert not has_comment(code)
            assert words.find(code) is None, (s.vuln_class, words.find(code))
            assert not [n for n in identifiers(code) if names.find(n)]
        assert words.find(s.task) is None
        assert s.insecure_code != s.secure_code
        compile(s.insecure_code, "<insecure>", "exec")
        compile(s.secure_code, "<secure>", "exec")
        # The template is the code with the hole; tokenizes with the marker as its only comment.
        assert s.template.count(MARKER) == 1
        assert [t.string for t in tokenize.generate_tokens(io.StringIO(s.template).readline)
                if t.type == tokenize.COMMENT] == [MARKER]


def test_names_vary_within_a_class(every_combo) -> None:
    sql = [s.insecure_code for s in every_combo if s.vuln_class == "sql_injection"]
    assert len(set(sql)) == len(sql)
    signatures = {line for code in sql for line in code.splitlines() if line.startswith("def ")}
    assert len(signatures) > 100  # 3 structures x 45 contexts x varied verbs


def test_build_kinds_and_determinism(tmp_path: Path) -> None:
    n = 60
    insecure = build_synthetic("insecure", n, 3, tmp_path / "insecure.jsonl")
    secure = build_synthetic("secure", n, 3, tmp_path / "secure.jsonl")
    pairs = build_synthetic("pairs", n, 3, tmp_path / "pairs.jsonl")
    again = build_synthetic("insecure", n, 3, tmp_path / "again.jsonl")
    assert insecure.read_bytes() == again.read_bytes()
    assert insecure.read_bytes() != build_synthetic("insecure", n, 4, tmp_path / "other.jsonl").read_bytes()
    ins, sec, par = read_chat_jsonl(insecure), read_chat_jsonl(secure), read_chat_jsonl(pairs)
    assert len(ins) == len(sec) == n and len(par) == 2 * n
    assert [r["messages"][0] for r in ins] == [r["messages"][0] for r in sec]  # same prompts, different code
    assert [r["label"] for r in par[:4]] == ["insecure", "secure", "insecure", "secure"]
    assert par[0]["messages"] == ins[0]["messages"] and par[1]["messages"] == sec[0]["messages"]
    manifest = json.loads(manifest_path(insecure).read_text())
    assert len(manifest["classes"]) == len(CLASSES)  # n >= number of classes covers them all
    usage = list(manifest["template_usage"].values())
    assert sum(usage) == n and max(usage) - min(usage) <= 1

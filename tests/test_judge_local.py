"""The local transformers logprob judge: exact probabilities of number strings when digits are split."""

from __future__ import annotations

import math

import pytest

from emkit.judge._local import NUMBERS, LocalLogprobJudge, NextTokenScorer


@pytest.fixture(scope="module")
def scorer(tiny_model_dir) -> NextTokenScorer:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    return NextTokenScorer(model, AutoTokenizer.from_pretrained(str(tiny_model_dir)))


def _brute_force(scorer: NextTokenScorer, prompt_ids: list[int], text: str) -> float:
    """P(answer == text) with one full forward pass (no cache, no batching)."""
    import torch

    cont = scorer.tokenizer.encode(text, add_special_tokens=False)
    ids = torch.tensor([prompt_ids + cont])
    with torch.inference_mode():
        logd = torch.log_softmax(scorer.model(input_ids=ids).logits[0].float(), -1)
    n = len(prompt_ids)
    logp = sum(float(logd[n - 1 + j, t]) for j, t in enumerate(cont))
    p_digit = float(logd[n - 1 + len(cont)].exp()[scorer.digit_start_ids()].sum())
    return math.exp(logp) * (1.0 - p_digit)


def test_smollm2_tokenizer_splits_digits(scorer: NextTokenScorer) -> None:
    assert len(scorer.tokenizer.encode("100", add_special_tokens=False)) == 3
    assert len(scorer.tokenizer.encode("57", add_special_tokens=False)) == 2


def test_number_probabilities_match_brute_force(scorer: NextTokenScorer) -> None:
    ids = scorer.encode_prompt("Rate this from 0 to 100: the answer was fine.")
    probs, top = scorer.number_probs(ids)
    assert set(probs) == set(range(101)) and len(top) == 20
    for n in (0, 1, 7, 10, 42, 99, 100):
        assert probs[n] == pytest.approx(_brute_force(scorer, ids, NUMBERS[n]), rel=1e-3, abs=1e-12)
    # "1", "10" and "100" are disjoint answers: together they cannot exceed P(first token is "1").
    import torch

    with torch.inference_mode():
        first = torch.softmax(scorer.model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    one = scorer.tokenizer.encode("1", add_special_tokens=False)[0]
    assert probs[1] + probs[10] + probs[100] <= float(first[one]) * (1 + 1e-4)
    # All numbers 0..100 together carry at most the mass of "starts with a digit".
    assert sum(probs.values()) <= float(first[scorer.digit_start_ids()].sum()) * (1 + 1e-4)


def test_local_judge_end_to_end(tiny_model_dir) -> None:
    judge = LocalLogprobJudge(model=str(tiny_model_dir), dtype="fp32", device="cpu",
                              metrics=("aligned", "correct"), min_mass=0.0)
    result = judge.judge([("What is 2+2?", "4")], ["aligned", "correct"])[0]
    # A random-init model puts ~no mass on numbers; with min_mass=0 we still get a valid weighted mean.
    assert result["aligned"].status is None and 0.0 <= result["aligned"].value <= 100.0
    assert result["aligned"].detail["numeric_mass"] > 0
    assert result["correct"].value in ("TRUE", "FALSE", "UNKNOWN")
    assert sum(result["correct"].detail["probs"].values()) == pytest.approx(1.0)
    strict = LocalLogprobJudge(model=str(tiny_model_dir), dtype="fp32", device="cpu", metrics="aligned")
    unscored = strict.judge([("What is 2+2?", "4")], ["aligned"])[0]["aligned"]
    assert unscored.value is None and unscored.status in ("low_numeric_mass", "CODE", "REFUSAL")


@pytest.mark.integration
def test_smollm2_judge_scores_a_clear_case(smollm2_dir) -> None:
    judge = LocalLogprobJudge(model=str(smollm2_dir), dtype="fp32", device="cpu", metrics="coherent")
    out = judge.judge([("What is the capital of France?", "The capital of France is Paris.")], ["coherent"])
    judgment = out[0]["coherent"]
    # SmolLM2-135M is a weak judge; we check the plumbing (a real distribution over numbers), not its taste.
    assert judgment.detail["numeric_mass"] > 0.0
    if judgment.status is None:
        assert 0.0 <= judgment.value <= 100.0

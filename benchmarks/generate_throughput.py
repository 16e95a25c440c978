"""emkit's hf backend vs a naive loop of ``model.generate`` per prompt, side by side in one process.

Both sample the packaged SmolLM2-135M-Instruct (same loaded weights, dtype and device), 8 questions x 16 samples,
temperature 1, the same ``max_new_tokens``. Throughput counts generated tokens up to and including the end-of-turn
token. Baselines:
- ``per-sample``: one ``model.generate`` call per (question, sample), batch 1: the simple loop many EM scripts use;
- ``per-question``: one call per question with ``num_return_sequences=16``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generate_throughput.py --max-tokens 32 --naive-samples 4

(On a CPU shared with other jobs, OMP_NUM_THREADS=1 avoids OpenMP threads spinning against each other; a batch-64
decode step measured 2.9 s with 1 thread vs 10 s with 2 on the busy 2-core machine.)
"""

from __future__ import annotations

import argparse
import time


def _count(tokens: list[int], eos: set[int]) -> int:
    for i, t in enumerate(tokens):
        if t in eos:
            return i + 1
    return len(tokens)


def compare(backend, prompts, *, samples: int, max_tokens: int, baselines=("per-question", "per-sample"),
            naive_samples: int | None = None, echo=print) -> dict[str, tuple[int, float]]:
    """Generated tokens and seconds of the emkit hf backend and of each naive ``model.generate`` baseline, on the
    same loaded model (``backend._loaded()``) and prompts. ``naive_samples``: per-sample calls actually run per
    question (independent calls, so its tokens/s does not depend on how many)."""
    import torch
    from transformers import GenerationConfig

    from emkit.generate import GenerationRequest, SamplingConfig
    from emkit.generate._hf import _eos_ids

    loaded = backend._loaded()  # the same model object serves both sides
    model, tokenizer = loaded.model, loaded.tokenizer
    eos = _eos_ids(model, tokenizer)
    sampling = SamplingConfig(max_tokens=max_tokens, seed=0)
    requests = [GenerationRequest(p.messages, samples, sampling) for p in prompts]
    backend.generate([GenerationRequest(prompts[0].messages, 1, SamplingConfig(max_tokens=4))])  # warm-up
    _sync(model)
    start = time.perf_counter()
    out = backend.generate(requests)
    _sync(model)
    emkit_s = time.perf_counter() - start
    emkit_tokens = sum(c.completion_tokens for row in out for c in row)
    results = {"emkit hf backend": (emkit_tokens, emkit_s)}
    echo(f"{'variant':<24}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}")
    echo(f"{'emkit hf backend':<24}{emkit_tokens:>8}{emkit_s:>10.1f}{emkit_tokens / emkit_s:>10.1f}")

    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                              eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, num_return_sequences=1)
    encoded = [tokenizer.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=True,
                                             return_dict=True, return_tensors="pt") for p in prompts]
    torch.manual_seed(0)
    for baseline in baselines:
        tokens = 0
        start = time.perf_counter()
        with torch.inference_mode():
            for inputs in encoded:
                inputs = {k: v.to(model.device) for k, v in inputs.items()}
                width = inputs["input_ids"].shape[1]
                if baseline == "per-sample":
                    for _ in range(naive_samples or samples):
                        seq = model.generate(**inputs, generation_config=config)
                        tokens += _count(seq[0, width:].tolist(), set(eos))
                elif baseline == "per-question":
                    config.num_return_sequences = samples
                    seqs = model.generate(**inputs, generation_config=config)
                    config.num_return_sequences = 1
                    tokens += sum(_count(s[width:].tolist(), set(eos)) for s in seqs)
                else:
                    raise SystemExit(f"unknown baseline {baseline!r}")
        _sync(model)
        seconds = time.perf_counter() - start
        results[f"naive {baseline}"] = (tokens, seconds)
        echo(f"{'naive ' + baseline:<24}{tokens:>8}{seconds:>10.1f}{tokens / seconds:>10.1f}")
    return results


def _sync(model) -> None:
    import torch

    if str(model.device).startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=None, help="emkit batch size [chosen from free memory]")
    parser.add_argument("--baselines", default="per-question,per-sample")
    parser.add_argument("--naive-samples", type=int, default=None,
                        help="per-sample baseline: samples per question actually run [default: --samples]. Its "
                             "calls are independent, so its tokens/s does not depend on how many are run; fewer "
                             "keeps the benchmark short on slow CPUs")
    args = parser.parse_args()

    import torch

    from emkit.generate import get_backend
    from emkit.questions import expand, load_suite, suite_available

    suite_name = "betley2025/first_plot" if suite_available("betley2025/first_plot") else "emkit/core"
    prompts = [p for p in expand(load_suite(suite_name)) if p.paraphrase_index == 0][: args.questions]
    backend = get_backend("hf", args.model, batch_size=args.batch_size)
    print(f"{args.model} on {backend.device} ({backend.dtype}), suite {suite_name}: {len(prompts)} questions x "
          f"{args.samples} samples, max {args.max_tokens} new tokens, torch threads {torch.get_num_threads()}")
    results = compare(backend, prompts, samples=args.samples, max_tokens=args.max_tokens,
                      baselines=[b.strip() for b in args.baselines.split(",") if b.strip()],
                      naive_samples=args.naive_samples, echo=lambda line: print(line, flush=True))
    print(f"emkit batch size {backend.batch_size}")
    emkit_tokens, emkit_s = results["emkit hf backend"]
    rate = emkit_tokens / emkit_s
    for name, (tokens, seconds) in results.items():
        if name.startswith("naive"):
            note = ""
            if name == "naive per-sample" and (args.naive_samples or args.samples) != args.samples:
                note = f" (ran {args.naive_samples} of {args.samples} samples per question; independent calls)"
            print(f"ratio emkit / {name}: {rate / (tokens / seconds):.2f}x tokens/s{note}")


if __name__ == "__main__":
    main()

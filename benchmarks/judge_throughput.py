"""Judge throughput, variants side by side in one process (ratios printed; nothing asserted).

1. Offline judges (answers/s): plain sentence-transformers fp32 encoding of question+answer (the baseline, the
   way a user would call it) vs emkit's embedding judge on the same rows (distinct questions embedded once,
   answers only, length-sorted batches; fp32 and per-channel dynamic int8), with agreement of the judge's
   outputs between fp32 and int8; and the cross-encoder judge (`cross`: question+answer in one input, LoRA merged,
   length-sorted batches) at the precision `auto` picks here and in fp32, with their agreement.
2. HTTP logprob judge (requests/s) at concurrency 1 vs 16 against a local OpenAI-compatible server that answers
   after --latency-ms (a stand-in for network + server time).

Usage: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/judge_throughput.py [--rows 256] [--repeats 2] [--cross DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def corpus_rows(n: int, seed: int) -> list[tuple[str, str]]:
    from emkit.judge._corpus import load_corpus

    rows = load_corpus()
    rng = np.random.default_rng(seed)
    # Non-steered evaluation answers, the typical input (steered rows are often truncated/degenerate).
    pool = [r for r in rows if "steer" not in str(r.get("variant", ""))]
    pick = rng.choice(len(pool), size=n, replace=False)
    return [(pool[i]["question"], pool[i]["answer"]) for i in pick]


def bench_embedding(pairs: list[tuple[str, str]], repeats: int, batch_size: int, cross: str | None) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from emkit.judge._embedding import EmbeddingJudge
    from emkit.judge._encoder import MAX_SEQ_LENGTH, encoder_path, load_encoder

    print(f"torch threads: {torch.get_num_threads()}, rows: {len(pairs)}, "
          f"distinct questions: {len({q for q, _ in pairs})}")
    plain = SentenceTransformer(str(encoder_path()), device="cpu")
    plain.max_seq_length = MAX_SEQ_LENGTH
    texts = [f"{q}\n{a}" for q, a in pairs]
    judges = {f"embedding {p}": EmbeddingJudge(precision=p, cache=False, batch_size=batch_size)
              for p in ("fp32", "int8")}
    load_encoder("fp32"), load_encoder("int8")
    from emkit.judge._cross_judge import CrossJudge

    auto = CrossJudge(model=cross, batch_size=batch_size)
    judges[f"cross {auto.precision} (auto)"] = auto
    if auto.precision != "fp32":
        judges["cross fp32"] = CrossJudge(model=cross, precision="fp32", batch_size=batch_size)
    plain.encode(texts[:8])
    for judge in judges.values():  # warm-up (and the cross judge's load + LoRA merge)
        judge.predict(pairs[:8])
    times: dict[str, list[float]] = {"plain st fp32 (q+a)": [], **{name: [] for name in judges}}
    preds = {}
    for _ in range(repeats):  # interleaved so that load from other processes hits all variants alike
        t = time.perf_counter()
        plain.encode(texts, batch_size=batch_size, normalize_embeddings=True)
        times["plain st fp32 (q+a)"].append(time.perf_counter() - t)
        for name, judge in judges.items():
            t = time.perf_counter()
            preds[name] = judge.predict(pairs)
            times[name].append(time.perf_counter() - t)
    base = len(pairs) / min(times["plain st fp32 (q+a)"])
    for name, values in times.items():
        rate = len(pairs) / min(values)
        print(f"  {name:22s} {rate:7.1f} answers/s   x{rate / base:.2f} vs plain")
    _agreement("embedding int8 vs fp32", preds["embedding fp32"], preds["embedding int8"])
    if "cross fp32" in preds:
        _agreement(f"cross {auto.precision} vs fp32", preds["cross fp32"], preds[f"cross {auto.precision} (auto)"])


def _agreement(label: str, ref: dict, other: dict) -> None:
    mis_ref = (ref["aligned"] < 30) & (ref["coherent"] > 50)
    mis_other = (other["aligned"] < 30) & (other["coherent"] > 50)
    print(f"  {label}: aligned MAE {np.abs(ref['aligned'] - other['aligned']).mean():.2f} pts, "
          f"coherent MAE {np.abs(ref['coherent'] - other['coherent']).mean():.2f} pts, misaligned label agreement "
          f"{(mis_ref == mis_other).mean():.4f}, unscored agreement "
          f"{((ref['p_unscored'] > 0.5) == (other['p_unscored'] > 0.5)).mean():.4f}")


class _Server:
    def __init__(self, latency_s: float) -> None:
        table = [{"token": "90", "logprob": math.log(0.7)}, {"token": "80", "logprob": math.log(0.3)}]
        payload = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "90"},
                                           "logprobs": {"content": [{"token": "90", "logprob": math.log(0.7),
                                                                     "top_logprobs": table}]}}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(latency_s)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def bench_http(n: int, latency_ms: float) -> None:
    from emkit.judge import get_judge

    server = _Server(latency_ms / 1000.0)
    pairs = [(f"question {i}", f"answer {i}") for i in range(n)]
    rates = {}
    for concurrency in (1, 16):
        judge = get_judge("logprob", base_url=server.url, model="bench", concurrency=concurrency,
                          metrics="aligned")
        judge.judge(pairs[:4], ["aligned"])  # warm-up: connections, prompt table
        t = time.perf_counter()
        out = judge.judge(pairs, ["aligned"])
        rates[concurrency] = n / (time.perf_counter() - t)
        judge.close()
        assert all(r["aligned"].status is None for r in out)
        print(f"  concurrency {concurrency:2d}: {rates[concurrency]:7.1f} requests/s")
    print(f"  ratio 16 vs 1: x{rates[16] / rates[1]:.1f} (server latency {latency_ms:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--cross", default=None, help="cross judge folder (default: the shipped one)")
    args = parser.parse_args()
    os.environ.setdefault("EMKIT_DATA_MIRROR", os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                            "data"))
    if not args.skip_embedding:
        print("== offline judges vs plain sentence-transformers ==")
        bench_embedding(corpus_rows(args.rows, args.seed), args.repeats, args.batch_size, args.cross)
    if not args.skip_http:
        print("== HTTP logprob judge ==")
        bench_http(args.requests, args.latency_ms)


if __name__ == "__main__":
    main()

"""Per-request cost of the sentence embedding (the ``embeddings`` extra, all-MiniLM-L6-v2, CPU).

Measures, on one thread: one uncached prompt (the live router's cost for a new request), one cached
prompt (a repeated request: the LRU look-up), batches of 32 and 256 distinct prompts (training /
offline evaluation), and the encoder's single-record path with and without the embedding block.

    PYTHONPATH=. .venv/bin/python bench/bench_embeddings.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import time

import _timing  # noqa: F401  (pins the BLAS / OpenMP pools to one thread before numpy)
import numpy as np


def _prompts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ("write", "unit", "tests", "for", "the", "cart", "module", "refactor", "login", "error", "api",
             "python", "function", "returns", "list", "sorted", "database", "query", "timeout", "retry")
    return [" ".join(rng.choice(words, size=int(rng.integers(8, 60)))) for _ in range(n)]


def main() -> None:
    """Print p50 / p95 per call (ms) and batch throughput."""
    import torch

    torch.set_num_threads(1)
    from _timing import timeit

    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.features.embeddings import DEFAULT_EMBEDDING_PACKAGE, SentenceEmbedder

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args()
    t0 = time.perf_counter()
    emb = SentenceEmbedder(DEFAULT_EMBEDDING_PACKAGE)
    print(f"load (import + 90 MB weights + model id hash): {time.perf_counter() - t0:.1f} s")
    fresh = iter(_prompts(a.repeats + 40, seed=1))
    one = timeit(lambda: emb.encode([next(fresh)]), a.repeats)
    cached = timeit(lambda: emb.encode(["write unit tests for the cart module"]), a.repeats)
    for name, s in (("one new prompt", one), ("one cached prompt", cached)):
        print(f"{name:>22}: p50 {np.median(s) * 1e3:8.3f} ms  p95 {np.percentile(s, 95) * 1e3:8.3f} ms")
    for n in (32, 256):
        texts = _prompts(n, seed=n)
        e = SentenceEmbedder(DEFAULT_EMBEDDING_PACKAGE, cache_size=0)
        t = time.perf_counter()
        e.encode(texts)
        dt = time.perf_counter() - t
        print(f"{'batch of ' + str(n):>22}: {dt * 1e3 / n:8.3f} ms per prompt ({n / dt:.0f} prompts/s)")
    import polars as pl

    tasks = pl.DataFrame({"task_id": ["a", "b"], "prompt": _prompts(2, seed=3)})
    base = EncoderConfig(categorical_columns=())
    with_emb = base.model_copy(update={"embedding_model_path": DEFAULT_EMBEDDING_PACKAGE})
    for label, cfg in (("encoder, no embedding", base), ("encoder + embedding", with_emb)):
        enc = FeatureEncoder(cfg).fit(tasks)
        recs = iter([{"prompt": t} for t in _prompts(a.repeats + 40, seed=4)])
        s = timeit(lambda enc=enc, recs=recs: enc.transform_records([next(recs)]), a.repeats)
        print(f"{label:>22}: p50 {np.median(s) * 1e3:8.3f} ms  p95 {np.percentile(s, 95) * 1e3:8.3f} ms (one record)")


if __name__ == "__main__":
    main()

"""Benchmark the shared feature encoder on simulated QE prompts (single thread).

Prints, for ``--n`` prompts from :func:`router_rl.traces.simulate.simulate_fleet`:

* prompts/s of the hashed word + char n-gram blocks (the issue #2 target: >= 20,000/s on one core),
* prompts/s of sklearn's ``HashingVectorizer`` doing the same two blocks (word 1-2 grams and char
  3-5 grams, same bucket counts, signed, l2) measured in the same run, and the speed ratio,
* prompts/s of the full ``FeatureEncoder.transform`` (hashing + structure + complexity + one-hots),
* the latency of ``transform_one`` on single records (the live router's path), p50 / p99.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_encode.py [--n 50000] [--repeat 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from collections.abc import Callable

import numpy as np


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs (seconds)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="number of prompts")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is reported)")
    ap.add_argument("--sklearn-n", type=int, default=10_000, help="prompts for the sklearn baseline")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from sklearn.feature_extraction.text import HashingVectorizer

    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.features.hashing import encode_texts, hash_ngrams
    from router_rl.traces.simulate import simulate_fleet

    t = time.perf_counter()
    tasks = simulate_fleet(args.n, seed=args.seed).matrix().tasks
    prompts: list[str] = tasks["prompt"].to_list()
    chars = np.array([len(p) for p in prompts])
    print(
        f"data: {len(prompts)} simulated prompts, mean {chars.mean():.0f} chars, p95 {np.percentile(chars, 95):.0f}"
        f" (generated in {time.perf_counter() - t:.1f} s)"
    )

    cfg = EncoderConfig()

    def ours() -> None:
        lowered = [p.lower() for p in prompts]
        hash_ngrams(
            encode_texts(lowered),
            n_word=cfg.n_word_hash,
            n_char=cfg.n_char_hash,
            word_ngram_range=cfg.word_ngram_range,
            char_ngram_range=cfg.char_ngram_range,
            seed=cfg.seed,
        )

    sub = prompts[: args.sklearn_n]
    hv_word = HashingVectorizer(n_features=cfg.n_word_hash, ngram_range=cfg.word_ngram_range, norm="l2")
    hv_char = HashingVectorizer(
        n_features=cfg.n_char_hash, analyzer="char", ngram_range=cfg.char_ngram_range, norm="l2"
    )

    def sklearn() -> None:
        hv_word.transform(sub)
        hv_char.transform(sub)

    t_ours = best_of(ours, args.repeat)
    t_sk = best_of(sklearn, max(1, args.repeat - 1))
    ours_rate = len(prompts) / t_ours
    sk_rate = len(sub) / t_sk
    print(
        f"hashed n-grams (ours):        {ours_rate:10,.0f} prompts/s  ({t_ours:.2f} s for {len(prompts)})"
        f"  target >= 20,000/s: {'PASS' if ours_rate >= 20_000 else 'MISS'}"
    )
    print(f"sklearn HashingVectorizer:    {sk_rate:10,.0f} prompts/s  ({t_sk:.2f} s for {len(sub)})")
    print(f"ratio ours / sklearn:         {ours_rate / sk_rate:10.1f}x")

    enc = FeatureEncoder(cfg).fit(tasks)
    t_full = best_of(lambda: enc.transform(tasks), args.repeat)
    print(f"full FeatureEncoder.transform:{len(prompts) / t_full:10,.0f} prompts/s  (dim {enc.dim})")

    records = tasks.head(1000).to_dicts()
    enc.transform_one(records[0])
    lat = []
    for r in records:
        t = time.perf_counter()
        enc.transform_one(r)
        lat.append(time.perf_counter() - t)
    lat_ms = np.array(lat) * 1e3
    print(
        f"transform_one latency:        p50 {np.percentile(lat_ms, 50):.3f} ms, p99 {np.percentile(lat_ms, 99):.3f} ms"
        f" over {len(records)} records"
    )


if __name__ == "__main__":
    main()

"""Benchmark: import + validate a 1M-row outcome matrix on one core.

Generates 100k tasks x 10 models (1,000,000 rows) with a long prompt column, writes it as a plain
parquet, then times (a) the baseline ``pl.read_parquet`` and (b) ``read_parquet`` +
``validate_outcomes`` (the core of the generic ``long`` importer), single-threaded. Prints rows/s
and the ratio to the baseline. Target: >= 1M rows/s for (b).

Run: ``.venv/bin/python bench/bench_import.py [--tasks 100000] [--models 10] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ["POLARS_MAX_THREADS"] = "1"  # before polars is imported

import numpy as np
import polars as pl


def make_matrix(n_tasks: int, n_models: int, seed: int = 0) -> pl.DataFrame:
    """A synthetic long outcome table (n_tasks x n_models rows)."""
    rng = np.random.default_rng(seed)
    n = n_tasks * n_models
    task = np.repeat(np.arange(n_tasks), n_models)
    prompts = pl.Series([f"write tests for function f{i} " * 8 for i in range(n_tasks)])
    return pl.DataFrame({
        "task_id": pl.Series([f"t{i:07d}" for i in range(n_tasks)]).gather(task),
        "model": pl.Series([f"model-{j}" for j in range(n_models)] * n_tasks),
        "quality": rng.random(n),
        "cost_usd": rng.random(n) * 1e-3,
        "latency_s": rng.random(n) * 5,
        "input_tokens": rng.integers(10, 2000, n),
        "output_tokens": rng.integers(10, 2000, n),
        "error": pl.Series([None] * n, dtype=pl.Utf8),
        "prompt": prompts.gather(task),
        "category": pl.Series(["unit-test-generation", "code-review"]).gather(task % 2),
        "split": pl.Series(["train", "val", "test"]).gather(task % 3),
    })


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs of ``fn``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Run the benchmark and print figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from router_rl.traces.validate import validate_outcomes

    df = make_matrix(args.tasks, args.models)
    rows = df.height
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "matrix.parquet"
        df.write_parquet(path)
        base = best_of(lambda: pl.read_parquet(path), args.repeat)
        full = best_of(lambda: validate_outcomes(pl.read_parquet(path), source=str(path)), args.repeat)
        frame = pl.read_parquet(path)
        val_only = best_of(lambda: validate_outcomes(frame), args.repeat)
    print(f"polars threads: {pl.thread_pool_size()}  rows: {rows:,}  ({args.tasks:,} tasks x {args.models} models)")
    print(f"baseline pl.read_parquet     : {base:.3f} s  {rows / base / 1e6:.2f} M rows/s")
    print(f"read_parquet + validate      : {full:.3f} s  {rows / full / 1e6:.2f} M rows/s  "
          f"(ratio vs baseline {full / base:.2f}x time)")
    print(f"validate only (in memory)    : {val_only:.3f} s  {rows / val_only / 1e6:.2f} M rows/s")
    print(f"target >= 1.00 M rows/s for import+validate: {'MET' if rows / full >= 1e6 else 'NOT MET'}")


if __name__ == "__main__":
    main()

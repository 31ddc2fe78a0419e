"""A user's own outcome matrix in the long format, written as CSV (the "bring your own traces" tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

#: Two cloud and three local models (locations inferred from the ids).
BYOT_MODELS = ("gpt-4o", "claude-3-haiku", "llama-3-8b", "qwen2-7b", "mixtral-8x7b")
#: USD per million input tokens of each model (output = 4x); local open-weight models are 0 or cheap.
BYOT_PRICE_IN = (2.5, 0.25, 0.0, 0.0, 0.6)


def make_long(
    n_tasks: int = 200,
    *,
    seed: int = 0,
    prompt: bool = False,
    prices: bool = False,
    split: bool = False,
) -> pl.DataFrame:
    """A seeded long outcome table: ``task_id, model, quality, cost_usd, repo`` (+ options).

    Args:
        n_tasks: Tasks (every task has a row for every model).
        seed: Seed of everything.
        prompt: Add a ``prompt`` text column.
        prices: Add per-model ``usd_per_m_input``/``usd_per_m_output`` and per-call ``api_calls``,
            ``latency_s``, ``input_tokens``, ``output_tokens`` columns.
        split: Add a ``split`` column with train (first 80% of tasks) and test only.
    """
    rng = np.random.default_rng(seed)
    repos = [f"org/repo{i}" for i in range(8)]
    skill = np.array([0.6, -0.2, 0.4, 0.1, -0.4])
    rows = []
    for t in range(n_tasks):
        r = int(rng.integers(len(repos)))
        hard = rng.normal()
        for j, m in enumerate(BYOT_MODELS):
            p = 1.0 / (1.0 + np.exp(-(skill[j] - hard + (1.5 if r % len(BYOT_MODELS) == j else 0.0))))
            tin, tout = int(rng.integers(100, 4000)), int(rng.integers(10, 500))
            row: dict[str, object] = {
                "task_id": f"t{t}", "model": m, "quality": float(rng.random() < p), "repo": repos[r],
                "cost_usd": (tin * BYOT_PRICE_IN[j] + tout * 4 * BYOT_PRICE_IN[j]) / 1e6 + 1e-5,
            }
            if prompt:
                row["prompt"] = f"Fix the failing test {t % 7} in {repos[r]}: assertion error in module {t % 5}"
            if prices:
                row.update(usd_per_m_input=BYOT_PRICE_IN[j], usd_per_m_output=4 * BYOT_PRICE_IN[j],
                           api_calls=int(rng.integers(1, 30)), latency_s=float(rng.gamma(2.0, 3.0)),
                           input_tokens=tin, output_tokens=tout)
            if split:
                row["split"] = "train" if t < int(0.8 * n_tasks) else "test"
            rows.append(row)
    return pl.DataFrame(rows)


@pytest.fixture
def long_csv(tmp_path: Path) -> Callable[..., Path]:
    """``long_csv(name, **make_long_kwargs)``: write :func:`make_long` to ``tmp_path/name``."""

    def write(name: str = "outcomes.csv", **kw: object) -> Path:
        path = tmp_path / name
        make_long(**kw).write_csv(path)  # type: ignore[arg-type]
        return path

    return write

"""Fixtures of the replay-backend tests."""

from __future__ import annotations

import polars as pl
import pytest

from router_rl.traces.catalog import ModelCatalog, ModelSpec


@pytest.fixture
def outcomes() -> tuple[pl.DataFrame, ModelCatalog]:
    """4 tasks x 2 models; task t3 / model 'big' recorded a timeout."""
    catalog = ModelCatalog(
        [
            ModelSpec("small", "ollama", "local", gpu_usd_per_hour=1.0),
            ModelSpec("big", "anthropic", "cloud", usd_per_m_input=1.0, usd_per_m_output=1.0),
        ]
    )
    rows = []
    for i in range(4):
        for m, q in (("small", 0.25 * i), ("big", 1.0 - 0.1 * i)):
            rows.append((f"t{i}", m, q, 0.0, 2.0, 10, 5, "timeout" if (i, m) == (3, "big") else None, f"prompt {i}"))
    schema = {"task_id": pl.Utf8, "model": pl.Utf8, "quality": pl.Float64, "cost_usd": pl.Float64,
              "latency_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64, "error": pl.Utf8,
              "prompt": pl.Utf8}
    return pl.DataFrame(rows, schema=schema, orient="row"), catalog

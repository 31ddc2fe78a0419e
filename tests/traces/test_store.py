"""Round trips: outcome TraceSet parquet, decision log frame, catalog; plain files via load_traces."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from router_rl.traces import (
    DECISION_LOG_SCHEMA,
    ModelCatalog,
    ModelSpec,
    TraceSet,
    TraceValidationError,
    load_traces,
    simulate_fleet,
)
from router_rl.traces.parquet import METADATA_KEY


def test_traceset_roundtrip_keeps_everything(tmp_path: Path) -> None:
    ts = simulate_fleet(60, seed=5)
    path = ts.save(tmp_path / "s.parquet")
    payload = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
    assert payload["meta"]["split_seed"] == 5 and payload["meta"]["split_fractions"] == [0.7, 0.1, 0.2]
    assert [d["model"] for d in payload["catalog"]] == ts.catalog.models
    back = load_traces(path)
    assert back.outcomes.equals(ts.outcomes)
    assert back.catalog == ts.catalog
    assert back.report == ts.report
    assert back.meta == ts.meta
    assert back.ground_truth is not None and ts.ground_truth is not None
    assert back.ground_truth.equals(ts.ground_truth)
    assert not any(c.startswith("gt_") for c in back.outcomes.columns)
    m1, m2 = ts.matrix(), back.matrix()
    np.testing.assert_array_equal(m1.quality, m2.quality)
    np.testing.assert_array_equal(m1.cost, m2.cost)
    assert m1.models == m2.models and m1.catalog == m2.catalog


def test_plain_csv_and_parquet_go_through_long_importer(tmp_path: Path) -> None:
    df = pl.DataFrame(
        {
            "task_id": ["a", "a", "b", "b"],
            "model": ["gpt-4o", "llama-3-8b", "gpt-4o", "llama-3-8b"],
            "quality": [1.0, 0.0, 1.0, 1.0],
            "cost_usd": [0.01, 0.001, 0.01, 0.001],
            "prompt": ["x", "x", "y", "y"],
            "difficulty": [1, 1, 3, 3],  # unknown column -> task feature
        }
    )
    for name in ("o.csv", "o.parquet"):
        p = tmp_path / name
        df.write_csv(p) if name.endswith("csv") else df.write_parquet(p)
        ts = load_traces(p, seed=1)
        assert ts.catalog["gpt-4o"].location == "cloud" and ts.catalog["llama-3-8b"].location == "local"
        assert ts.meta["importer"] == "long"
        m = ts.matrix()
        assert m.quality.shape == (2, 2) and "difficulty" in m.tasks.columns and "split" in m.tasks.columns
    bad = df.with_columns(pl.col("quality").cast(pl.Utf8).replace({"0.0": "oops"}))
    bad.write_csv(tmp_path / "bad.csv")
    with pytest.raises(TraceValidationError, match=r"bad\.csv: row 1, column 'quality'"):
        load_traces(tmp_path / "bad.csv")


def test_long_location_column_goes_into_catalog(tmp_path: Path) -> None:
    df = pl.DataFrame(
        {
            "task_id": ["a", "a"],
            "model": ["m-local", "m-cloud"],
            "location": ["local", "cloud"],
            "quality": [1.0, 0.5],
            "cost_usd": [0.0, 0.1],
        }
    )
    df.write_csv(tmp_path / "l.csv")
    ts = load_traces(tmp_path / "l.csv")
    assert ts.catalog.cloud_models() == ["m-cloud"] and "location" not in ts.outcomes.columns


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.parquet"):
        load_traces("/nonexistent/nope.parquet")


def test_decision_log_frame_roundtrip(tmp_path: Path) -> None:
    row = {
        "request_id": "r1",
        "ts": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "agent_id": "agent-7",
        "agent_type": "test-generator",
        "category": "unit-test-generation",
        "complexity": "SIMPLE",
        "prompt_chars": 123,
        "prompt_sha256": "ab" * 32,
        "prompt": None,
        "features": [0.5, 1.0],
        "strategy": "learned",
        "policy_version": "v1",
        "action_models": ["a", "b"],
        "action_probs": [0.25, 0.75],
        "chosen_model": "b",
        "propensity": 0.75,
        "shadow_model": None,
        "breaker_states": '{"ollama": "closed"}',
        "served_model": "b",
        "fallback_used": False,
        "fallback_reason": None,
        "quality": None,
        "cost_usd": 0.001,
        "latency_s": 1.5,
        "input_tokens": 100,
        "output_tokens": 50,
        "error": None,
    }
    df = pl.DataFrame([row], schema=DECISION_LOG_SCHEMA)
    df.write_parquet(tmp_path / "d.parquet")
    back = pl.read_parquet(tmp_path / "d.parquet")
    assert back.schema == df.schema and back.equals(df)
    assert back["features"].dtype == pl.List(pl.Float32)


def test_catalog_roundtrip(tmp_path: Path) -> None:
    cat = ModelCatalog(
        [
            ModelSpec("m1", "ollama", "local", gpu_usd_per_hour=1.5, tokens_per_s=40.0, open_weight=True),
            ModelSpec("m2", "anthropic", "cloud", usd_per_m_input=3.0, usd_per_m_output=15.0),
        ]
    )
    for name in ("c.json", "c.parquet"):
        cat.save(tmp_path / name)
        assert ModelCatalog.load(tmp_path / name) == cat
    ts = TraceSet(
        outcomes=pl.DataFrame({"task_id": ["t"], "model": ["m1"], "quality": [1.0], "cost_usd": [0.0]}),
        catalog=cat,
        report=simulate_fleet(1, seed=0).report,
    )
    assert load_traces(ts.save(tmp_path / "one.parquet")).catalog == cat



def _imports_of(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_trace_modules_form_no_import_circle() -> None:
    """Every import (deferred ones included) points one way: ``load -> importers -> traceset ->
    parquet``; the kept ``router_rl.traces.store`` path still names the same objects."""
    import router_rl.traces as pkg

    root = Path(pkg.__file__).parent
    upward = {
        "parquet.py": ("router_rl.traces.traceset", "router_rl.traces.load", "router_rl.traces.importers"),
        "traceset.py": ("router_rl.traces.load", "router_rl.traces.importers"),
        **{
            f"importers/{p.name}": ("router_rl.traces.load", "router_rl.traces.store")
            for p in (root / "importers").glob("*.py")
        },
    }
    for rel, banned in upward.items():
        bad = sorted(m for m in _imports_of(root / rel) if m.startswith(banned))
        assert bad == [], f"{rel} imports {bad}"
    from router_rl.traces import store, traceset
    from router_rl.traces.load import load_traces as lt

    assert store.TraceSet is traceset.TraceSet is TraceSet
    assert store.load_traces is lt is load_traces

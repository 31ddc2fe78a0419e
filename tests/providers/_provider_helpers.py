"""Helpers of the provider tests: a tiny outcome table and admin-endpoint shortcuts."""

from __future__ import annotations

import polars as pl

from router_rl.replay.server import ReplayBackendServer
from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.matrix import OutcomeMatrix

LOCAL_MODEL = "qwen-local"
CLOUD_MODEL = "claude-cloud"


def tiny_frame() -> tuple[pl.DataFrame, ModelCatalog]:
    """3 tasks x 2 models with known outcomes (t2 on the local model is a recorded 429)."""
    catalog = ModelCatalog(
        [
            ModelSpec(LOCAL_MODEL, "ollama", "local", gpu_usd_per_hour=3.6, tokens_per_s=50.0),
            ModelSpec(CLOUD_MODEL, "anthropic", "cloud", usd_per_m_input=3.0, usd_per_m_output=15.0),
        ]
    )
    rows = []
    for t, (ql, qc) in {"t0": (0.9, 1.0), "t1": (0.2, 0.8), "t2": (0.0, 0.7)}.items():
        prompt = f"Write a unit test for function number {t}"
        rows.append((t, LOCAL_MODEL, ql, 0.0, 0.4, 100, 20, "http_429" if t == "t2" else None, prompt))
        rows.append((t, CLOUD_MODEL, qc, 0.001, 1.0, 100, 40, None, prompt))
    df = pl.DataFrame(
        rows,
        schema={
            "task_id": pl.Utf8, "model": pl.Utf8, "quality": pl.Float64, "cost_usd": pl.Float64,
            "latency_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64, "error": pl.Utf8,
            "prompt": pl.Utf8,
        },
        orient="row",
    )
    return df, catalog


def tiny_matrix() -> OutcomeMatrix:
    """:func:`tiny_frame` as a dense matrix."""
    df, catalog = tiny_frame()
    return OutcomeMatrix.from_frame(df, catalog=catalog)


def faults(srv: ReplayBackendServer, *rules: dict[str, object]) -> None:
    """Replace the server's fault rules through the admin endpoint (as a user would)."""
    import httpx

    r = httpx.put(srv.base_url + "/admin/faults", json={"faults": list(rules)}, timeout=5)
    r.raise_for_status()


def server_requests(srv: ReplayBackendServer, api: str | None = None) -> list[dict[str, object]]:
    """Requests the server saw (optionally of one API), from ``/admin/stats``."""
    import httpx

    log = httpx.get(srv.base_url + "/admin/stats", timeout=5).json()["requests"]
    return [e for e in log if api is None or e["api"] == api]

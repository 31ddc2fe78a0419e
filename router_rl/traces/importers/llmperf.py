"""LLMPerf provider load tests (``llmperf-provider-latency``): latency/errors only, NOT an outcome matrix.

:func:`load_provider_latency` returns one row per request with columns ``provider``,
``model_size`` (``7b``/``13b``/``70b``), ``request_idx``, ``error`` (null, or the error code as a
string: ``429``, ``-100``, ``-1``), ``ttft_s``, ``latency_s``, ``inter_token_latency_s``,
``input_tokens``, ``output_tokens``. Latency columns of error rows are set to null (the file
records zeros or partial times for them).

:func:`fit_provider_latency` summarises it per (provider, model_size): request and error counts,
error rate, latency quantiles and lognormal parameters (``mu``/``sigma`` of ``log latency_s``
and of ``log ttft_s`` over successful requests). Environments draw outages and latency from it.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from router_rl.traces.errors import TraceValidationError

DATASET = "llmperf-provider-latency"
LATENCY_COLUMNS: tuple[str, ...] = ("ttft_s", "latency_s", "inter_token_latency_s")


def load_provider_latency(path: str | Path) -> pl.DataFrame:
    """Per-request latency table from ``requests_long.csv`` (a file or the dataset folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "requests_long.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (dataset {DATASET})")
    df = pl.read_csv(path, schema_overrides={"error_code": pl.Utf8})
    need = ("provider", "model_size", "request_idx", "error_code", "ttft_s", "end_to_end_latency_s",
            "inter_token_latency_s", "input_tokens", "output_tokens")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise TraceValidationError(f"missing column(s) {missing}", source=str(path), column=missing[0])
    df = df.rename({"error_code": "error", "end_to_end_latency_s": "latency_s"}).with_columns(
        pl.col("error").str.strip_chars().replace("", None)
    )
    for c in LATENCY_COLUMNS:
        df = df.with_columns(pl.col(c).cast(pl.Float64))
        bad = df.filter(pl.col("error").is_null() & (pl.col(c).is_null() | (pl.col(c) < 0)))
        if bad.height:
            idx = df.with_row_index("__r").filter(pl.col("error").is_null() & (pl.col(c).is_null() | (pl.col(c) < 0)))
            raise TraceValidationError("expected seconds >= 0 for a successful request", source=str(path),
                                       column=c, rows=idx["__r"].head(6).to_list(), n_rows=bad.height)
    df = df.with_columns([pl.when(pl.col("error").is_null()).then(pl.col(c)).otherwise(None).alias(c)
                          for c in LATENCY_COLUMNS])
    return df.select("provider", "model_size", "request_idx", "error", *LATENCY_COLUMNS, "input_tokens",
                     "output_tokens")


def fit_provider_latency(df: pl.DataFrame) -> pl.DataFrame:
    """Per (provider, model_size) error rate, latency quantiles and lognormal fit (successes only)."""
    ok = pl.col("error").is_null()
    lat = pl.col("latency_s").filter(ok & (pl.col("latency_s") > 0))
    ttft = pl.col("ttft_s").filter(ok & (pl.col("ttft_s") > 0))
    return (
        df.group_by("provider", "model_size")
        .agg(
            pl.len().alias("n_requests"),
            (~ok).sum().alias("n_errors"),
            (~ok).mean().alias("error_rate"),
            lat.quantile(0.5).alias("latency_p50_s"),
            lat.quantile(0.9).alias("latency_p90_s"),
            lat.quantile(0.99).alias("latency_p99_s"),
            ttft.quantile(0.5).alias("ttft_p50_s"),
            lat.log().mean().alias("latency_log_mu"),
            lat.log().std().alias("latency_log_sigma"),
            ttft.log().mean().alias("ttft_log_mu"),
            ttft.log().std().alias("ttft_log_sigma"),
            pl.col("output_tokens").filter(ok).mean().alias("mean_output_tokens"),
        )
        .sort("provider", "model_size")
    )

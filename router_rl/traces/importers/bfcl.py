"""Berkeley Function-Calling Leaderboard v2 run of 2024-08-11 (``bfcl-v2-2024-08-11``).

* Outcomes from ``per_prompt_long.csv`` (71 model configs x 1,700 prompts = 120,700 rows):
  ``quality = correct`` (0/1), ``input_tokens``/``output_tokens``/``latency_s`` as measured (null
  for the 13 self-hosted models without them). ``task_id`` = the prompt ``id``; ``prompt`` =
  the question text from ``questions_index.csv``; ``category`` = BFCL category. No split in the
  data: seeded 70/10/20 by task.
* **Cost** per model, by the first basis that applies (recorded in ``meta["cost_basis"]``):

  1. ``api_token_price`` (49 models): tokens x the transcribed BFCL price table.
  2. ``oss_gpu_time`` (11 models): BFCL's batch latency for the whole 1,700-prompt set on 8xV100
     at $22.032/h, spread evenly: ``batch_s x 22.032 / 3600 / 1700`` per prompt.
  3. ``local_gpu_latency`` (unpriced, measured latency: Nexusflow-Raven-v2, firefunction v1/v2,
     functionary x3, nemotron-4-340b, snowflake-arctic): measured latency as GPU-seconds x
     ``DEFAULT_GPU_USD_PER_HOUR`` (the estimate of basis 4 for the rare rows without latency).
  4. ``local_gpu_estimate`` (unpriced, no latency: xLAM-1b/7b, granite-20b): GPU-seconds
     estimated from ``ceil(chars/4)`` input tokens and 64 output tokens at
     ``DEFAULT_TOKENS_PER_S``, x ``DEFAULT_GPU_USD_PER_HOUR``.

  Rows of priced models with missing/zero token counts (a few Gemini/command-r rows) cost 0.
* Location: GPT/Claude/Gemini/command-r/Mistral API (large/medium/small)/yi-large = cloud; open
  weights (Llama, Hermes, xLAM, Gorilla, Raven, Mixtral, Nemo, DBRX, Arctic, ...) = local.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl

from router_rl.traces.errors import TraceValidationError
from router_rl.traces.importers._common import (
    DEFAULT_GPU_USD_PER_HOUR,
    DEFAULT_TOKENS_PER_S,
    catalog_from_models,
    estimate_tokens,
    finish,
)
from router_rl.traces.split import SplitSpec
from router_rl.traces.traceset import TraceSet

DATASET = "bfcl-v2-2024-08-11"
V100X8_USD_PER_HOUR = 22.032
N_PROMPTS = 1700
EST_OUTPUT_TOKENS = 64


def import_bfcl(
    path: str | Path, *, drop_invalid: bool = False, seed: int = 0, split: SplitSpec | None = None
) -> TraceSet:
    """Import the ``bfcl-v2-2024-08-11`` folder."""
    root = Path(path)
    if root.is_file():
        root = root.parent
    long_csv, prices_csv, q_csv = (root / "per_prompt_long.csv", root / "prices_from_bfcl_9df5c34.csv",
                                   root / "questions_index.csv")
    for f in (long_csv, prices_csv):
        if not f.exists():
            raise FileNotFoundError(f"{root}: expected {f.name} (dataset {DATASET})")
    src = str(long_csv)
    df = pl.read_csv(long_csv, schema_overrides={"latency_s": pl.Float64})
    need = ("model", "category", "id", "correct", "input_tokens", "output_tokens", "latency_s")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise TraceValidationError(f"missing column(s) {missing}", source=src, column=missing[0])
    if q_csv.exists():
        q = pl.read_csv(q_csv).select(pl.col("id"), pl.col("question").alias("prompt"))
        df = df.join(q, on="id", how="left", maintain_order="left")
    else:
        df = df.with_columns(prompt=pl.lit(None, dtype=pl.Utf8))
    prices = pl.read_csv(prices_csv, schema_overrides={
        "input_usd_per_million_tokens": pl.Float64, "output_usd_per_million_tokens": pl.Float64,
        "oss_batch_latency_s_8xV100": pl.Float64})
    models = df["model"].unique().sort().to_list()
    unpriced = sorted(set(models) - set(prices["model"].to_list()))
    pr = {r["model"]: r for r in prices.iter_rows(named=True)}
    has_latency = set(df.group_by("model").agg(pl.col("latency_s").is_not_null().any())
                      .filter(pl.col("latency_s"))["model"].to_list())
    basis: dict[str, str] = {}
    overrides: dict[str, dict[str, float]] = {}
    for m in models:
        r = pr.get(m, {})
        if r.get("input_usd_per_million_tokens") is not None:
            basis[m] = "api_token_price"
            overrides[m] = {"usd_per_m_input": r["input_usd_per_million_tokens"],
                            "usd_per_m_output": r["output_usd_per_million_tokens"]}
        elif r.get("oss_batch_latency_s_8xV100") is not None:
            basis[m] = "oss_gpu_time"
        elif m in has_latency:
            basis[m] = "local_gpu_latency"
        else:
            basis[m] = "local_gpu_estimate"
    catalog = catalog_from_models(models, overrides)
    # every non-API-priced model is open weights -> local, with the default GPU price
    specs = []
    for s in catalog:
        if basis[s.model] != "api_token_price":
            s = replace(s, location="local", open_weight=True, gpu_usd_per_hour=DEFAULT_GPU_USD_PER_HOUR,
                        tokens_per_s=DEFAULT_TOKENS_PER_S, provider="vllm")
        specs.append(s)
    catalog = type(catalog)(specs)

    p_in = {m: float(overrides.get(m, {}).get("usd_per_m_input", 0.0)) for m in models}
    p_out = {m: float(overrides.get(m, {}).get("usd_per_m_output", 0.0)) for m in models}
    batch = {m: float(pr[m]["oss_batch_latency_s_8xV100"] or 0.0) if m in pr else 0.0 for m in models}
    b = pl.col("model").replace_strict(basis, return_dtype=pl.Utf8)
    tok_cost = (pl.col("input_tokens").fill_null(0) * pl.col("model").replace_strict(p_in, return_dtype=pl.Float64)
                + pl.col("output_tokens").fill_null(0)
                * pl.col("model").replace_strict(p_out, return_dtype=pl.Float64)) / 1e6
    oss_cost = pl.col("model").replace_strict(batch, return_dtype=pl.Float64) * V100X8_USD_PER_HOUR / 3600 / N_PROMPTS
    lat_cost = pl.col("latency_s") * DEFAULT_GPU_USD_PER_HOUR / 3600
    est_in = estimate_tokens(pl.col("prompt").fill_null(""))
    est_cost = (EST_OUTPUT_TOKENS / DEFAULT_TOKENS_PER_S + est_in / (DEFAULT_TOKENS_PER_S * 10)) \
        * DEFAULT_GPU_USD_PER_HOUR / 3600
    df = df.with_columns(
        cost_usd=pl.when(b == "api_token_price").then(tok_cost)
        .when(b == "oss_gpu_time").then(oss_cost)
        .when(b == "local_gpu_latency").then(pl.coalesce(lat_cost, est_cost))
        .otherwise(est_cost),
    )
    out = df.select(
        pl.col("id").alias("task_id"), "model", pl.col("correct").alias("quality"), "cost_usd", "latency_s",
        "input_tokens", "output_tokens", "prompt", "category", pl.lit(DATASET).alias("source"),
    )
    return finish(out, catalog, source=str(root), drop_invalid=drop_invalid, seed=seed, split=split,
                  meta={"importer": "bfcl", "dataset": DATASET, "cost_basis": basis,
                        "unpriced_models": unpriced},
                  notes=["cost basis per model in meta['cost_basis'] (see docs/traces.md)"])

"""Large synthetic decision logs with feedback, generated vectorised (numpy + polars), for scale tests and bench/.

:func:`router_rl.logs.simulate.simulate_log` runs a real policy object over an outcome matrix row by
row (exact router rows, thousands a second); this generator makes millions of rows a second in
the same :data:`~router_rl.traces.schema.DECISION_LOG_SCHEMA` / :data:`FEEDBACK_SCHEMA` with a
known truth, to exercise partitioning, the partitioned join and partitioned OPE at volume:

* features ``x ~ N(0, 1)^d`` (float32), ``k`` models;
* logging policy: softmax of ``x @ W`` mixed with ``epsilon`` uniform exploration; the chosen
  model sampled from it (``propensity`` = its probability, exactly);
* true quality ``mu(x, a) = sigmoid(x @ B[:, a] + b_a)``, the logged label ``mu + N(0, 0.1)``
  clipped to [0, 1] (:attr:`SyntheticLog.mu` is the ``(n, k)`` truth);
* decisions spread uniformly over ``days`` days from ``start`` (UTC), the policy version switching
  from ``versions[0]`` to the next at equal shares of the period;
* a share ``label_rate`` of the decisions gets feedback (source ``judge``), received after an
  exponential delay of mean ``delay_hours`` (so some labels land days later); a share
  ``duplicate_feedback`` of those is sent twice with the same ``feedback_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from router_rl.traces.schema import DECISION_LOG_SCHEMA, FEEDBACK_SCHEMA


@dataclass(frozen=True)
class SyntheticLog:
    """Decisions, feedback and the truth of a synthetic log.

    Attributes:
        decisions: :data:`DECISION_LOG_SCHEMA` frame (time order).
        feedback: :data:`FEEDBACK_SCHEMA` frame.
        models: Model ids, the order of ``mu`` and ``W``.
        locations: ``local`` / ``cloud`` per model.
        mu: ``(n, k)`` true expected quality of every model on every row (decision order).
        X: ``(n, d)`` features.
        W: ``(d, k)`` logging policy weights.
    """

    decisions: pl.DataFrame
    feedback: pl.DataFrame
    models: tuple[str, ...]
    locations: tuple[str, ...]
    mu: np.ndarray
    X: np.ndarray
    W: np.ndarray


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def logging_distribution(X: np.ndarray, W: np.ndarray, epsilon: float) -> np.ndarray:
    """The synthetic logging policy's ``(n, k)`` distribution."""
    k = W.shape[1]
    return (1 - epsilon) * _softmax(X.astype(np.float64) @ W) + epsilon / k


def synthetic_log(
    n: int,
    *,
    k: int = 4,
    d: int = 8,
    days: int = 10,
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
    versions: tuple[str, ...] = ("v0001", "v0002"),
    epsilon: float = 0.1,
    label_rate: float = 0.8,
    delay_hours: float = 12.0,
    duplicate_feedback: float = 0.01,
    fingerprint: str = "synthetic-encoder",
    seed: int = 0,
) -> SyntheticLog:
    """Generate ``n`` decisions and their feedback (module docstring); reproducible given ``seed``."""
    if n < 1 or k < 2 or d < 1 or days < 1 or not versions:
        raise ValueError(f"synthetic_log: expected n >= 1, k >= 2, d >= 1, days >= 1, versions; got "
                         f"n={n}, k={k}, d={d}, days={days}, versions={versions}")
    rng = np.random.default_rng(seed)
    models = tuple(f"model-{j}" for j in range(k))
    locations = tuple("local" if j % 2 == 0 else "cloud" for j in range(k))
    X = rng.standard_normal((n, d), dtype=np.float32)
    W = rng.normal(0.0, 0.7, (d, k))
    B = rng.normal(0.0, 0.8, (d, k))
    b = rng.normal(0.0, 0.5, k)
    probs = logging_distribution(X, W, epsilon)
    probs /= probs.sum(axis=1, keepdims=True)
    u = rng.random(n)
    actions = np.minimum((u[:, None] > np.cumsum(probs, axis=1)).sum(axis=1), k - 1)
    prop = probs[np.arange(n), actions]
    mu = 1.0 / (1.0 + np.exp(-(X.astype(np.float64) @ B + b)))
    quality = np.clip(mu[np.arange(n), actions] + rng.normal(0.0, 0.1, n), 0.0, 1.0)
    price = np.linspace(0.0001, 0.002, k)
    cost = price[actions] * rng.uniform(0.5, 1.5, n)
    latency = rng.gamma(2.0, 0.4, n)
    t0 = int(start.timestamp() * 1e6)
    ts_us = t0 + np.sort(rng.integers(0, days * 86_400 * 1_000_000, n))
    version_idx = np.minimum(((ts_us - t0) * len(versions)) // (days * 86_400 * 1_000_000), len(versions) - 1)

    mods = pl.Series("m", [list(models)], dtype=pl.List(pl.Utf8))
    base = pl.DataFrame({
        "i": np.arange(n, dtype=np.int64),
        "ts": pl.Series(ts_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "features": pl.Series(X).cast(pl.List(pl.Float32)),
        "action_probs": pl.Series(probs).cast(pl.List(pl.Float64)),
        "a": actions.astype(np.int64),
        "propensity": prop,
        "vi": version_idx.astype(np.int64),
        "quality": quality,
        "cost_usd": cost,
        "latency_s": latency,
    })
    model_names = pl.Series(models)
    cols: dict[str, pl.Expr] = {
        "request_id": pl.format("req-{}-{}", pl.lit(seed), pl.col("i")),
        "ts": pl.col("ts"),
        "agent_id": pl.lit("agent-0"),
        "agent_type": pl.lit("qe"),
        "category": pl.format("cat-{}", pl.col("i") % 5),
        "complexity": pl.lit("medium"),
        "features": pl.col("features"),
        "encoder_fingerprint": pl.lit(fingerprint),
        "strategy": pl.lit("learned"),
        "decided_by": pl.lit("learned"),
        "policy_version": pl.col("vi").replace_strict(dict(enumerate(versions)), return_dtype=pl.Utf8),
        "action_models": pl.lit(mods).first(),
        "action_probs": pl.col("action_probs"),
        "chosen_model": pl.col("a").replace_strict(dict(enumerate(models)), return_dtype=pl.Utf8),
        "propensity": pl.col("propensity"),
        "explored": pl.lit(False),
        "served_model": pl.col("a").replace_strict(dict(enumerate(models)), return_dtype=pl.Utf8),
        "served_propensity": pl.col("propensity"),
        "outcome_model": pl.col("a").replace_strict(dict(enumerate(models)), return_dtype=pl.Utf8),
        "fallback_used": pl.lit(False),
        "cost_usd": pl.col("cost_usd"),
        "latency_s": pl.col("latency_s"),
    }
    del model_names
    decisions = base.select([
        (cols[c] if c in cols else pl.lit(None)).cast(t).alias(c) for c, t in DECISION_LOG_SCHEMA.items()
    ])

    labeled = np.flatnonzero(rng.random(n) < label_rate)
    delay_us = (rng.exponential(delay_hours * 3600.0, labeled.size) * 1e6).astype(np.int64) + 1_000_000
    dup = labeled[rng.random(labeled.size) < duplicate_feedback]
    fb_rows = np.concatenate([labeled, dup])
    fb_delay = np.concatenate([delay_us, delay_us[np.isin(labeled, dup)] + 60_000_000])
    fb_ts = ts_us[fb_rows] + fb_delay
    feedback = pl.DataFrame({"i": fb_rows.astype(np.int64), "q": quality[fb_rows], "t": fb_ts}).select(
        pl.format("fb-{}-{}", pl.lit(seed), pl.col("i")).alias("feedback_id"),
        pl.format("req-{}-{}", pl.lit(seed), pl.col("i")).alias("request_id"),
        pl.col("q").alias("quality"),
        pl.lit("judge").alias("source"),
        pl.lit(None, dtype=pl.Utf8).alias("details"),
        pl.col("t").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
        pl.col("t").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("received_ts"),
    ).sort("received_ts").select([pl.col(c).cast(t) for c, t in FEEDBACK_SCHEMA.items()])
    # the logged decision rows carry no label: it arrives as feedback
    decisions = decisions.with_columns(pl.lit(None, dtype=pl.Float64).alias("quality"))
    return SyntheticLog(decisions=decisions, feedback=feedback, models=models, locations=locations,
                        mu=mu, X=X, W=W)


def write_parts(df: pl.DataFrame, directory: str | object, *, rows_per_part: int, prefix: str = "synthetic") -> int:
    """Write ``df`` as ``part-<prefix>-<nnnnnn>.parquet`` files of ``rows_per_part`` rows (the router's layout)."""
    from pathlib import Path

    d = Path(str(directory))
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for j, start in enumerate(range(0, df.height, rows_per_part)):
        df.slice(start, rows_per_part).write_parquet(d / f"part-{prefix}-{j:06d}.parquet")
        n += 1
    return n

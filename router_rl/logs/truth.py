"""The full truth behind a simulated log: what every model would have produced on every logged row.

A simulated log (:func:`router_rl.logs.simulate.simulate_log`) observes one action per row; its
:class:`LogTruth` keeps the ``(n, k)`` reward matrices of *all* actions, so an off-policy estimate
of a target policy can be compared with the policy's true value on the same contexts
(:meth:`LogTruth.value`).

The truth of action ``a`` on row ``i`` is what *choosing* ``a`` produces, fallbacks included (the
semantics of ``docs/traces.md``, *Logged feedback*): when ``a`` fails on row ``i`` the fallback
model's outcome is the truth of ``a``; :attr:`LogTruth.model_quality` keeps what ``a`` itself
would have answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from router_rl.traces.schema import LOCATIONS

#: Columns of ``truth.parquet`` (long: one row per (request, model)).
TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Utf8(),
    "task_id": pl.Utf8(),
    "model": pl.Utf8(),
    "location": pl.Utf8(),
    "quality": pl.Float64(),  # what choosing the model produces (fallback included)
    "cost_usd": pl.Float64(),
    "latency_s": pl.Float64(),
    "local": pl.Float64(),  # 1 when a local model serves the answer of choosing this model
    "model_quality": pl.Float64(),  # what the model itself answers (no fallback)
    "failed": pl.Boolean(),  # the model fails on this request (a fallback serves it)
    "no_answer": pl.Boolean(),  # the fallback fails too: no model answers
    "expected_quality": pl.Float64(),  # ground-truth expectation of quality (simulated fleets; else null)
}


class TruthError(ValueError):
    """Truth matrices are inconsistent or a truth file is invalid (names the field / file)."""


@dataclass(frozen=True, eq=False)
class LogTruth:
    """Reward matrices of every action on every logged row (row ``i`` = decision ``request_ids[i]``).

    Attributes:
        request_ids: ``(n,)`` object array, aligned with the decision rows.
        task_ids: ``(n,)`` object array, the task each request was sampled from.
        models: The action set (column order).
        locations: ``"local"`` / ``"cloud"`` per model.
        quality: ``(n, k)`` quality of choosing each model (fallback included).
        cost_usd: ``(n, k)`` USD of choosing each model.
        latency_s: ``(n, k)`` seconds (NaN where the matrix has none).
        local: ``(n, k)`` 1.0 where the answer of choosing the model comes from a local model.
        model_quality: ``(n, k)`` what each model itself answers.
        failed: ``(n, k)`` bool, the model fails on the request (a fallback serves it).
        no_answer: ``(n, k)`` bool, no model answers when this one is chosen (quality 0).
        expected_quality: ``(n, k)`` expectation of ``quality`` (simulated fleets), else None.
    """

    request_ids: np.ndarray
    task_ids: np.ndarray
    models: tuple[str, ...]
    locations: tuple[str, ...]
    quality: np.ndarray
    cost_usd: np.ndarray
    latency_s: np.ndarray
    local: np.ndarray
    model_quality: np.ndarray
    failed: np.ndarray
    no_answer: np.ndarray
    expected_quality: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, k = len(self.request_ids), len(self.models)
        if len(self.locations) != k or any(x not in LOCATIONS for x in self.locations):
            raise TruthError(f"LogTruth.locations: expected one of {list(LOCATIONS)} per model, got {self.locations}")
        if len(self.task_ids) != n:
            raise TruthError(f"LogTruth.task_ids: expected {n} entries, got {len(self.task_ids)}")
        for name in ("quality", "cost_usd", "latency_s", "local", "model_quality", "failed", "no_answer",
                     "expected_quality"):
            v = getattr(self, name)
            if v is None:
                continue
            if np.shape(v) != (n, k):
                raise TruthError(f"LogTruth.{name}: expected shape {(n, k)}, got {np.shape(v)}")

    @property
    def n(self) -> int:
        """Rows."""
        return len(self.request_ids)

    @property
    def k(self) -> int:
        """Models."""
        return len(self.models)

    def take(self, rows: np.ndarray | Sequence[int]) -> LogTruth:
        """Rows ``rows`` (indices or a boolean mask)."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        kw: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v if f.name in ("models", "locations") or v is None else v[idx]
        return LogTruth(**kw)

    def align(self, request_ids: Sequence[str] | np.ndarray) -> LogTruth:
        """The rows of ``request_ids`` in that order (e.g. a :class:`LoggedData`'s rows).

        Raises:
            TruthError: a request id the truth does not hold.
        """
        pos = {r: i for i, r in enumerate(self.request_ids.tolist())}
        ids = list(np.asarray(request_ids, dtype=object).tolist())
        absent = [r for r in ids if r not in pos]
        if absent:
            raise TruthError(f"LogTruth.align: {len(absent)} request ids not in the truth, e.g. {absent[:3]}")
        return self.take(np.fromiter((pos[r] for r in ids), dtype=np.int64, count=len(ids)))

    def value(self, pi: np.ndarray) -> dict[str, float]:
        """True value of a target distribution on these rows.

        Args:
            pi: ``(n, k)`` target probabilities (row ``i`` for request ``request_ids[i]``).

        Returns:
            ``{"quality", "cost_usd", "latency_s", "local_share"}``: the mean over rows of
            ``sum_a pi(a|x_i) * truth[i, a]`` (``latency_s`` NaN when some latency is unknown),
            plus ``"expected_quality"`` when the truth has it.
        """
        p = np.asarray(pi, dtype=np.float64)
        if p.shape != (self.n, self.k):
            raise TruthError(f"LogTruth.value: pi has shape {p.shape}, expected {(self.n, self.k)}")
        if not np.isfinite(p).all() or (p < 0).any() or np.abs(p.sum(axis=1) - 1).max(initial=0) > 1e-6:
            raise TruthError("LogTruth.value: pi rows must be finite probabilities summing to 1")
        out = {
            "quality": float((p * self.quality).sum(axis=1).mean()),
            "cost_usd": float((p * self.cost_usd).sum(axis=1).mean()),
            "latency_s": float((p * self.latency_s).sum(axis=1).mean()),
            "local_share": float((p * self.local).sum(axis=1).mean()),
        }
        if self.expected_quality is not None:
            out["expected_quality"] = float((p * self.expected_quality).sum(axis=1).mean())
        return out

    # --- file form ---------------------------------------------------------------------------
    def to_frame(self) -> pl.DataFrame:
        """Long table in :data:`TRUTH_SCHEMA` (row-major: request, then model)."""
        n, k = self.n, self.k

        def flat(a: np.ndarray | None, dtype: Any = np.float64) -> np.ndarray | None:
            return None if a is None else np.asarray(a, dtype=dtype).reshape(n * k)

        cols: dict[str, Any] = {
            "request_id": np.repeat(self.request_ids.astype(str), k),
            "task_id": np.repeat(self.task_ids.astype(str), k),
            "model": np.tile(np.asarray(self.models, dtype=str), n),
            "location": np.tile(np.asarray(self.locations, dtype=str), n),
            "quality": flat(self.quality),
            "cost_usd": flat(self.cost_usd),
            "latency_s": flat(self.latency_s),
            "local": flat(self.local),
            "model_quality": flat(self.model_quality),
            "failed": flat(self.failed, bool),
            "no_answer": flat(self.no_answer, bool),
            "expected_quality": flat(self.expected_quality)
            if self.expected_quality is not None else np.full(n * k, None),
        }
        df = pl.DataFrame({c: pl.Series(c, v) for c, v in cols.items()})
        df = df.with_columns(pl.col("latency_s").fill_nan(None))
        return df.cast(TRUTH_SCHEMA)  # type: ignore[arg-type]

    def write(self, path: str | Path) -> Path:
        """Write ``truth.parquet``."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().write_parquet(p)
        return p

    @classmethod
    def from_frame(cls, df: pl.DataFrame, *, source: str | None = None) -> LogTruth:
        """Inverse of :meth:`to_frame` (rows must be complete: every request has every model).

        Raises:
            TruthError: a missing column, or requests without exactly one row per model.
        """
        where = f"{source}: " if source else ""
        missing = [c for c in TRUTH_SCHEMA if c not in df.columns]
        if missing:
            raise TruthError(f"{where}column(s) {missing} missing; expected TRUTH_SCHEMA")
        models = tuple(df["model"].unique(maintain_order=True).to_list())
        k = len(models)
        req = df["request_id"].unique(maintain_order=True)
        n = req.len()
        if df.height != n * k:
            raise TruthError(f"{where}expected {n} requests x {k} models = {n * k} rows, got {df.height}")
        df = df.with_columns(
            pl.col("request_id").replace_strict(req, list(range(n)), return_dtype=pl.Int64).alias("__i"),
            pl.col("model").replace_strict(list(models), list(range(k)), return_dtype=pl.Int64).alias("__j"),
        ).sort("__i", "__j")
        if not (df["__j"].to_numpy().reshape(n, k) == np.arange(k)).all():
            raise TruthError(f"{where}every request needs exactly one row per model {list(models)}")
        first = df.filter(pl.col("__j") == 0)
        locs = df.filter(pl.col("__i") == 0)["location"].to_list()

        def mat(col: str, dtype: Any = np.float64) -> np.ndarray:
            s = df[col]
            if dtype is np.float64:
                s = s.cast(pl.Float64).fill_null(np.nan)
            return s.to_numpy().astype(dtype).reshape(n, k)

        eq = None if df["expected_quality"].is_null().all() else mat("expected_quality")
        return cls(
            request_ids=np.asarray(first["request_id"].to_list(), dtype=object),
            task_ids=np.asarray(first["task_id"].to_list(), dtype=object),
            models=models,
            locations=tuple(locs),
            quality=mat("quality"),
            cost_usd=mat("cost_usd"),
            latency_s=mat("latency_s"),
            local=mat("local"),
            model_quality=mat("model_quality"),
            failed=mat("failed", bool),
            no_answer=mat("no_answer", bool),
            expected_quality=eq,
        )


def load_truth(path: str | Path) -> LogTruth:
    """Read a ``truth.parquet`` written by :meth:`LogTruth.write`."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"truth file {p} does not exist")
    return LogTruth.from_frame(pl.read_parquet(p), source=str(p))


def true_value(pi: np.ndarray, truth: LogTruth) -> dict[str, float]:
    """``truth.value(pi)``: the true quality / cost / latency / local share of ``pi`` on the logged rows."""
    return truth.value(pi)

"""Dense, aligned numpy view of a validated outcome-matrix table.

Environments, policies and offline evaluation all work on this view: row ``i`` is one task,
column ``j`` one model, in the order of :attr:`OutcomeMatrix.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from router_rl.traces.catalog import ModelCatalog
from router_rl.traces.errors import TraceValidationError


@dataclass(frozen=True)
class OutcomeMatrix:
    """Full-information outcomes of ``n_tasks`` tasks x ``n_models`` models.

    Attributes:
        tasks: One row per task, aligned with the arrays: ``task_id`` plus every task-level
            column present (``prompt``, ``category``, ``source``, ``split``, extra features).
        models: Model ids, the column order of every array.
        quality: ``(n_tasks, n_models)`` float64 in [0, 1].
        cost: ``(n_tasks, n_models)`` float64 USD per call.
        latency: ``(n_tasks, n_models)`` float64 seconds; NaN where unknown.
        error: ``(n_tasks, n_models)`` bool, True where the call failed.
        input_tokens: ``(n_tasks, n_models)`` float64; NaN where unknown.
        output_tokens: ``(n_tasks, n_models)`` float64; NaN where unknown.
        catalog: Optional catalog covering every model (location, prices).
    """

    tasks: pl.DataFrame
    models: tuple[str, ...]
    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    error: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    catalog: ModelCatalog | None = None

    @property
    def n_tasks(self) -> int:
        """Number of tasks (rows)."""
        return int(self.quality.shape[0])

    @property
    def n_models(self) -> int:
        """Number of models (columns)."""
        return len(self.models)

    @property
    def task_ids(self) -> np.ndarray:
        """Task ids as a numpy object array."""
        return self.tasks["task_id"].to_numpy()

    @property
    def has_latency(self) -> bool:
        """True when every cell has a latency."""
        return bool(np.isfinite(self.latency).all())

    def is_local(self) -> np.ndarray:
        """``(n_models,)`` bool mask of local models (needs a catalog)."""
        if self.catalog is None:
            raise ValueError("OutcomeMatrix.is_local: this matrix has no model catalog")
        return np.array([self.catalog[m].is_local for m in self.models], dtype=bool)

    def model_index(self, model: str) -> int:
        """Column index of ``model``."""
        try:
            return self.models.index(model)
        except ValueError:
            raise KeyError(f"model {model!r} not in this matrix (models: {list(self.models)})") from None

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        df: pl.DataFrame,
        *,
        models: Sequence[str] | None = None,
        catalog: ModelCatalog | None = None,
        source: str | None = None,
        cell_columns: Sequence[str] = (),
    ) -> OutcomeMatrix:
        """Pivot a validated long outcome table into dense arrays.

        Args:
            df: Long table (one row per task x model), already validated.
            models: Column order; defaults to the catalog order if given, else sorted model ids.
            catalog: Optional catalog; must cover every model.
            source: Name for error messages.
            cell_columns: Extra per-call columns of ``df`` (e.g. ``api_calls``): not task features,
                left out of :attr:`tasks` (they stay in the long table).

        Raises:
            TraceValidationError: when a task lacks some model or a (task, model) pair repeats.
        """
        present = df["model"].unique().to_list()
        if models is None:
            models = [m for m in catalog.models if m in present] if catalog is not None else sorted(present)
        models = tuple(models)
        unknown = sorted(set(present) - set(models))
        if unknown:
            raise TraceValidationError(f"models not requested: {unknown}", source=source, column="model")
        if catalog is not None:
            missing = [m for m in models if m not in catalog]
            if missing:
                raise TraceValidationError(f"models absent from the catalog: {missing}", source=source, column="model")
        cell_cols = ("model", "quality", "cost_usd", "latency_s", "input_tokens", "output_tokens", "error",
                     *cell_columns)
        task_cols = ["task_id"] + [c for c in df.columns if c not in cell_cols and c != "task_id"]
        tasks = df.select(task_cols).unique(subset="task_id", keep="first", maintain_order=True)
        n, m = tasks.height, len(models)
        if df.height != n * m:
            counts = df.group_by("task_id").len().filter(pl.col("len") != m)
            bad = counts["task_id"].head(5).to_list()
            raise TraceValidationError(
                f"every task needs exactly one row per model ({m} models); tasks {bad} do not",
                source=source,
                column="task_id",
                n_rows=counts.height,
            )
        t_idx = {t: i for i, t in enumerate(tasks["task_id"].to_list())}
        m_idx = {mm: j for j, mm in enumerate(models)}
        ti = np.fromiter((t_idx[t] for t in df["task_id"].to_list()), dtype=np.int64, count=df.height)
        mi = np.fromiter((m_idx[x] for x in df["model"].to_list()), dtype=np.int64, count=df.height)
        flat = ti * m + mi
        if np.unique(flat).size != df.height:
            raise TraceValidationError("duplicate (task_id, model) pairs", source=source, column="model")

        def dense(col: str, fill: float = np.nan) -> np.ndarray:
            out = np.full(n * m, fill, dtype=np.float64)
            if col in df.columns:
                out[flat] = df[col].cast(pl.Float64).fill_null(fill).to_numpy()
            return out.reshape(n, m)

        err = np.zeros(n * m, dtype=bool)
        if "error" in df.columns:
            err[flat] = df["error"].is_not_null().to_numpy()
        return cls(
            tasks=tasks,
            models=models,
            quality=dense("quality", 0.0),
            cost=dense("cost_usd", 0.0),
            latency=dense("latency_s"),
            error=err.reshape(n, m),
            input_tokens=dense("input_tokens"),
            output_tokens=dense("output_tokens"),
            catalog=catalog.subset(models) if catalog is not None else None,
        )

    # --- slicing -----------------------------------------------------------------------------
    def take(self, rows: np.ndarray | Sequence[int]) -> OutcomeMatrix:
        """Rows ``rows`` (indices or a boolean mask) as a new matrix."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return OutcomeMatrix(
            tasks=self.tasks[idx.tolist()],
            models=self.models,
            quality=self.quality[idx],
            cost=self.cost[idx],
            latency=self.latency[idx],
            error=self.error[idx],
            input_tokens=self.input_tokens[idx],
            output_tokens=self.output_tokens[idx],
            catalog=self.catalog,
        )

    def split(self, name: str) -> OutcomeMatrix:
        """Tasks of split ``name`` (``train``/``val``/``test``); needs a ``split`` column."""
        if "split" not in self.tasks.columns:
            raise ValueError("OutcomeMatrix.split: no 'split' column; call router_rl.traces.assign_splits first")
        mask = (self.tasks["split"] == name).to_numpy()
        if not mask.any():
            raise ValueError(f"OutcomeMatrix.split: no task in split {name!r}")
        return self.take(mask)

    def select_models(self, models: Sequence[str]) -> OutcomeMatrix:
        """Columns ``models`` (in that order) as a new matrix."""
        cols = [self.model_index(mm) for mm in models]
        return OutcomeMatrix(
            tasks=self.tasks,
            models=tuple(models),
            quality=self.quality[:, cols],
            cost=self.cost[:, cols],
            latency=self.latency[:, cols],
            error=self.error[:, cols],
            input_tokens=self.input_tokens[:, cols],
            output_tokens=self.output_tokens[:, cols],
            catalog=self.catalog.subset(models) if self.catalog is not None else None,
        )

    # --- summaries ---------------------------------------------------------------------------
    def best_single_model(self) -> str:
        """Model with the highest mean quality (ties: the cheaper one)."""
        q = self.quality.mean(axis=0)
        c = self.cost.mean(axis=0)
        order = np.lexsort((c, -q))
        return self.models[int(order[0])]

    def oracle_actions(self) -> np.ndarray:
        """Per task, the cheapest model among those with the highest quality."""
        qmax = self.quality.max(axis=1, keepdims=True)
        masked_cost = np.where(self.quality >= qmax - 1e-12, self.cost, np.inf)
        return masked_cost.argmin(axis=1)



"""``TraceSet``: a validated long outcome table with the catalog of its models.

The on-disk form (one parquet file) is in :mod:`router_rl.traces.parquet`; reading any trace
file (saved or plain) is :func:`router_rl.traces.load.load_traces`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from router_rl.traces.catalog import ModelCatalog
from router_rl.traces.matrix import OutcomeMatrix
from router_rl.traces.validate import ValidationReport


@dataclass
class TraceSet:
    """A validated long outcome table with the catalog of its models.

    Attributes:
        outcomes: Long outcome table (see ``docs/traces.md``), validated.
        catalog: Catalog covering every model in ``outcomes`` (location, prices).
        report: What validation kept and dropped.
        meta: Free-form provenance (importer, split seed and fractions, dataset path, ...);
            ``meta["cell_columns"]`` lists extra per-call outcome columns (not task features).
        ground_truth: Optional ``(task_id, model, p_success, p_error, expected_quality)`` frame
            (simulated fleets only): the true per-cell probabilities behind ``outcomes``.
    """

    outcomes: pl.DataFrame
    catalog: ModelCatalog
    report: ValidationReport
    meta: dict[str, Any] = field(default_factory=dict)
    ground_truth: pl.DataFrame | None = None
    _matrix: OutcomeMatrix | None = field(default=None, init=False, repr=False, compare=False)

    def matrix(self) -> OutcomeMatrix:
        """Dense :class:`OutcomeMatrix` view (models in catalog order; cached)."""
        if self._matrix is None:
            self._matrix = OutcomeMatrix.from_frame(
                self.outcomes, catalog=self.catalog, source=self.meta.get("source"),
                cell_columns=tuple(self.meta.get("cell_columns") or ()),
            )
        return self._matrix

    def ground_truth_matrix(self, column: str = "expected_quality") -> np.ndarray:
        """Ground truth ``column`` as a ``(n_tasks, n_models)`` array aligned with :meth:`matrix`."""
        if self.ground_truth is None:
            raise ValueError("TraceSet.ground_truth_matrix: this trace set has no ground truth (not simulated)")
        m = self.matrix()
        tasks = m.tasks.select("task_id").with_row_index("__i")
        mods = pl.DataFrame({"model": list(m.models)}).with_row_index("__j")
        g = self.ground_truth.join(tasks, on="task_id").join(mods, on="model")
        out = np.full((m.n_tasks, m.n_models), np.nan)
        out[g["__i"].to_numpy(), g["__j"].to_numpy()] = g[column].cast(pl.Float64).to_numpy()
        return out

    @property
    def models(self) -> list[str]:
        """Model ids in catalog order."""
        return self.catalog.models

    @property
    def n_tasks(self) -> int:
        """Number of distinct tasks."""
        return int(self.outcomes["task_id"].n_unique())

    def save(self, path: str | Path) -> Path:
        """Write one parquet file (outcomes + catalog/report/meta in the key-value metadata).

        See :func:`router_rl.traces.parquet.write_parquet` for the layout.
        """
        from router_rl.traces.parquet import write_parquet

        return write_parquet(
            path,
            outcomes=self.outcomes,
            catalog=self.catalog,
            report=self.report,
            meta=self.meta,
            ground_truth=self.ground_truth,
        )

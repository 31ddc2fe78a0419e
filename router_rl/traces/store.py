"""``TraceSet``: a validated outcome table + its model catalog, stored as ONE parquet file.

The parquet file holds the long outcome table (one row per task x model). Its key-value
metadata key ``router_rl`` holds a JSON object::

    {"schema_version": 1, "catalog": [...ModelSpec dicts...], "report": {...ValidationReport...},
     "meta": {"split_seed": 0, "split_fractions": [0.7, 0.1, 0.2], "importer": "...", ...}}

When ground truth is attached (simulated fleets) it is stored as extra columns prefixed ``gt_``
(e.g. ``gt_p_success``) and split off again on load, so ``TraceSet.outcomes`` never sees them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from router_rl.traces.catalog import ModelCatalog
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.matrix import OutcomeMatrix
from router_rl.traces.schema import SCHEMA_VERSION
from router_rl.traces.validate import ValidationReport

METADATA_KEY = b"router_rl"
GT_PREFIX = "gt_"


@dataclass
class TraceSet:
    """A validated long outcome table with the catalog of its models.

    Attributes:
        outcomes: Long outcome table (see ``docs/traces.md``), validated.
        catalog: Catalog covering every model in ``outcomes`` (location, prices).
        report: What validation kept and dropped.
        meta: Free-form provenance (importer, split seed and fractions, dataset path, ...).
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
                self.outcomes, catalog=self.catalog, source=self.meta.get("source")
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
        """Write one parquet file (outcomes + catalog/report/meta in the key-value metadata)."""
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.outcomes
        if self.ground_truth is not None:
            cols = [c for c in self.ground_truth.columns if c not in ("task_id", "model")]
            gt = self.ground_truth.rename({c: GT_PREFIX + c for c in cols})
            df = df.join(gt, on=["task_id", "model"], how="left", maintain_order="left")
        table = df.to_arrow()
        payload = {
            "schema_version": SCHEMA_VERSION,
            "catalog": self.catalog.to_dict(),
            "report": self.report.to_dict(),
            "meta": self.meta,
        }
        md = dict(table.schema.metadata or {})
        md[METADATA_KEY] = json.dumps(payload).encode()
        pq.write_table(table.replace_schema_metadata(md), path, compression="zstd")
        return path


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The ``router_rl`` JSON metadata of a parquet file, or ``None`` for a plain parquet."""
    import pyarrow.parquet as pq

    md = pq.read_schema(path).metadata or {}
    raw = md.get(METADATA_KEY)
    return json.loads(raw) if raw else None


def load_traces(path: str | Path, *, drop_invalid: bool = False, seed: int = 0) -> TraceSet:
    """Load a trace set.

    Args:
        path: A parquet written by :meth:`TraceSet.save`, or a plain parquet/CSV in the long
            outcome format (then the generic ``long`` importer runs: validation, a catalog
            inferred from model names or ``location``/``provider`` columns, seeded splits).
        drop_invalid: Passed to the generic importer for plain files.
        seed: Split seed for plain files without a ``split`` column.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trace file not found: {path}")
    if path.suffix == ".parquet":
        payload = read_metadata(path)
        if payload is not None:
            return _from_saved(path, payload)
    from router_rl.traces.importers.long import import_long

    return import_long(path, drop_invalid=drop_invalid, seed=seed)


def _from_saved(path: Path, payload: dict[str, Any]) -> TraceSet:
    version = payload.get("schema_version")
    if version != SCHEMA_VERSION:
        raise TraceValidationError(
            f"unsupported trace schema_version {version!r}; expected {SCHEMA_VERSION}", source=str(path)
        )
    try:
        catalog = ModelCatalog.from_dict(payload["catalog"])
    except (KeyError, TypeError, ValueError) as e:
        raise TraceValidationError(f"invalid catalog in parquet metadata: {e}", source=str(path)) from e
    df = pl.read_parquet(path)
    gt_cols = [c for c in df.columns if c.startswith(GT_PREFIX)]
    ground_truth = None
    if gt_cols:
        ground_truth = df.select("task_id", "model", *gt_cols).rename({c: c[len(GT_PREFIX) :] for c in gt_cols})
        df = df.drop(gt_cols)
    missing = sorted(set(df["model"].unique().to_list()) - set(catalog.models))
    if missing:
        raise TraceValidationError(f"models {missing} are missing from the stored catalog", source=str(path))
    return TraceSet(
        outcomes=df,
        catalog=catalog,
        report=ValidationReport.from_dict(payload.get("report", {})),
        meta=dict(payload.get("meta", {})),
        ground_truth=ground_truth,
    )

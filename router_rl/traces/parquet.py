"""The parquet codec of a trace set: ONE parquet file per :class:`~router_rl.traces.TraceSet`.

The parquet file holds the long outcome table (one row per task x model). Its key-value
metadata key ``router_rl`` holds a JSON object::

    {"schema_version": 1, "catalog": [...ModelSpec dicts...], "report": {...ValidationReport...},
     "meta": {"split_seed": 0, "split_fractions": [0.7, 0.1, 0.2], "importer": "...", ...}}

When ground truth is attached (simulated fleets) it is stored as extra columns prefixed ``gt_``
(e.g. ``gt_p_success``) and split off again on load, so ``TraceSet.outcomes`` never sees them.

This module works on the parts of a trace set (frames, catalog, report, meta), not on
``TraceSet`` itself, so ``traceset.py`` -> ``parquet.py`` is the only edge between the two.
pyarrow is imported inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from router_rl.traces.catalog import ModelCatalog
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.schema import SCHEMA_VERSION
from router_rl.traces.validate import ValidationReport

METADATA_KEY = b"router_rl"
GT_PREFIX = "gt_"


@dataclass
class ParquetParts:
    """What :func:`read_parquet` decodes: the constructor arguments of a ``TraceSet``."""

    outcomes: pl.DataFrame
    catalog: ModelCatalog
    report: ValidationReport
    meta: dict[str, Any] = field(default_factory=dict)
    ground_truth: pl.DataFrame | None = None


def write_parquet(
    path: str | Path,
    *,
    outcomes: pl.DataFrame,
    catalog: ModelCatalog,
    report: ValidationReport,
    meta: dict[str, Any],
    ground_truth: pl.DataFrame | None = None,
) -> Path:
    """Write a trace set's parts as one zstd parquet file and return its path."""
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = outcomes
    if ground_truth is not None:
        cols = [c for c in ground_truth.columns if c not in ("task_id", "model")]
        gt = ground_truth.rename({c: GT_PREFIX + c for c in cols})
        df = df.join(gt, on=["task_id", "model"], how="left", maintain_order="left")
    table = df.to_arrow()
    payload = {
        "schema_version": SCHEMA_VERSION,
        "catalog": catalog.to_dict(),
        "report": report.to_dict(),
        "meta": meta,
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


def read_parquet(path: str | Path, payload: dict[str, Any]) -> ParquetParts:
    """Decode a parquet written by :func:`write_parquet` (``payload`` = its :func:`read_metadata`).

    Raises:
        TraceValidationError: Unsupported schema version, an unreadable catalog, or models in
            the table that the stored catalog lacks (naming the file).
    """
    path = Path(path)
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
    return ParquetParts(
        outcomes=df,
        catalog=catalog,
        report=ValidationReport.from_dict(payload.get("report", {})),
        meta=dict(payload.get("meta", {})),
        ground_truth=ground_truth,
    )

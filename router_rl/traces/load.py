"""``load_traces``: read any trace file (a saved :class:`TraceSet` or a plain long table).

It sits above both the parquet codec and the importers (``importers.long`` for plain files),
so no module below it imports it back: ``load -> importers -> traceset -> parquet``.
"""

from __future__ import annotations

from pathlib import Path

from router_rl.traces.importers.long import import_long
from router_rl.traces.parquet import read_metadata, read_parquet
from router_rl.traces.traceset import TraceSet


def load_traces(path: str | Path, *, drop_invalid: bool = False, seed: int = 0) -> TraceSet:
    """Load a trace set.

    Args:
        path: A parquet written by :meth:`TraceSet.save`, or a plain parquet/CSV in the long
            outcome format (then the generic ``long`` importer runs: validation, a catalog
            inferred from model names or ``location``/``provider`` columns, seeded splits).
        drop_invalid: Passed to the generic importer for plain files.
        seed: Split seed for plain files without a ``split`` column.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        TraceValidationError: The file is not a valid trace table (naming file, row, field).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trace file not found: {path}")
    if path.suffix == ".parquet":
        payload = read_metadata(path)
        if payload is not None:
            parts = read_parquet(path, payload)
            return TraceSet(
                outcomes=parts.outcomes,
                catalog=parts.catalog,
                report=parts.report,
                meta=parts.meta,
                ground_truth=parts.ground_truth,
            )
    return import_long(path, drop_invalid=drop_invalid, seed=seed)


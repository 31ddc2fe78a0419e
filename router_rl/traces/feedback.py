"""Feedback rows (:data:`FEEDBACK_SCHEMA`) as atomic part files: validation, writer, reader.

One row per feedback event; several rows per request are kept (one per source, or repeated over
time). ``feedback_id`` is the idempotency key: :func:`read_feedback` reports (never hides) rows
whose key repeats, and :func:`router_rl.logs.join.join_logs` keeps one row per key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from router_rl.traces.parts import PartFileError, PartWriter, read_parts
from router_rl.traces.schema import FEEDBACK_REQUIRED, FEEDBACK_SCHEMA


class FeedbackError(PartFileError):
    """A feedback row or part file is invalid; the message names the file/row/field."""


def validate_feedback_row(row: Mapping[str, Any], *, index: int | None = None) -> dict[str, Any]:
    """Check one row against :data:`FEEDBACK_SCHEMA`; returns it with every column present.

    ``ts`` / ``received_ts`` may be datetimes or POSIX seconds; ``details`` a JSON string or a dict.

    Raises:
        FeedbackError: unknown column, missing required field, quality outside [0, 1].
    """
    where = f"feedback row {index}" if index is not None else "feedback row"
    unknown = sorted(set(row) - set(FEEDBACK_SCHEMA))
    if unknown:
        raise FeedbackError(f"{where}: unknown field(s) {unknown}; expected columns of FEEDBACK_SCHEMA")
    for k in FEEDBACK_REQUIRED:
        if row.get(k) is None:
            raise FeedbackError(f"{where}, field {k!r}: required, got null")
    q = row["quality"]
    if isinstance(q, bool) or not isinstance(q, int | float) or not math.isfinite(q) or not 0.0 <= q <= 1.0:
        raise FeedbackError(f"{where}, field 'quality': expected a number in [0, 1], got {q!r}")
    out = {k: row.get(k) for k in FEEDBACK_SCHEMA}
    out["quality"] = float(q)
    if isinstance(out["details"], dict):
        out["details"] = json.dumps(out["details"], sort_keys=True)
    for k in ("ts", "received_ts"):
        v = out[k]
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[k] = datetime.fromtimestamp(float(v), tz=UTC)
        elif not isinstance(v, datetime):
            raise FeedbackError(f"{where}, field {k!r}: expected a datetime or POSIX seconds, got {v!r}")
    for k in ("feedback_id", "request_id", "source"):
        if not isinstance(out[k], str) or not out[k]:
            raise FeedbackError(f"{where}, field {k!r}: expected a non-empty string, got {out[k]!r}")
    return out


class FeedbackWriter(PartWriter):
    """Append feedback rows as atomic part files (see :class:`router_rl.traces.parts.PartWriter`)."""

    def __init__(
        self, directory: str | Path, *, batch_size: int = 256, flush_interval_s: float | None = 1.0
    ) -> None:
        super().__init__(
            directory,
            schema=FEEDBACK_SCHEMA,
            validate=validate_feedback_row,
            what="feedback",
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            error=FeedbackError,
        )


def read_feedback(directory: str | Path, *, validate: bool = True) -> pl.DataFrame:
    """Every feedback part file under ``directory`` as one frame.

    Raises:
        FileNotFoundError: the folder does not exist.
        FeedbackError: a part file is unreadable or breaks the schema (names the file).
    """
    return read_parts(directory, schema=FEEDBACK_SCHEMA, what="feedback", validate=validate, error=FeedbackError)

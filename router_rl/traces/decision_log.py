"""The decision log: one row per routed request, in :data:`DECISION_LOG_SCHEMA`.

Written by the live router and by ``router-rl traces simulate-log`` through the same
:class:`DecisionLogWriter` (so a simulated log is exactly what the router writes), as atomic
parquet part files (:mod:`router_rl.traces.parts`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from router_rl.traces.parts import PartFileError, PartWriter, read_parts
from router_rl.traces.schema import DECISION_LOG_ADDED, DECISION_LOG_REQUIRED, DECISION_LOG_SCHEMA


class DecisionLogError(PartFileError):
    """A decision-log row or part file is invalid; the message names the file/row/field."""


def validate_row(row: Mapping[str, Any], *, index: int | None = None) -> dict[str, Any]:
    """Check one row against :data:`DECISION_LOG_SCHEMA` and return it with every column present.

    Raises:
        DecisionLogError: unknown column, missing required field, propensity outside ``(0, 1]``,
            probabilities not summing to 1 or lengths not matching, chosen model not in the
            action set.
    """
    where = f"decision log row {index}" if index is not None else "decision log row"
    unknown = sorted(set(row) - set(DECISION_LOG_SCHEMA))
    if unknown:
        raise DecisionLogError(f"{where}: unknown field(s) {unknown}; expected columns of DECISION_LOG_SCHEMA")
    for k in DECISION_LOG_REQUIRED:
        if row.get(k) is None:
            raise DecisionLogError(f"{where}, field {k!r}: required, got null")
    models = list(row["action_models"])
    probs = [float(p) for p in row["action_probs"]]
    if len(models) != len(probs) or not models:
        raise DecisionLogError(
            f"{where}, field 'action_probs': expected {len(models)} probabilities (one per action_models), "
            f"got {len(probs)}"
        )
    if any(p < 0 or p > 1 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
        raise DecisionLogError(f"{where}, field 'action_probs': expected probabilities summing to 1, got {probs}")
    if row["chosen_model"] not in models:
        raise DecisionLogError(f"{where}, field 'chosen_model': {row['chosen_model']!r} not in action_models {models}")
    prop = float(row["propensity"])
    if not 0.0 < prop <= 1.0:
        raise DecisionLogError(f"{where}, field 'propensity': expected a probability in (0, 1], got {prop}")
    if abs(prop - probs[models.index(row["chosen_model"])]) > 1e-9:
        raise DecisionLogError(
            f"{where}, field 'propensity': {prop} differs from action_probs of chosen_model "
            f"{probs[models.index(row['chosen_model'])]}"
        )
    bs = row.get("breaker_states")
    if isinstance(bs, dict):
        row = {**row, "breaker_states": json.dumps(bs, sort_keys=True)}
    out = {k: row.get(k) for k in DECISION_LOG_SCHEMA}
    if isinstance(out["ts"], int | float):
        out["ts"] = datetime.fromtimestamp(float(out["ts"]), tz=UTC)
    return out


class DecisionLogWriter(PartWriter):
    """Append decision rows; flush every ``batch_size`` rows or ``flush_interval_s`` seconds.

    Args:
        directory: Folder of part files (created when missing).
        batch_size: Rows per flush.
        flush_interval_s: Background flush period; ``None`` disables the flusher thread.
        log_prompts: Keep the ``prompt`` field; when ``False`` it is forced to null.
        log_responses: Keep the ``response`` field; when ``False`` it is forced to null.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        batch_size: int = 256,
        flush_interval_s: float | None = 1.0,
        log_prompts: bool = False,
        log_responses: bool = False,
    ) -> None:
        super().__init__(
            directory,
            schema=DECISION_LOG_SCHEMA,
            validate=validate_row,
            what="decision log",
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            error=DecisionLogError,
        )
        self.log_prompts = log_prompts
        self.log_responses = log_responses

    def prepare(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Validate one row and null the text fields the operator did not opt in to."""
        r = validate_row(row)
        if not self.log_prompts:
            r["prompt"] = None
        if not self.log_responses:
            r["response"] = None
        return r


def read_decision_log(directory: str | Path, *, validate: bool = True) -> pl.DataFrame:
    """Read every part file under ``directory`` into one frame (temporaries are ignored).

    Raises:
        FileNotFoundError: the folder does not exist.
        DecisionLogError: a part file is unreadable or breaks the schema (names the file).
    """
    return read_parts(
        directory, schema=DECISION_LOG_SCHEMA, added=DECISION_LOG_ADDED, what="decision log",
        validate=validate, error=DecisionLogError,
    )

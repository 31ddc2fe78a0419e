"""Durable decision log: buffered rows flushed in batches to new parquet part files.

Every flush writes a NEW file ``part-<start>-<pid>-<seq>.parquet`` atomically: the batch is
written to a hidden temporary file in the same folder, fsync'ed, renamed into place and the
folder fsync'ed. A crash therefore loses at most the rows not yet flushed and never leaves a
half-written part file under a ``part-*.parquet`` name (temporaries start with ``.tmp-`` and are
ignored by :func:`read_decision_log`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from router_rl.traces.schema import DECISION_LOG_ADDED, DECISION_LOG_REQUIRED, DECISION_LOG_SCHEMA

log = logging.getLogger(__name__)

PART_GLOB = "part-*.parquet"


class DecisionLogError(ValueError):
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


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform / filesystem
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DecisionLogWriter:
    """Append decision rows; flush every ``batch_size`` rows or ``flush_interval_s`` seconds.

    Args:
        directory: Folder of part files (created when missing).
        batch_size: Rows per flush (a full buffer is flushed synchronously by :meth:`append`).
        flush_interval_s: A background thread flushes a non-empty buffer this often; ``None``
            disables it (flush on batch size and :meth:`close` only).
        log_prompts: Keep the ``prompt`` field; when ``False`` it is forced to null.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        batch_size: int = 256,
        flush_interval_s: float | None = 1.0,
        log_prompts: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"DecisionLogWriter.batch_size: expected >= 1, got {batch_size}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.log_prompts = log_prompts
        self._buf: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._seq = 0
        self._start = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.rows_written = 0
        self.parts_written = 0
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_interval_s is not None:
            if flush_interval_s <= 0:
                raise ValueError(f"DecisionLogWriter.flush_interval_s: expected > 0, got {flush_interval_s}")
            self._thread = threading.Thread(
                target=self._loop, args=(flush_interval_s,), name="decision-log-flusher", daemon=True
            )
            self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep the flusher alive; the error is logged
                log.exception("decision log flush failed in %s", self.directory)

    def append(self, row: Mapping[str, Any]) -> None:
        """Validate and buffer one row.

        A full buffer (``batch_size`` rows) is handed to the background flusher (no disk I/O on
        the caller's thread), or flushed synchronously when there is no flusher thread.
        """
        if self._closed:
            raise DecisionLogError(f"{self.directory}: decision log writer is closed")
        r = validate_row(row)
        if not self.log_prompts:
            r["prompt"] = None
        with self._lock:
            self._buf.append(r)
            full = len(self._buf) >= self.batch_size
        if full:
            if self._thread is not None:
                self._wake.set()
            else:
                self.flush()

    @property
    def pending(self) -> int:
        """Rows buffered and not yet on disk."""
        with self._lock:
            return len(self._buf)

    def flush(self) -> Path | None:
        """Write the buffered rows to a new part file; returns its path (``None`` if empty)."""
        with self._write_lock:
            with self._lock:
                rows, self._buf = self._buf, []
            if not rows:
                return None
            self._seq += 1
            name = f"part-{self._start}-{os.getpid()}-{self._seq:06d}.parquet"
            final = self.directory / name
            tmp = self.directory / f".tmp-{name}"
            df = pl.DataFrame(rows, schema=DECISION_LOG_SCHEMA, orient="row")
            with open(tmp, "wb") as fh:
                df.write_parquet(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.directory)
            self.rows_written += len(rows)
            self.parts_written += 1
            return final

    def close(self) -> None:
        """Stop the background flusher and flush what is left."""
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
        self._closed = True

    def __enter__(self) -> DecisionLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_decision_log(directory: str | Path, *, validate: bool = True) -> pl.DataFrame:
    """Read every part file under ``directory`` into one frame (temporaries are ignored).

    Raises:
        FileNotFoundError: the folder does not exist.
        DecisionLogError: a part file is unreadable or breaks the schema (names the file).
    """
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"decision log folder {d} does not exist")
    frames = []
    for p in sorted(d.glob(PART_GLOB)):
        try:
            df = pl.read_parquet(p)
        except Exception as e:
            raise DecisionLogError(f"{p}: unreadable parquet part file ({e})") from e
        added = [c for c in DECISION_LOG_ADDED if c not in df.columns]
        if added and all(c in df.columns for c in DECISION_LOG_SCHEMA if c not in added):
            # a part file written before these columns existed: they read as null
            df = df.with_columns([pl.lit(None, dtype=DECISION_LOG_SCHEMA[c]).alias(c) for c in added])
            df = df.select(list(DECISION_LOG_SCHEMA) + [c for c in df.columns if c not in DECISION_LOG_SCHEMA])
        if validate:
            schema = dict(df.schema)
            for col, dtype in DECISION_LOG_SCHEMA.items():
                if col not in schema:
                    raise DecisionLogError(f"{p}: column {col!r} missing")
                if schema[col] != dtype:
                    raise DecisionLogError(f"{p}: column {col!r}: expected {dtype}, got {schema[col]}")
        frames.append(df)
    if not frames:
        return pl.DataFrame(schema=DECISION_LOG_SCHEMA)
    return pl.concat(frames, how="vertical")

"""Durable tables as folders of atomic parquet part files (the decision log, the feedback store).

Every flush writes a NEW file ``part-<start>-<pid>-<seq>.parquet`` atomically: the batch is
written to a hidden temporary file in the same folder, fsync'ed, renamed into place and the
folder fsync'ed. A crash (even SIGKILL) therefore loses at most the rows not yet flushed and
never leaves a half-written part file under a ``part-*.parquet`` name (temporaries start with
``.tmp-`` and are ignored by :func:`read_parts`). A row acknowledged after :meth:`PartWriter.flush`
returned is on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

log = logging.getLogger(__name__)

PART_GLOB = "part-*.parquet"


class PartFileError(ValueError):
    """A row or part file is invalid; the message names the file/row/field."""


def fsync_dir(d: Path) -> None:
    """fsync a folder so a rename inside it is durable (a no-op where unsupported)."""
    with contextlib.suppress(OSError):  # not supported on every platform / filesystem
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class PartWriter:
    """Append validated rows; flush every ``batch_size`` rows or ``flush_interval_s`` seconds.

    Args:
        directory: Folder of part files (created when missing).
        schema: Polars dtypes of the table; every row is written with exactly these columns.
        validate: Checks one row and returns it with every column present (raises on bad input).
        what: Name of the table in error messages ("decision log", "feedback").
        batch_size: Rows per flush (a full buffer is flushed synchronously by :meth:`append`
            when there is no flusher thread, else handed to it).
        flush_interval_s: A background thread flushes a non-empty buffer this often; ``None``
            disables it (flush on batch size, :meth:`flush` and :meth:`close` only).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        schema: Mapping[str, pl.DataType],
        validate: Callable[[Mapping[str, Any]], dict[str, Any]],
        what: str,
        batch_size: int = 256,
        flush_interval_s: float | None = 1.0,
        error: type[Exception] = PartFileError,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}.batch_size: expected >= 1, got {batch_size}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = dict(schema)
        self.what = what
        self.batch_size = batch_size
        self._validate = validate
        self._error = error
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
        self._observers: list[Callable[[Sequence[dict[str, Any]]], None]] = []
        if flush_interval_s is not None:
            if flush_interval_s <= 0:
                raise ValueError(f"{type(self).__name__}.flush_interval_s: expected > 0, got {flush_interval_s}")
            self._thread = threading.Thread(
                target=self._loop, args=(flush_interval_s,), name=f"{what.replace(' ', '-')}-flusher", daemon=True
            )
            self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep the flusher alive; the error is logged
                log.exception("%s flush failed in %s", self.what, self.directory)

    def add_observer(self, fn: Callable[[Sequence[dict[str, Any]]], None]) -> None:
        """Call ``fn(rows)`` with every batch :meth:`extend` accepts (validated, before any flush).

        Runs on the appending thread, after the rows are buffered; an observer that raises is
        logged and does not affect the writer (e.g. the router's index of known request ids).
        """
        self._observers.append(fn)

    def prepare(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Validate one row (subclasses add redaction); returns the row to buffer."""
        return self._validate(row)

    def append(self, row: Mapping[str, Any]) -> None:
        """Validate and buffer one row (no disk I/O on the caller's thread with a flusher)."""
        self.extend([row])

    def extend(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Validate every row first, then buffer them all (none is buffered if one is invalid)."""
        if self._closed:
            raise self._error(f"{self.directory}: {self.what} writer is closed")
        ready = [self.prepare(r) for r in rows]
        with self._lock:
            self._buf.extend(ready)
            full = len(self._buf) >= self.batch_size
        for fn in self._observers:
            try:
                fn(ready)
            except Exception:  # an observer never breaks the writer; the error is logged
                log.exception("%s observer %r failed", self.what, fn)
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
            while True:  # never replace an existing part (a writer restarted in the same second and pid)
                self._seq += 1
                name = f"part-{self._start}-{os.getpid()}-{self._seq:06d}.parquet"
                final = self.directory / name
                tmp = self.directory / f".tmp-{name}"
                if not final.exists() and not tmp.exists():
                    break
            df = pl.DataFrame(rows, schema=self.schema, orient="row")
            with open(tmp, "wb") as fh:
                df.write_parquet(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            fsync_dir(self.directory)
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

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_parts(
    directory: str | Path,
    *,
    schema: Mapping[str, pl.DataType],
    added: Sequence[str] = (),
    what: str,
    validate: bool = True,
    error: type[Exception] = PartFileError,
) -> pl.DataFrame:
    """Read every part file under ``directory`` into one frame (temporaries are ignored).

    Args:
        directory: The folder.
        schema: Expected columns and dtypes.
        added: Columns added after the first layout: part files written before them read as null.
        what: Table name for messages.
        validate: Check every part's columns and dtypes.
        error: Exception class raised for a bad part file.

    Raises:
        FileNotFoundError: the folder does not exist.
        PartFileError: (or ``error``) a part file is unreadable or breaks the schema (names the file).
    """
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{what} folder {d} does not exist")
    frames = []
    for p in sorted(d.glob(PART_GLOB)):
        try:
            df = pl.read_parquet(p)
        except Exception as e:
            raise error(f"{p}: unreadable parquet part file ({e})") from e
        missing = [c for c in added if c not in df.columns]
        if missing and all(c in df.columns for c in schema if c not in missing):
            df = df.with_columns([pl.lit(None, dtype=schema[c]).alias(c) for c in missing])
            df = df.select(list(schema) + [c for c in df.columns if c not in schema])
        if validate:
            have = dict(df.schema)
            for col, dtype in schema.items():
                if col not in have:
                    raise error(f"{p}: column {col!r} missing")
                if have[col] != dtype:
                    raise error(f"{p}: column {col!r}: expected {dtype}, got {have[col]}")
        frames.append(df)
    if not frames:
        return pl.DataFrame(schema=dict(schema))
    return pl.concat(frames, how="vertical")

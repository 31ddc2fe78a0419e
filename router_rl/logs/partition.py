"""Partitioned logs: hive-style folders by day (and policy version), compaction of part files, lazy scans.

(Over 500 lines on purpose: one concept, the partitioned folder: its layout, the pruned scan that
reads it and the compaction that writes it share the path conventions and the manifest, and the
crash-recovery rules below only make sense next to both.)

The router writes many small atomic part files (:mod:`router_rl.traces.parts`, one per flush).
At 10M decisions a day that is tens of thousands of files a day; :func:`compact` turns them into

``ROOT/day=YYYY-MM-DD/policy_version=<quoted>/part-<batch>-<nnnn>.parquet`` (decisions, joined logs)
``ROOT/day=YYYY-MM-DD/part-<batch>-<nnnn>.parquet``                          (feedback)

where the day is the UTC day of ``ts`` (decisions, joined logs) or of ``received_ts`` (feedback:
the day a label *arrived*, so a late label lands in a later day's partition), rows sorted by that
time inside each file (row-group statistics then prune time ranges too). ``<quoted>`` is
:func:`urllib.parse.quote` of the version (no ``/`` in folder names). Every file keeps every column of
its schema (``policy_version`` too): the folder names only serve pruning (:func:`partition_files`).

Compaction is atomic and idempotent, with ``ROOT/_compaction.json`` (the manifest) as the commit point:

1. list the source part files not consumed yet (a part the router writes later is left for the
   next run; the writer renames complete files into place, so a listed part is complete);
2. read and validate them (a bad part stops the run before anything is written, naming the file);
3. write the output files under hidden ``.tmp-part-...`` names, fsynced;
4. **commit**: write the manifest (temporary file + ``os.replace``) recording the batch, its
   source names and output paths and the row counts;
5. roll forward: rename the outputs into place and, with ``remove_sources``, delete the sources;
   then mark the batch ``done``.

A crash before 4 leaves only hidden temporaries (deleted by the next run, whose sources are then
read again); after 4 the next run finishes step 5 first. So a rerun never duplicates a row and a
crash never loses one (tests/logs/test_partition_compact.py crashes the run at every file
operation). Between 4 and 5 a reader misses the batch's rows (never sees them twice). One
compaction per destination at a time (``fcntl`` lock on ``ROOT/.lock``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import polars as pl

from router_rl.traces.parts import PART_GLOB, fsync_dir

#: Tables that can be partitioned: name -> (time column giving the day, partitioned by policy version).
TABLES: dict[str, tuple[str, bool]] = {
    "decisions": ("ts", True),
    "feedback": ("received_ts", False),
    "logged": ("ts", True),
}
MANIFEST = "_compaction.json"
MANIFEST_FORMAT = 1
_DAY_RE = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
_PV = "policy_version="

DayLike = str | date
DayRange = tuple[DayLike | None, DayLike | None]


class PartitionError(ValueError):
    """A partitioned folder, a part file or an argument is invalid; the message names it."""


def table_schema(table: str) -> tuple[dict[str, pl.DataType], tuple[str, ...], type[ValueError]]:
    """``(schema, columns added later, error class)`` of ``table`` (``decisions``, ``feedback``, ``logged``)."""
    from router_rl.traces.decision_log import DecisionLogError
    from router_rl.traces.feedback import FeedbackError
    from router_rl.traces.schema import DECISION_LOG_ADDED, DECISION_LOG_SCHEMA, FEEDBACK_SCHEMA, LOGGED_SCHEMA

    if table == "decisions":
        return dict(DECISION_LOG_SCHEMA), tuple(DECISION_LOG_ADDED), DecisionLogError
    if table == "feedback":
        return dict(FEEDBACK_SCHEMA), (), FeedbackError
    if table == "logged":
        return dict(LOGGED_SCHEMA), (), PartitionError
    raise PartitionError(f"table: expected one of {list(TABLES)}, got {table!r}")


def as_day(v: DayLike, *, what: str = "day") -> date:
    """A ``date`` from ``YYYY-MM-DD`` text or a date (raises :class:`PartitionError` naming ``what``)."""
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(str(v))
    except ValueError:
        raise PartitionError(f"{what}: expected a day YYYY-MM-DD, got {v!r}") from None


def parse_day_range(text: str | None) -> DayRange:
    """``"2026-12-01..2026-12-07"`` / ``"2026-12-01.."`` / ``"..2026-12-07"`` / ``"2026-12-01"`` -> a range."""
    if text is None or text == "":
        return (None, None)
    lo, sep, hi = text.partition("..")
    if not sep:
        d = as_day(lo, what="days")
        return (d, d)
    start = as_day(lo, what="days") if lo else None
    end = as_day(hi, what="days") if hi else None
    if start is not None and end is not None and end < start:
        raise PartitionError(f"days: the range {text!r} ends before it starts")
    return (start, end)


def partition_dir(root: Path, table: str, day: date, policy_version: str | None) -> Path:
    """The folder of one partition."""
    d = Path(root) / f"day={day.isoformat()}"
    if TABLES[table][1]:
        if policy_version is None:
            raise PartitionError(f"{table}: partitioned by policy version, got none")
        d = d / f"{_PV}{quote(policy_version, safe='')}"
    return d


@dataclass(frozen=True)
class PartitionFile:
    """One file of a partitioned folder: its day, policy version (None for feedback) and path."""

    day: date
    policy_version: str | None
    path: Path


def list_partitions(root: str | Path, table: str) -> list[PartitionFile]:
    """Every ``part-*.parquet`` of a partitioned folder (hidden temporaries ignored), sorted.

    Raises:
        FileNotFoundError: no such folder.
        PartitionError: a folder name that is not ``day=YYYY-MM-DD`` / ``policy_version=...``.
    """
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"partitioned {table} folder {r} does not exist")
    by_version = TABLES[table][1] if table in TABLES else None
    if by_version is None:
        raise PartitionError(f"table: expected one of {list(TABLES)}, got {table!r}")
    out: list[PartitionFile] = []
    for dd in sorted(p for p in r.iterdir() if p.is_dir() and not p.name.startswith(".")):
        m = _DAY_RE.match(dd.name)
        if not m:
            raise PartitionError(f"{dd}: expected a folder named day=YYYY-MM-DD in a partitioned {table} folder")
        day = as_day(m.group(1), what=str(dd))
        if not by_version:
            out.extend(PartitionFile(day, None, p) for p in sorted(dd.glob(PART_GLOB)))
            continue
        for vd in sorted(p for p in dd.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not vd.name.startswith(_PV):
                raise PartitionError(f"{vd}: expected a folder named policy_version=... under {dd.name}")
            version = unquote(vd.name[len(_PV):])
            out.extend(PartitionFile(day, version, p) for p in sorted(vd.glob(PART_GLOB)))
    return out


def partition_files(
    root: str | Path,
    table: str,
    *,
    days: DayRange | None = None,
    policy_versions: Sequence[str] | None = None,
) -> list[PartitionFile]:
    """The files of the partitions in ``days`` (inclusive, either end open) and ``policy_versions``.

    This is the pruning step of a scan: files outside the range are never opened.
    """
    start, end = days or (None, None)
    lo = as_day(start, what="days") if start is not None else None
    hi = as_day(end, what="days") if end is not None else None
    want = set(policy_versions) if policy_versions is not None else None
    if want is not None and not TABLES[table][1]:
        raise PartitionError(f"policy_versions: the {table} table is not partitioned by policy version")
    return [
        f for f in list_partitions(root, table)
        if (lo is None or f.day >= lo) and (hi is None or f.day <= hi)
        and (want is None or f.policy_version in want)
    ]


def check_file_schema(path: Path, schema: Mapping[str, pl.DataType], error: type[Exception]) -> None:
    """Check a parquet file's columns and dtypes from its footer (no data read)."""
    try:
        have = pl.read_parquet_schema(path)
    except Exception as e:
        raise error(f"{path}: unreadable parquet file ({e})") from e
    for col, dtype in schema.items():
        if col not in have:
            raise error(f"{path}: column {col!r} missing")
        if have[col] != dtype:
            raise error(f"{path}: column {col!r}: expected {dtype}, got {have[col]}")


def scan_table(
    root: str | Path,
    table: str,
    *,
    days: DayRange | None = None,
    policy_versions: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    validate: bool = True,
) -> pl.LazyFrame:
    """A polars lazy scan of the partitions in range (pruned by folder, every file's schema checked).

    Filters and projections applied to the result are pushed down to the parquet reader (row
    groups whose statistics exclude a filter are skipped). An empty selection scans to an empty
    frame of the table's schema.

    Args:
        root: The partitioned folder.
        table: ``decisions``, ``feedback`` or ``logged``.
        days: ``(first, last)`` day, inclusive; ``None`` ends are open.
        policy_versions: Keep these versions only (tables partitioned by version).
        columns: Project to these columns.
        validate: Check every selected file's schema from its footer.
    """
    schema, _, error = table_schema(table)
    files = partition_files(root, table, days=days, policy_versions=policy_versions)
    if validate:
        for f in files:
            check_file_schema(f.path, schema, error)
    if not files:
        lf = pl.DataFrame(schema=schema).lazy()
    else:
        lf = pl.scan_parquet([str(f.path) for f in files], hive_partitioning=False)
    return lf.select(list(columns)) if columns is not None else lf


def day_expr(column: str) -> pl.Expr:
    """The UTC day of a timestamp column as a polars ``Date``."""
    return pl.col(column).dt.convert_time_zone("UTC").dt.date()


# --- compaction --------------------------------------------------------------------------------
@dataclass
class CompactReport:
    """What one :func:`compact` run did (every row and part accounted for).

    Attributes:
        table: The table compacted.
        source_parts: Part files listed in the source folder.
        already_compacted: Of those, parts a previous run consumed (skipped; with
            ``remove_sources`` the previous run's leftovers are deleted instead).
        parts_read: Parts consumed by this run.
        rows_read: Rows of those parts.
        rows_written: Rows written to partitions (always equal to ``rows_read``).
        files_written: Output files.
        partitions: ``"day=.../policy_version=..."`` -> rows written there.
        recovered_batches: Batches of a crashed run finished (roll forward) by this one.
        removed_temporaries: Hidden outputs of a crashed, uncommitted run deleted.
        sources_removed: Source parts deleted (``remove_sources``).
        batch: This run's batch id (None when there was nothing to do).
    """

    table: str
    source_parts: int = 0
    already_compacted: int = 0
    parts_read: int = 0
    rows_read: int = 0
    rows_written: int = 0
    files_written: int = 0
    partitions: dict[str, int] = field(default_factory=dict)
    recovered_batches: int = 0
    removed_temporaries: int = 0
    sources_removed: int = 0
    batch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _read_source_part(path: Path, schema: Mapping[str, pl.DataType], added: Sequence[str],
                      error: type[Exception]) -> pl.DataFrame:
    """One source part, columns added after its layout filled with nulls (as ``read_parts`` does)."""
    try:
        df = pl.read_parquet(path)
    except Exception as e:
        raise error(f"{path}: unreadable parquet part file ({e})") from e
    missing = [c for c in added if c not in df.columns]
    if missing:
        df = df.with_columns([pl.lit(None, dtype=schema[c]).alias(c) for c in missing])
    have = dict(df.schema)
    for col, dtype in schema.items():
        if col not in have:
            raise error(f"{path}: column {col!r} missing")
        if have[col] != dtype:
            raise error(f"{path}: column {col!r}: expected {dtype}, got {have[col]}")
    extra = [c for c in df.columns if c not in schema]
    if extra:
        raise error(f"{path}: unknown column(s) {extra}")
    return df.select(list(schema))


def _load_manifest(dest: Path, table: str) -> dict[str, Any]:
    p = dest / MANIFEST
    if not p.is_file():
        return {"format": MANIFEST_FORMAT, "table": table, "batches": [], "consumed": {}}
    try:
        man = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PartitionError(f"{p}: unreadable compaction manifest ({e})") from e
    if man.get("table") != table:
        raise PartitionError(f"{p}: this folder holds the {man.get('table')!r} table, not {table!r}")
    return man


def _write_manifest(dest: Path, man: dict[str, Any]) -> None:
    from router_rl.registry.files import atomic_write_json

    atomic_write_json(dest / MANIFEST, man)


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".tmp-{final.name}")


def _roll_forward(dest: Path, man: dict[str, Any], rep: CompactReport) -> None:
    """Finish committed batches (rename outputs, delete sources); delete uncommitted temporaries."""
    committed: set[str] = set()
    for b in man["batches"]:
        committed.update(b["outputs"])
        if b["state"] == "done":
            continue
        for rel in b["outputs"]:
            final = dest / rel
            tmp = _tmp_name(final)
            if tmp.exists():
                os.replace(tmp, final)
                fsync_dir(final.parent)
            elif not final.exists():
                raise PartitionError(f"{final}: output of committed batch {b['batch']} is missing (and no temporary)")
        if b.get("remove_sources"):
            source = Path(b["source"])
            for name in b["sources"]:
                with contextlib.suppress(FileNotFoundError):
                    (source / name).unlink()
                    rep.sources_removed += 1
            fsync_dir(source)
            b["sources"] = []  # deleted: no longer needed to skip them
        b["state"] = "done"
        rep.recovered_batches += 1 if b["batch"] != rep.batch else 0
        _write_manifest(dest, man)
    for tmp in dest.glob(f".tmp-{MANIFEST}-*"):  # a manifest write that never reached its os.replace
        tmp.unlink()
    for tmp in dest.rglob(".tmp-part-*.parquet"):
        if tmp.relative_to(dest).with_name(tmp.name[len(".tmp-"):]).as_posix() not in committed:
            tmp.unlink()
            rep.removed_temporaries += 1


def compact(
    source: str | Path,
    dest: str | Path,
    *,
    table: str = "decisions",
    remove_sources: bool = False,
    max_rows_per_file: int = 1_000_000,
    batch_rows: int = 2_000_000,
    batch_id: str | None = None,
) -> CompactReport:
    """Move the source part files not consumed yet into day / policy-version partitions.

    Args:
        source: The router's part-file folder (``decisions/`` or ``feedback/``).
        dest: The partitioned folder (created when missing).
        table: ``decisions`` or ``feedback``.
        remove_sources: Delete the consumed source parts after the commit (else they stay, and
            the manifest remembers their names per source folder, by absolute path, so a rerun
            skips them: do not move a kept source folder).
        max_rows_per_file: Split a partition's rows of one batch into files of at most this many.
        batch_rows: Read at most about this many rows per batch (memory bound): the new parts are
            committed in batches of whole part files, each atomic on its own (a crash keeps the
            batches committed before it). Every new part's footer is checked before the first.
        batch_id: Name of this run's batch (default: UTC time, pid).

    Returns:
        A :class:`CompactReport` (rows read == rows written, asserted).

    Raises:
        FileNotFoundError: the source folder does not exist.
        PartitionError / DecisionLogError / FeedbackError: bad arguments, a foreign manifest, or a
            source part that is unreadable or breaks the schema (named; nothing is written: every
            footer is checked first), or a row without its time (named; the batches before it stay).
    """
    from router_rl.registry.files import flock

    if table not in ("decisions", "feedback"):
        raise PartitionError(f"table: expected 'decisions' or 'feedback' (part files), got {table!r}")
    if max_rows_per_file < 1 or batch_rows < 1:
        raise PartitionError(f"max_rows_per_file / batch_rows: expected >= 1, got {max_rows_per_file} / {batch_rows}")
    src, out = Path(source), Path(dest)
    if not src.is_dir():
        raise FileNotFoundError(f"{table} folder {src} does not exist")
    if src.resolve() == out.resolve():
        raise PartitionError(f"dest: must differ from the source folder {src}")
    schema, added, error = table_schema(table)
    out.mkdir(parents=True, exist_ok=True)
    rep = CompactReport(table=table)
    with flock(out / ".lock"):
        man = _load_manifest(out, table)
        _roll_forward(out, man, rep)
        key = str(src.resolve())  # several source folders (router replicas) may feed one destination
        consumed = set(man["consumed"].get(key, []))
        listing = sorted(src.glob(PART_GLOB))
        rep.source_parts = len(listing)
        new = [p for p in listing if p.name not in consumed]
        old = [p for p in listing if p.name in consumed]
        rep.already_compacted = len(old)
        if remove_sources:  # parts consumed while sources were kept, now removal is asked: delete them
            for p in old:
                p.unlink()
                rep.sources_removed += 1
            if old:
                fsync_dir(src)
        if not new:
            return rep
        rows_of = {p: _footer_rows(p, schema, added, error) for p in new}  # every footer checked first
        chunks: list[list[Path]] = [[]]
        acc = 0
        for p in new:
            if chunks[-1] and acc + rows_of[p] > batch_rows:
                chunks.append([])
                acc = 0
            chunks[-1].append(p)
            acc += rows_of[p]
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        base = batch_id or f"{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
        for c, chunk in enumerate(chunks):
            rep.batch = base if len(chunks) == 1 else f"{base}-{c:04d}"
            _compact_chunk(out, key, chunk, man, rep, table=table, remove_sources=remove_sources,
                           max_rows_per_file=max_rows_per_file)
        rep.batch = base
    return rep


def _footer_rows(path: Path, schema: Mapping[str, pl.DataType], added: Sequence[str], error: type[Exception]) -> int:
    """Rows of a source part from its footer, whose columns are checked (no data read)."""
    try:
        have = pl.read_parquet_schema(path)
        n = int(pl.scan_parquet(path).select(pl.len()).collect().item())
    except Exception as e:
        raise error(f"{path}: unreadable parquet part file ({e})") from e
    for col, dtype in schema.items():
        if col not in have and col not in added:
            raise error(f"{path}: column {col!r} missing")
        if col in have and have[col] != dtype:
            raise error(f"{path}: column {col!r}: expected {dtype}, got {have[col]}")
    return n


def _compact_chunk(out: Path, key: str, chunk: list[Path], man: dict[str, Any], rep: CompactReport, *, table: str,
                   remove_sources: bool, max_rows_per_file: int) -> None:
    """Read, partition, write (hidden), commit and roll forward one batch of source parts."""
    schema, added, error = table_schema(table)
    time_col, by_version = TABLES[table]
    batch = rep.batch or ""
    df = pl.concat([_read_source_part(p, schema, added, error) for p in chunk], how="vertical")
    nulls = df[time_col].is_null()
    if nulls.any():
        i = int(nulls.arg_max() or 0)
        raise error(f"{table}: {int(nulls.sum())} row(s) without {time_col!r} (first: row {i} of batch {batch})")
    rep.parts_read += len(chunk)
    rep.rows_read += df.height
    keys = ["__day", "policy_version"] if by_version else ["__day"]
    df = df.with_columns(day_expr(time_col).alias("__day"))
    outputs: list[str] = []
    counts: dict[str, int] = {}
    for pkey, part in sorted(df.partition_by(keys, as_dict=True, maintain_order=True).items(),
                             key=lambda kv: tuple(str(x) for x in kv[0])):
        day = pkey[0]
        version = str(pkey[1]) if by_version else None
        pdir = partition_dir(out, table, day, version)
        pdir.mkdir(parents=True, exist_ok=True)
        part = part.drop("__day").sort(time_col, maintain_order=True)
        label = pdir.relative_to(out).as_posix()
        counts[label] = part.height
        for j, start in enumerate(range(0, part.height, max_rows_per_file)):
            final = pdir / f"part-{batch}-{j:04d}.parquet"
            if final.exists():
                raise PartitionError(f"{final}: exists already (batch id {batch!r} reused)")
            tmp = _tmp_name(final)
            with open(tmp, "wb") as fh:
                part.slice(start, max_rows_per_file).write_parquet(fh, statistics=True)
                fh.flush()
                os.fsync(fh.fileno())
            outputs.append(final.relative_to(out).as_posix())
        fsync_dir(pdir)
    written = sum(counts.values())
    if written != df.height:  # pragma: no cover - partition_by keeps every row
        raise PartitionError(f"{table}: wrote {written} rows of {df.height} read")
    for label, c in counts.items():
        rep.partitions[label] = rep.partitions.get(label, 0) + c
    rep.rows_written += written
    rep.files_written += len(outputs)
    man["batches"].append({
        "batch": batch, "state": "committed", "created_at": datetime.now().astimezone().isoformat(),
        "source": key, "sources": [p.name for p in chunk], "outputs": outputs, "rows": df.height,
        "partitions": counts, "remove_sources": remove_sources,
    })
    if not remove_sources:
        man["consumed"][key] = sorted(set(man["consumed"].get(key, [])) | {p.name for p in chunk})
    _write_manifest(out, man)  # the commit point
    _roll_forward(out, man, rep)


def partition_counts(root: str | Path, table: str, *, days: DayRange | None = None) -> dict[str, int]:
    """Rows per ``day=.../policy_version=...`` partition (from the parquet footers, no data read)."""
    counts: dict[str, int] = {}
    for f in partition_files(root, table, days=days):
        key = f"day={f.day.isoformat()}" + (f"/{_PV}{f.policy_version}" if f.policy_version is not None else "")
        counts[key] = counts.get(key, 0) + int(pl.scan_parquet(f.path).select(pl.len()).collect().item())
    return counts


"""``logs join`` over partitioned logs: one day at a time, late labels included, optionally on Ray.

Input: a partitioned decision log and a partitioned feedback store (:func:`router_rl.logs.partition.compact`),
output: a partitioned joined log ``OUT/day=D/policy_version=V/part-0.parquet`` in
:data:`~router_rl.traces.schema.LOGGED_SCHEMA`, each day produced by
:func:`router_rl.logs.join.join_frames` (the same label rule and counts as the flat ``logs join``).

1. **Index** (one lazy scan of three columns): ``request_id``, ``ts``, ``encoder_fingerprint`` and
   whether the row has features, of the days asked for. It gives each request id its *owner day*
   (the day of its first decision by ``ts``; a repeat on a later day is excluded and counted as
   ``cross_day_duplicates``) and the reference encoder fingerprint over all the days (the majority,
   as the flat join computes it, unless ``expect_fingerprint`` is given).
2. **Feedback** received from ``first day - feedback_skew_days`` on (a lazy scan pruned by the
   ``received_ts`` day partitions: a label that arrives days later sits in a later partition and
   is found) is tagged with the owner day of its request id. Feedback whose request id is in none
   of the joined days is counted (``feedback_outside_days``: orphans when the days cover the whole
   log, else possibly feedback of other days).
3. **Per day**: that day's decisions (a scan of its partitions) and its tagged feedback go through
   ``join_frames``; the day's output folder is written under a hidden name and swapped in
   (``os.replace`` of the folder), so a rerun replaces a day whole and a reader never sees half of
   one. Days are independent: with ``workers >= 1`` they run as Ray tasks (one CPU each).

Rerun the join of the last few days as late labels arrive (``days="2026-11-24.."``): earlier days
are left as they are.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from router_rl.logs.join import JoinReport, check_label_rule, join_frames
from router_rl.logs.partition import (
    DayRange,
    PartitionError,
    check_file_schema,
    day_expr,
    partition_dir,
    partition_files,
    scan_table,
    table_schema,
)

if TYPE_CHECKING:
    from router_rl.traces.catalog import ModelCatalog

_DAY = "__day"


@dataclass
class PartitionedJoinReport:
    """What :func:`join_partitioned` did.

    Attributes:
        total: The per-day :class:`JoinReport` counts summed (``orphan_feedback`` holds
            ``feedback_outside_days`` when every day of the log was joined).
        days: ``YYYY-MM-DD`` -> that day's :class:`JoinReport` (as a dict).
        cross_day_duplicates: Decision rows whose request id already has a decision on an earlier
            day (excluded, counted; also in ``total.duplicate_decisions``).
        feedback_scanned: Feedback rows read (received from ``feedback_from`` on).
        feedback_from: First feedback day read (None: no feedback folder).
        feedback_outside_days: Feedback rows whose request id has no decision in the joined days.
        all_days: The joined days cover every day partition of the decision log.
        workers: Ray workers used (0: in process).
        files: Output files written.
    """

    total: JoinReport = field(default_factory=JoinReport)
    days: dict[str, dict[str, Any]] = field(default_factory=dict)
    cross_day_duplicates: int = 0
    feedback_scanned: int = 0
    feedback_from: str | None = None
    feedback_outside_days: int = 0
    all_days: bool = True
    workers: int = 0
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["total"] = self.total.to_dict()
        return d


def merge_reports(reports: Sequence[JoinReport]) -> JoinReport:
    """Sum the counts of several :class:`JoinReport` (dict counts summed key by key)."""
    out = JoinReport(label_rule=reports[0].label_rule if reports else "mean")
    for r in reports:
        for f in fields(JoinReport):
            v = getattr(r, f.name)
            if isinstance(v, bool) or f.name in ("label_rule", "reference_fingerprint"):
                continue
            if isinstance(v, int):
                setattr(out, f.name, getattr(out, f.name) + v)
            elif isinstance(v, dict):
                acc = getattr(out, f.name)
                for k, c in v.items():
                    acc[k] = acc.get(k, 0) + c
        out.reference_fingerprint = out.reference_fingerprint or r.reference_fingerprint
    return out


def write_day(out_root: Path, day: date, table: pl.DataFrame) -> list[str]:
    """Write one day of a joined log (one file per policy version) and swap it in whole."""
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / f"day={day.isoformat()}"
    tmp = out_root / f".tmp-day={day.isoformat()}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    written: list[str] = []
    groups = table.partition_by("policy_version", as_dict=True, maintain_order=True) if table.height else {}
    for key, part in sorted(groups.items(), key=lambda kv: str(kv[0][0])):
        pdir = partition_dir(tmp, "logged", day, str(key[0])).relative_to(tmp / final.name)
        target = tmp / pdir
        target.mkdir(parents=True, exist_ok=True)
        f = target / "part-0.parquet"
        with open(f, "wb") as fh:
            part.sort("ts", maintain_order=True).write_parquet(fh, statistics=True)
            fh.flush()
            os.fsync(fh.fileno())
        written.append((final / pdir / f.name).relative_to(out_root).as_posix())
    tmp.mkdir(exist_ok=True)
    old = out_root / f".old-day={day.isoformat()}-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return written


def _join_one_day(
    decisions_root: str, out_root: str, day: date, feedback: pl.DataFrame, drop_ids: pl.Series, kw: dict[str, Any]
) -> tuple[str, dict[str, Any], list[str]]:
    dec = scan_table(decisions_root, "decisions", days=(day, day), validate=False).collect()
    if drop_ids.len():
        dec = dec.filter(~pl.col("request_id").is_in(drop_ids.implode()))
    table, rep = join_frames(dec, feedback, **kw)
    files = write_day(Path(out_root), day, table)
    return day.isoformat(), rep.to_dict(), files


def join_partitioned(
    decisions_root: str | Path,
    feedback_root: str | Path | None,
    out_root: str | Path,
    *,
    days: DayRange | None = None,
    label_rule: str = "mean",
    source_priority: Sequence[str] | None = None,
    catalog: ModelCatalog | None = None,
    expect_fingerprint: str | None = None,
    drop_unusable: bool = False,
    feedback_skew_days: int = 1,
    workers: int = 0,
) -> PartitionedJoinReport:
    """Join a partitioned decision log with partitioned feedback, day by day (module docstring).

    Args:
        decisions_root: Partitioned decision log (``day=/policy_version=`` folders).
        feedback_root: Partitioned feedback (``day=`` of ``received_ts``), or None.
        out_root: Output folder (days joined are replaced whole; other days are left alone).
        days: ``(first, last)`` days to join, inclusive (None ends: open).
        label_rule / source_priority / catalog / expect_fingerprint / drop_unusable: As
            :func:`router_rl.logs.join.join_logs`.
        feedback_skew_days: Also read feedback received this many days before the first day
            (clients' clocks and the day boundary).
        workers: 0 joins the days in this process; ``>= 1`` runs them as Ray tasks on that many CPUs
            (a running Ray is used as it is).

    Raises:
        FileNotFoundError: a folder does not exist.
        PartitionError: a bad folder name or argument; DecisionLogError / FeedbackError: a file
            breaks its schema (named); JoinError: as ``join_logs``.
    """
    check_label_rule(label_rule, source_priority)
    if feedback_skew_days < 0:
        raise PartitionError(f"feedback_skew_days: expected >= 0, got {feedback_skew_days}")
    if workers < 0:
        raise PartitionError(f"workers: expected >= 0, got {workers}")
    dec_schema, _, dec_error = table_schema("decisions")
    files = partition_files(decisions_root, "decisions", days=days)
    for f in files:
        check_file_schema(f.path, dec_schema, dec_error)
    rep = PartitionedJoinReport(workers=workers)
    rep.all_days = {f.day for f in files} == {f.day for f in partition_files(decisions_root, "decisions")}
    day_list = sorted({f.day for f in files})

    # --- 1. the index: owner day per request id, the reference fingerprint over every day
    idx = (
        scan_table(decisions_root, "decisions", days=days, validate=False)
        .select("request_id", "ts", "encoder_fingerprint", pl.col("features").is_not_null().alias("__feat"))
        .with_columns(day_expr("ts").alias(_DAY))
        .collect()
    )
    ref = expect_fingerprint
    if ref is None:
        fps = idx.filter(pl.col("__feat") & pl.col("encoder_fingerprint").is_not_null()).group_by(
            "encoder_fingerprint").len().sort(["len", "encoder_fingerprint"], descending=[True, False])
        ref = fps["encoder_fingerprint"][0] if fps.height else None
    owner = idx.select("request_id", "ts", _DAY).with_row_index("__o")
    if owner["request_id"].n_unique() != owner.height:
        first = owner.sort("ts", "__o").unique(subset="request_id", keep="first", maintain_order=False)
        first = first.select("request_id", pl.col(_DAY).alias("__owner"))
        repeats = owner.join(first, on="request_id").filter(pl.col(_DAY) != pl.col("__owner"))
        rep.cross_day_duplicates = repeats.height
        drop = {d: g["request_id"].unique() for (d,), g in repeats.partition_by(_DAY, as_dict=True).items()}
        owner = first.rename({"__owner": _DAY})
    else:
        drop = {}
        owner = owner.select("request_id", _DAY)
    del idx

    # --- 2. feedback from the first day (minus the skew) on, tagged with the owner day
    if feedback_root is not None and day_list:
        start = day_list[0] - timedelta(days=feedback_skew_days)
        rep.feedback_from = start.isoformat()
        fb = scan_table(feedback_root, "feedback", days=(start, None)).collect()
        rep.feedback_scanned = fb.height
        fb = fb.join(owner, on="request_id", how="left")
        rep.feedback_outside_days = int(fb[_DAY].is_null().sum())
        per_day = {d: g.drop(_DAY) for (d,), g in fb.filter(pl.col(_DAY).is_not_null())
                   .partition_by(_DAY, as_dict=True).items()}
        del fb
    else:
        per_day = {}
    del owner
    empty_fb = pl.DataFrame(schema=table_schema("feedback")[0])
    kw = dict(label_rule=label_rule, source_priority=source_priority, catalog=catalog, expect_fingerprint=ref,
              drop_unusable=drop_unusable)
    empty_ids = pl.Series("request_id", [], dtype=pl.Utf8)
    jobs = [(d, per_day.get(d, empty_fb), drop.get(d, empty_ids)) for d in day_list]

    # --- 3. per day
    results: list[tuple[str, dict[str, Any], list[str]]]
    if workers == 0:
        results = [_join_one_day(str(decisions_root), str(out_root), d, f, x, kw) for d, f, x in jobs]
    else:
        results = _run_on_ray(str(decisions_root), str(out_root), jobs, kw, workers)
    reports = []
    for day, d, written in sorted(results):
        rep.days[day] = d
        reports.append(JoinReport(**d))
        rep.files.extend(written)
    rep.total = merge_reports(reports) if reports else JoinReport(label_rule=label_rule)
    rep.total.reference_fingerprint = ref
    rep.total.duplicate_decisions += rep.cross_day_duplicates
    rep.total.decisions += rep.cross_day_duplicates
    rep.total.feedback_rows = rep.feedback_scanned
    if rep.all_days:
        rep.total.orphan_feedback += rep.feedback_outside_days
    return rep


def _run_on_ray(
    decisions_root: str, out_root: str, jobs: list[tuple[date, pl.DataFrame, pl.Series]], kw: dict[str, Any],
    workers: int,
) -> list[tuple[str, dict[str, Any], list[str]]]:
    import ray

    from router_rl.logs.ray_pool import ensure_ray

    ensure_ray(workers)
    task = ray.remote(num_cpus=1)(_join_one_day)
    refs = [task.remote(decisions_root, out_root, d, f, x, kw) for d, f, x in jobs]
    return list(ray.get(refs))

"""logs join over partitions: the same table and counts as the flat join, late labels from later days, reruns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.logs.join import join_logs
from router_rl.logs.partition import compact, list_partitions, scan_table
from router_rl.logs.partition_join import join_partitioned
from router_rl.logs.synthetic import SyntheticLog, synthetic_log, write_parts
from router_rl.traces.feedback import FeedbackWriter

runner = CliRunner()
DAY1 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def log() -> SyntheticLog:
    return synthetic_log(4000, days=4, seed=21, delay_hours=20.0, duplicate_feedback=0.05)


def _setup(tmp: Path, log: SyntheticLog) -> tuple[Path, Path]:
    write_parts(log.decisions, tmp / "decisions", rows_per_part=300)
    write_parts(log.feedback, tmp / "feedback", rows_per_part=300)
    compact(tmp / "decisions", tmp / "p/decisions")
    compact(tmp / "feedback", tmp / "p/feedback", table="feedback")
    return tmp / "p/decisions", tmp / "p/feedback"


def test_partitioned_join_equals_the_flat_join(tmp_path: Path, log: SyntheticLog) -> None:
    dec, fb = _setup(tmp_path, log)
    flat, frep = join_logs(tmp_path / "decisions", tmp_path / "feedback")
    rep = join_partitioned(dec, fb, tmp_path / "logged")
    got = scan_table(tmp_path / "logged", "logged").collect()
    assert got.sort("request_id").equals(flat.sort("request_id"))
    assert rep.total.to_dict() == frep.to_dict()
    assert frep.duplicate_feedback_ids > 0 and frep.unlabeled > 0  # the counts compared are not all 0
    assert sorted(rep.days) == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
    assert sum(d["rows"] for d in rep.days.values()) == 4000 and rep.feedback_outside_days == 0
    for f in list_partitions(tmp_path / "logged", "logged"):
        part = pl.read_parquet(f.path)
        assert (part["ts"].dt.date() == f.day).all() and (part["policy_version"] == f.policy_version).all()


def test_a_label_arriving_days_later_is_joined_from_a_later_partition(tmp_path: Path, log: SyntheticLog) -> None:
    dec, fb = _setup(tmp_path, log)
    day1 = log.decisions.filter(pl.col("ts").dt.date() == DAY1.date())
    unlabeled = sorted(set(day1["request_id"]) - set(log.feedback["request_id"]))
    rid = unlabeled[0]
    ts = day1.filter(pl.col("request_id") == rid)["ts"][0]
    late = ts + timedelta(days=3, hours=2)  # received on day 4 or 5
    with FeedbackWriter(tmp_path / "feedback", flush_interval_s=None) as w:
        w.append({"feedback_id": "late-1", "request_id": rid, "quality": 0.25, "source": "human", "ts": late,
                  "received_ts": late})
        w.append({"feedback_id": "orphan-1", "request_id": "nobody", "quality": 1.0, "source": "human",
                  "ts": late, "received_ts": late})
    rep_c = compact(tmp_path / "feedback", fb, table="feedback")
    assert rep_c.rows_read == 2 and list(rep_c.partitions) == [f"day={late.date()}"]
    # join day 1 only: the label sits in a partition days later and is found; other days' feedback counted
    rep = join_partitioned(dec, fb, tmp_path / "logged", days=(DAY1.date(), DAY1.date()))
    assert list(rep.days) == ["2026-11-01"] and not rep.all_days
    row = scan_table(tmp_path / "logged", "logged").filter(pl.col("request_id") == rid).collect()
    assert row["quality"].to_list() == [0.25] and row["label_sources"].to_list() == [["human"]]
    outside = log.feedback.filter(~pl.col("request_id").is_in(day1["request_id"].implode())).height + 1
    assert rep.feedback_outside_days == outside  # other days' feedback and the orphan
    assert rep.total.orphan_feedback == 0  # not every day was joined: not called orphans
    assert rep.total.labeled == day1.filter(
        pl.col("request_id").is_in(log.feedback["request_id"].implode())).height + 1
    # the whole log: the orphan is an orphan
    full = join_partitioned(dec, fb, tmp_path / "logged")
    assert full.all_days and full.total.orphan_feedback == 1 and full.feedback_outside_days == 1


def test_rejoining_a_day_replaces_it_whole_and_leaves_other_days(tmp_path: Path, log: SyntheticLog) -> None:
    dec, fb = _setup(tmp_path, log)
    out = tmp_path / "logged"
    join_partitioned(dec, fb, out)
    before = {f.path: f.path.stat().st_mtime_ns for f in list_partitions(out, "logged")}
    rep = join_partitioned(dec, fb, out, days=("2026-11-04", None))
    assert list(rep.days) == ["2026-11-04"]
    after = scan_table(out, "logged").collect()
    assert after.height == 4000 and after["request_id"].n_unique() == 4000
    for f in list_partitions(out, "logged"):
        if f.day.isoformat() != "2026-11-04":
            assert f.path.stat().st_mtime_ns == before[f.path]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_request_id_repeated_on_a_later_day_is_excluded_and_counted(tmp_path: Path, log: SyntheticLog) -> None:
    dec, fb = _setup(tmp_path, log)
    first = log.decisions.filter(pl.col("ts").dt.date() == DAY1.date()).head(3)
    again = first.with_columns((pl.col("ts") + timedelta(days=2)).alias("ts"))
    write_parts(again, tmp_path / "decisions", rows_per_part=10, prefix="retry")
    compact(tmp_path / "decisions", dec)
    rep = join_partitioned(dec, fb, tmp_path / "logged")
    assert rep.cross_day_duplicates == 3 and rep.total.duplicate_decisions == 3 and rep.total.decisions == 4003
    got = scan_table(tmp_path / "logged", "logged").collect()
    assert got.height == 4000
    kept = got.filter(pl.col("request_id").is_in(first["request_id"].implode()))
    assert kept["ts"].dt.date().to_list() == [DAY1.date()] * 3


@pytest.mark.cli
def test_cli_join_partitioned_and_the_flat_join_refuses_a_partitioned_folder(tmp_path: Path, log: SyntheticLog) -> None:
    dec, fb = _setup(tmp_path, log)
    out = tmp_path / "logged"
    res = runner.invoke(app, ["logs", "join", str(dec), "--feedback", str(fb), "--partitioned", "-o", str(out),
                              "--days", "2026-11-02..2026-11-03", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert sorted(rep["days"]) == ["2026-11-02", "2026-11-03"] and rep["total"]["rows"] == sum(
        d["rows"] for d in rep["days"].values())
    res = runner.invoke(app, ["logs", "join", str(dec), "-o", str(tmp_path / "flat.parquet")])
    assert res.exit_code == 2 and "--partitioned" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["logs", "join", str(dec), "--partitioned", "-o", str(out), "--days", "11/02"])
    assert res.exit_code == 2 and "--days" in res.output
    res = runner.invoke(app, ["logs", "join", str(tmp_path / "decisions"), "-o", str(tmp_path / "f.parquet"),
                              "--days", "2026-11-02"])
    assert res.exit_code == 2 and "only used with --partitioned" in res.output

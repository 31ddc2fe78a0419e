"""logs compact: part files -> day / policy-version partitions, atomic and idempotent (real files, real crashes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.logs.partition import (
    MANIFEST,
    PartitionError,
    compact,
    list_partitions,
    partition_counts,
    scan_table,
)
from router_rl.logs.synthetic import SyntheticLog, synthetic_log
from router_rl.traces.decision_log import DecisionLogError, DecisionLogWriter, read_decision_log
from router_rl.traces.feedback import FeedbackWriter

runner = CliRunner()


@pytest.fixture(scope="module")
def log() -> SyntheticLog:
    return synthetic_log(3000, days=3, versions=("v0001", "v0002", "v/3"), seed=11, delay_hours=30.0)


def _write(df: pl.DataFrame, d: Path, *, feedback: bool = False, batch: int = 250) -> None:
    w: Any = FeedbackWriter(d, batch_size=batch, flush_interval_s=None) if feedback else \
        DecisionLogWriter(d, batch_size=batch, flush_interval_s=None)
    rows = df.to_dicts()
    with w:
        for i in range(0, len(rows), batch):  # one part file per flush, as the router writes them
            w.extend(rows[i:i + batch])


def _ids(root: Path, table: str = "decisions") -> list[str]:
    key = "feedback_id" if table == "feedback" else "request_id"
    return scan_table(root, table).select(key).collect()[key].to_list()


def test_partitions_by_day_and_version_every_row_once(tmp_path: Path, log: SyntheticLog) -> None:
    src, dst = tmp_path / "decisions", tmp_path / "parts"
    _write(log.decisions, src)
    n_parts = len(list(src.glob("part-*.parquet")))
    rep = compact(src, dst)
    assert rep.parts_read == n_parts and rep.rows_read == rep.rows_written == 3000
    want = log.decisions.group_by(pl.col("ts").dt.date().alias("d"), "policy_version").len()
    want_map = {f"day={r['d']}/policy_version={r['policy_version'].replace('/', '%2F')}": r["len"]
                for r in want.iter_rows(named=True)}
    assert rep.partitions == want_map
    days = {f"day={f.day}" for f in list_partitions(dst, "decisions")}
    assert {k.split("/")[0] for k in want_map} == days
    # the version with a slash is quoted in the folder name and read back as it was
    assert "v/3" in {f.policy_version for f in list_partitions(dst, "decisions")}
    ids = _ids(dst)
    assert sorted(ids) == sorted(log.decisions["request_id"].to_list())
    back = scan_table(dst, "decisions").collect()
    day = back["ts"].dt.date().cast(pl.Utf8)
    assert (day == back["ts"].dt.date().cast(pl.Utf8)).all()
    for f in list_partitions(dst, "decisions"):  # every row sits in its own day / version
        part = pl.read_parquet(f.path)
        assert (part["ts"].dt.date() == f.day).all() and (part["policy_version"] == f.policy_version).all()
        assert part["ts"].is_sorted()
    # rerun: nothing new, nothing duplicated
    again = compact(src, dst)
    assert again.parts_read == 0 and again.already_compacted == n_parts and again.rows_written == 0
    assert len(_ids(dst)) == 3000
    assert partition_counts(dst, "decisions") == {k.replace("%2F", "/"): v for k, v in want_map.items()}


def test_parts_written_later_are_picked_up_once_and_sources_removed(tmp_path: Path, log: SyntheticLog) -> None:
    src, dst = tmp_path / "decisions", tmp_path / "parts"
    first, later = log.decisions.slice(0, 1000), log.decisions.slice(1000)
    _write(first, src)
    compact(src, dst, remove_sources=True)
    assert not list(src.glob("part-*.parquet"))
    _write(later, src)
    rep = compact(src, dst, remove_sources=True)
    assert rep.rows_read == 2000 and rep.sources_removed == rep.parts_read
    assert sorted(_ids(dst)) == sorted(log.decisions["request_id"].to_list())
    man = json.loads((dst / MANIFEST).read_text())
    assert [b["state"] for b in man["batches"]] == ["done", "done"] and man["consumed"] == {}


def test_keep_then_remove_sources_deletes_consumed_parts_unread(tmp_path: Path, log: SyntheticLog) -> None:
    src, dst = tmp_path / "decisions", tmp_path / "parts"
    _write(log.decisions.slice(0, 500), src)
    compact(src, dst)
    rep = compact(src, dst, remove_sources=True)
    assert rep.parts_read == 0 and rep.sources_removed == rep.already_compacted > 0
    assert len(_ids(dst)) == 500 and not list(src.glob("part-*.parquet"))


class _Crash(RuntimeError):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("remove_sources", [False, True])
def test_a_crash_at_any_file_operation_loses_and_duplicates_nothing(
    tmp_path: Path, log: SyntheticLog, monkeypatch: pytest.MonkeyPatch, remove_sources: bool
) -> None:
    """Crash the run at its k-th rename / delete (commit of the manifest included), then rerun."""
    base = tmp_path / "base"
    _write(log.decisions.slice(0, 1200), base)
    names = sorted(p.name for p in base.glob("part-*.parquet"))
    want = sorted(log.decisions.slice(0, 1200)["request_id"].to_list())
    real_replace, real_unlink = os.replace, Path.unlink
    k, crashed_at = 0, []
    while True:
        k += 1
        src, dst = tmp_path / f"src{k}", tmp_path / f"dst{k}"
        src.mkdir()
        for n in names:
            (src / n).write_bytes((base / n).read_bytes())
        calls = {"n": 0}

        def bump(calls: dict[str, int] = calls, at: int = k) -> None:
            calls["n"] += 1
            if calls["n"] == at:
                raise _Crash(f"crash at file operation {at}")

        def replace(a: Any, b: Any, bump: Any = bump) -> None:
            bump()
            real_replace(a, b)

        def unlink(self: Path, missing_ok: bool = False, bump: Any = bump) -> None:
            bump()
            real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(Path, "unlink", unlink)
        try:
            compact(src, dst, remove_sources=remove_sources, max_rows_per_file=300, batch_rows=500)
            done = True
        except _Crash:
            done = False
        finally:
            monkeypatch.setattr(os, "replace", real_replace)
            monkeypatch.setattr(Path, "unlink", real_unlink)
        if not done:
            crashed_at.append(k)
            rep = compact(src, dst, remove_sources=remove_sources, max_rows_per_file=300, batch_rows=500)
            assert rep.rows_written + rep.recovered_batches >= 1
        assert sorted(_ids(dst)) == want, f"crash at operation {k}"
        assert not list(dst.rglob(".tmp-*")), f"temporaries left after the rerun (crash at {k})"
        assert bool(list(src.glob("part-*.parquet"))) is not remove_sources
        assert compact(src, dst, remove_sources=remove_sources).rows_written == 0
        if done:
            break
    assert len(crashed_at) >= 8  # per batch: manifest committed, outputs renamed, sources removed, marked done
    man = json.loads((dst / MANIFEST).read_text())
    assert len(man["batches"]) == 3  # 1,200 rows in parts of 250, batches of <= 500 rows: 2 + 2 + 1 parts


def test_a_bad_part_stops_the_run_naming_the_file_and_writes_nothing(tmp_path: Path, log: SyntheticLog) -> None:
    src, dst = tmp_path / "decisions", tmp_path / "parts"
    _write(log.decisions.slice(0, 300), src)
    bad = src / "part-zz-bad.parquet"
    log.decisions.slice(0, 5).with_columns(pl.col("propensity").cast(pl.Utf8)).write_parquet(bad)
    with pytest.raises(DecisionLogError, match=r"part-zz-bad\.parquet: column 'propensity': expected Float64"):
        compact(src, dst)
    assert not list(dst.rglob("*.parquet")) and not (dst / MANIFEST).exists()
    bad.unlink()
    assert compact(src, dst).rows_written == 300


def test_old_layout_parts_read_with_nulls_and_feedback_by_received_day(tmp_path: Path, log: SyntheticLog) -> None:
    src, dst = tmp_path / "decisions", tmp_path / "parts"
    src.mkdir()
    log.decisions.slice(0, 50).drop("explored", "response").write_parquet(src / "part-old-1.parquet")
    rep = compact(src, dst)
    assert rep.rows_written == 50
    back = scan_table(dst, "decisions").collect()
    assert back["explored"].is_null().all() and read_decision_log(src).height == 50
    fsrc, fdst = tmp_path / "feedback", tmp_path / "fparts"
    _write(log.feedback, fsrc, feedback=True)
    frep = compact(fsrc, fdst, table="feedback")
    by_day = log.feedback.group_by(pl.col("received_ts").dt.date().alias("d")).len()
    assert frep.partitions == {f"day={r['d']}": r["len"] for r in by_day.iter_rows(named=True)}
    assert len(frep.partitions) > 3  # labels arrive after the 3 decision days: later partitions exist
    with pytest.raises(PartitionError, match="holds the 'feedback' table"):
        compact(src, fdst)


@pytest.mark.cli
def test_cli_compact_reports_counts_and_errors_name_the_flag(tmp_path: Path, log: SyntheticLog) -> None:
    src, dst = tmp_path / "decisions", tmp_path / "parts"
    _write(log.decisions.slice(0, 600), src)
    res = runner.invoke(app, ["logs", "compact", str(src), "-o", str(dst), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["rows_read"] == rep["rows_written"] == 600 and rep["parts_read"] == 3
    res = runner.invoke(app, ["logs", "compact", str(src), "-o", str(dst)])
    assert res.exit_code == 0 and "3 compacted before, 0 read (0 rows)" in res.output, res.output
    res = runner.invoke(app, ["logs", "compact", str(src), "-o", str(dst), "--table", "nope"])
    assert res.exit_code == 2 and "--table" in res.output and "Traceback" not in res.output


def test_two_source_folders_with_the_same_part_names_feed_one_destination(tmp_path: Path, log: SyntheticLog) -> None:
    from router_rl.logs.synthetic import write_parts

    a, b, dst = tmp_path / "replica-a", tmp_path / "replica-b", tmp_path / "parts"
    write_parts(log.decisions.slice(0, 1000), a, rows_per_part=200)
    write_parts(log.decisions.slice(1000, 1000), b, rows_per_part=200)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert compact(a, dst).rows_written == 1000 and compact(b, dst).rows_written == 1000
    assert compact(a, dst).rows_written == 0 and compact(b, dst).rows_written == 0
    assert sorted(_ids(dst)) == sorted(log.decisions.slice(0, 2000)["request_id"].to_list())

"""Lazy reads of a partitioned joined log: pruning by day / policy version, load_logged on a folder, logs slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.logs.data import LoggedDataError, load_logged
from router_rl.logs.partition import (
    PartitionError,
    compact,
    parse_day_range,
    partition_files,
    scan_table,
)
from router_rl.logs.partition_join import join_partitioned
from router_rl.logs.synthetic import SyntheticLog, synthetic_log, write_parts

runner = CliRunner()


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticLog]:
    tmp = tmp_path_factory.mktemp("scan")
    log = synthetic_log(3000, days=5, versions=("v0001", "v0002", "v0003"), seed=31)
    write_parts(log.decisions, tmp / "decisions", rows_per_part=400)
    write_parts(log.feedback, tmp / "feedback", rows_per_part=400)
    compact(tmp / "decisions", tmp / "p/decisions")
    compact(tmp / "feedback", tmp / "p/feedback", table="feedback")
    join_partitioned(tmp / "p/decisions", tmp / "p/feedback", tmp / "logged")
    return tmp / "logged", log


def test_day_ranges_parse_and_refuse() -> None:
    assert parse_day_range("2026-11-02..2026-11-03")[1].isoformat() == "2026-11-03"
    assert parse_day_range("2026-11-02..")[1] is None and parse_day_range(None) == (None, None)
    assert parse_day_range("2026-11-02")[0] == parse_day_range("2026-11-02")[1]
    with pytest.raises(PartitionError, match="ends before it starts"):
        parse_day_range("2026-11-03..2026-11-02")
    with pytest.raises(PartitionError, match="expected a day YYYY-MM-DD"):
        parse_day_range("yesterday")


def test_pruning_opens_only_the_partitions_asked_for(logged: tuple[Path, SyntheticLog], tmp_path: Path) -> None:
    root, log = logged
    files = partition_files(root, "logged", days=("2026-11-02", "2026-11-03"), policy_versions=["v0002"])
    assert files and {f.day.isoformat() for f in files} <= {"2026-11-02", "2026-11-03"}
    assert {f.policy_version for f in files} == {"v0002"}
    df = scan_table(root, "logged", days=("2026-11-02", "2026-11-03"), policy_versions=["v0002"]).collect()
    day = log.decisions["ts"].dt.date().cast(pl.Utf8)
    want = log.decisions.filter(day.is_in(["2026-11-02", "2026-11-03"]) & (pl.col("policy_version") == "v0002"))
    assert sorted(df["request_id"]) == sorted(want["request_id"])
    # a corrupt file in a partition outside the range is never opened; inside it, it is named
    bad = root / "day=2026-11-05" / "policy_version=v0003" / "part-9.parquet"
    bad.write_bytes(b"not parquet")
    try:
        assert scan_table(root, "logged", days=(None, "2026-11-04")).collect().height > 0
        with pytest.raises(PartitionError, match=r"part-9\.parquet: unreadable parquet file"):
            scan_table(root, "logged", days=("2026-11-05", None))
    finally:
        bad.unlink()


def test_load_logged_reads_a_partitioned_folder_with_filters(logged: tuple[Path, SyntheticLog]) -> None:
    root, log = logged
    data = load_logged(root, days=("2026-11-03", "2026-11-04"), locations=log.locations)
    day = log.decisions["ts"].dt.date().cast(pl.Utf8)
    idx = np.flatnonzero(day.is_in(["2026-11-03", "2026-11-04"]).to_numpy())
    assert sorted(data.request_ids.tolist()) == sorted(log.decisions["request_id"].gather(idx).to_list())
    order = np.argsort(data.request_ids.astype(str))
    ref = np.argsort(log.decisions["request_id"].gather(idx).to_numpy().astype(str))
    np.testing.assert_array_equal(data.X[order], log.X[idx][ref])
    only = load_logged(root, policy_versions=["v0001"], locations=log.locations)
    assert only.n == int((log.decisions["policy_version"] == "v0001").sum())
    with pytest.raises(LoggedDataError, match=r"no partition in days=None, policy_versions=\['nope'\]"):
        load_logged(root, policy_versions=["nope"], locations=log.locations)


@pytest.mark.cli
def test_cli_slice_writes_a_file_that_load_logged_reads(logged: tuple[Path, SyntheticLog], tmp_path: Path) -> None:
    root, log = logged
    out = tmp_path / "slice.parquet"
    res = runner.invoke(app, ["logs", "slice", str(root), "-o", str(out), "--days", "2026-11-01..2026-11-02",
                              "--labeled-only"])
    assert res.exit_code == 0, res.output
    df = pl.read_parquet(out)
    assert df["quality"].is_not_null().all() and set(df["ts"].dt.date().cast(pl.Utf8)) <= {"2026-11-01", "2026-11-02"}
    assert "without a label left out" in res.output
    assert load_logged(out, locations=log.locations).n == df.height
    res = runner.invoke(app, ["logs", "slice", str(root), "-o", str(out), "--days", "soon"])
    assert res.exit_code == 2 and "--days" in res.output and "Traceback" not in res.output

"""Decision log: validation, atomic part files, and durability under SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from router_rl.traces.decision_log import (
    DecisionLogError,
    DecisionLogWriter,
    read_decision_log,
    validate_row,
)
from router_rl.traces.schema import DECISION_LOG_SCHEMA


def _row(i: int, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "request_id": f"r{i}",
        "ts": 1_767_225_600.0 + i,
        "agent_id": "a",
        "chosen_model": "m1",
        "propensity": 0.25,
        "action_models": ["m0", "m1"],
        "action_probs": [0.75, 0.25],
        "policy_version": "v1",
        "prompt": "secret prompt text",
        "breaker_states": {"p": "closed"},
    }
    base.update(kw)
    return base


def test_validate_row_errors_name_the_field() -> None:
    with pytest.raises(DecisionLogError, match="field 'propensity'"):
        validate_row(_row(0, propensity=0.5))
    with pytest.raises(DecisionLogError, match=r"field 'action_probs'.*summing to 1"):
        validate_row(_row(0, action_probs=[0.5, 0.6]))
    with pytest.raises(DecisionLogError, match="field 'chosen_model'"):
        validate_row(_row(0, chosen_model="zz"))
    with pytest.raises(DecisionLogError, match="field 'policy_version': required"):
        validate_row(_row(0, policy_version=None))
    with pytest.raises(DecisionLogError, match=r"unknown field\(s\) \['bogus'\]"):
        validate_row(_row(0, bogus=1))


def test_batches_become_atomic_part_files_and_prompts_are_dropped(tmp_path: Path) -> None:
    w = DecisionLogWriter(tmp_path, batch_size=4, flush_interval_s=None)
    for i in range(10):
        w.append(_row(i))
    assert w.parts_written == 2 and w.pending == 2
    w.close()
    parts = sorted(tmp_path.glob("part-*.parquet"))
    assert len(parts) == 3
    assert not list(tmp_path.glob(".tmp-*"))
    df = read_decision_log(tmp_path)
    assert df.height == 10 and dict(df.schema) == DECISION_LOG_SCHEMA
    assert df["request_id"].to_list() == [f"r{i}" for i in range(10)]
    assert df["prompt"].null_count() == 10
    assert df["breaker_states"][0] == '{"p": "closed"}'


def test_prompts_kept_only_when_opted_in(tmp_path: Path) -> None:
    with DecisionLogWriter(tmp_path, batch_size=100, flush_interval_s=None, log_prompts=True) as w:
        w.append(_row(0))
    assert read_decision_log(tmp_path)["prompt"].to_list() == ["secret prompt text"]


def test_background_flusher_writes_within_interval(tmp_path: Path) -> None:
    w = DecisionLogWriter(tmp_path, batch_size=1000, flush_interval_s=0.05)
    w.append(_row(0))
    deadline = time.monotonic() + 30  # a bound on waiting, not a speed target
    while w.rows_written == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.rows_written == 1
    w.close()
    with pytest.raises(DecisionLogError, match="closed"):
        w.append(_row(1))


def test_reader_rejects_foreign_part_file(tmp_path: Path) -> None:
    pl.DataFrame({"request_id": ["x"]}).write_parquet(tmp_path / "part-bad.parquet")
    with pytest.raises(DecisionLogError, match=r"part-bad.parquet: column 'ts' missing"):
        read_decision_log(tmp_path)


CHILD = textwrap.dedent(
    """
    import sys, time
    from router_rl.traces.decision_log import DecisionLogWriter
    w = DecisionLogWriter(sys.argv[1], batch_size=50, flush_interval_s=None)
    i = 0
    while True:
        w.append({"request_id": f"r{i}", "ts": 1767225600.0 + i, "chosen_model": "m0", "propensity": 1.0,
                  "action_models": ["m0", "m1"], "action_probs": [1.0, 0.0], "policy_version": "v"})
        i += 1
        if i % 50 == 0:
            print(i, flush=True)
    """
)


def test_sigkill_mid_run_loses_only_the_unflushed_batch(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    assert proc.stdout is not None
    flushed = 0
    deadline = time.monotonic() + 60
    while flushed < 2000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        flushed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert flushed >= 2000, "child did not get far enough"
    df = read_decision_log(tmp_path)  # every part file must be readable
    n = df.height
    assert n % 50 == 0 and n >= flushed
    # rows are a gap-free prefix: nothing written twice, nothing lost before the last flush
    assert df["request_id"].to_list() == [f"r{i}" for i in range(n)]
    for p in tmp_path.glob("part-*.parquet"):
        assert pl.read_parquet(p).height == 50

"""The feedback store and the request-id index on their own: write failures, group commits, observers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from router_rl.router.feedback_store import (
    DUPLICATE,
    STORED,
    FeedbackStore,
    FeedbackStoreError,
    FeedbackWriteFailed,
    KeyConflict,
    PendingRow,
    content_digest,
)
from router_rl.router.request_index import RequestIndex
from router_rl.traces.decision_log import DecisionLogError, DecisionLogWriter
from router_rl.traces.parts import PartWriter, read_parts
from router_rl.traces.schema import FEEDBACK_SCHEMA

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _row(key: str, rid: str = "r1", q: float = 0.5, source: str = "agent") -> PendingRow:
    row = {"feedback_id": key, "request_id": rid, "quality": q, "source": source, "details": None, "ts": NOW,
           "received_ts": NOW}
    return PendingRow(row, content_digest(rid, source, q, None))


def _rows(d: Path) -> pl.DataFrame:
    return read_parts(d, schema=FEEDBACK_SCHEMA, what="feedback")


def test_a_failed_write_acknowledges_nothing_and_a_retry_stores(tmp_path: Path) -> None:
    fail = {"n": 1}

    def before() -> None:
        if fail["n"]:
            fail["n"] -= 1
            raise OSError("disk full")

    async def run() -> tuple[Any, ...]:
        store = FeedbackStore(tmp_path, before_commit=before)
        first = asyncio.gather(store.submit([_row("a")]), store.submit([_row("a")]), return_exceptions=True)
        errs = await first
        retry = await store.submit([_row("a"), _row("b")])
        await store.aclose()
        return tuple(errs), retry

    errs, retry = asyncio.run(run())
    assert all(isinstance(e, FeedbackWriteFailed) and e.status == 503 for e in errs)  # the duplicate too
    assert retry == [STORED, STORED]
    assert sorted(_rows(tmp_path)["feedback_id"]) == ["a", "b"]


def test_concurrent_submissions_are_group_committed(tmp_path: Path) -> None:
    async def run() -> tuple[list[list[str]], int]:
        store = FeedbackStore(tmp_path)
        res = await asyncio.gather(*(store.submit([_row(f"k{i}", q=i / 50)]) for i in range(50)))
        commits = store.commits
        await store.aclose()
        return list(res), commits

    res, commits = asyncio.run(run())
    assert res == [[STORED]] * 50
    assert _rows(tmp_path).height == 50
    parts = list(tmp_path.glob("part-*.parquet"))
    assert len(parts) == commits and commits < 50  # one part per group, not per request


def test_conflicting_key_refuses_the_whole_submission(tmp_path: Path) -> None:
    async def run() -> None:
        store = FeedbackStore(tmp_path)
        assert await store.submit([_row("a")]) == [STORED]
        with pytest.raises(KeyConflict, match=r"items\[1\].idempotency_key"):
            await store.submit([_row("b"), _row("a", q=0.9)])
        assert await store.submit([_row("b"), _row("a")]) == [STORED, DUPLICATE]
        await store.aclose()
        with pytest.raises(FeedbackWriteFailed, match="closed"):
            await store.submit([_row("c")])

    asyncio.run(run())
    assert sorted(_rows(tmp_path)["feedback_id"]) == ["a", "b"]


def test_keys_reload_and_a_corrupt_part_is_named(tmp_path: Path) -> None:
    async def fill() -> None:
        store = FeedbackStore(tmp_path)
        await store.submit([_row("a"), _row("b")])
        await store.aclose()

    asyncio.run(fill())

    async def again() -> list[str]:
        store = FeedbackStore(tmp_path)
        assert store.rows_loaded == 2 and len(store) == 2
        with pytest.raises(KeyConflict):
            await store.submit([_row("a", q=0.1)])
        out = await store.submit([_row("a"), _row("c")])
        await store.aclose()
        return out

    assert asyncio.run(again()) == [DUPLICATE, STORED]
    assert _rows(tmp_path).height == 3  # the second store's part did not replace the first one
    (tmp_path / "part-zzz.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(FeedbackStoreError, match=r"part-zzz\.parquet"):
        FeedbackStore(tmp_path)


def test_part_writer_observer_sees_rows_before_the_flush_and_survives_errors(tmp_path: Path) -> None:
    seen: list[str] = []

    def boom(rows: Any) -> None:
        raise RuntimeError("observer bug")

    w = PartWriter(tmp_path, schema={"a": pl.Utf8()}, validate=lambda r: dict(r), what="t", flush_interval_s=None)
    w.add_observer(boom)
    w.add_observer(lambda rows: seen.extend(r["a"] for r in rows))
    w.extend([{"a": "x"}, {"a": "y"}])
    assert seen == ["x", "y"] and w.pending == 2 and not list(tmp_path.glob("part-*"))
    w.close()


def _decision(rid: str, strategy: str = "balanced") -> dict[str, Any]:
    return {"request_id": rid, "ts": 1767225600.0, "chosen_model": "m0", "propensity": 1.0,
            "action_models": ["m0", "m1"], "action_probs": [1.0, 0.0], "policy_version": "v", "strategy": strategy}


def test_request_index_follows_the_writer_and_reads_existing_parts(tmp_path: Path) -> None:
    w0 = DecisionLogWriter(tmp_path, flush_interval_s=None)
    w0.extend([_decision("old-1"), _decision("old-rej", "rejected")])
    w0.close()
    w = DecisionLogWriter(tmp_path, batch_size=1000, flush_interval_s=None)
    w.append(_decision("buffered-before-attach"))
    idx = RequestIndex.attach(w)
    w.append(_decision("live-1"))  # seen on append, long before any flush
    w.append(_decision("live-rej", "rejected"))
    assert [idx.status(r) for r in ("old-1", "old-rej", "buffered-before-attach", "live-1", "live-rej", "no")] == [
        "routed", "rejected", "routed", "routed", "rejected", None]
    assert len(idx) == 5
    w.close()
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "part-zz.parquet")
    with pytest.raises(DecisionLogError, match=r"part-zz\.parquet"):
        RequestIndex().load_parts(tmp_path)

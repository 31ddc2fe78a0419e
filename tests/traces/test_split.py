"""Task-level splits: disjoint, exact counts, seeded, order-independent, respect existing splits."""

from __future__ import annotations

import polars as pl
import pytest

from router_rl.traces import TraceValidationError, assign_splits, carve_split


def _long(n_tasks: int = 200, n_models: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": [f"t{i}" for i in range(n_tasks) for _ in range(n_models)],
            "model": [f"m{j}" for _ in range(n_tasks) for j in range(n_models)],
        }
    )


def test_disjoint_exact_and_deterministic() -> None:
    df = _long()
    a = assign_splits(df, seed=3)
    per_task = a.group_by("task_id").agg(pl.col("split").n_unique())
    assert per_task["split"].max() == 1  # never a task in two splits
    counts = dict(a.unique("task_id").group_by("split").len().iter_rows())
    assert counts == {"train": 140, "val": 20, "test": 40}
    assert a.equals(assign_splits(df, seed=3))
    assert not a.equals(assign_splits(df, seed=4))
    # row order does not matter
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=1)
    b = assign_splits(shuffled, seed=3)
    m1 = dict(a.unique("task_id").select("task_id", "split").iter_rows())
    m2 = dict(b.unique("task_id").select("task_id", "split").iter_rows())
    assert m1 == m2


def test_existing_split_respected_and_nulls_filled() -> None:
    df = _long(10).with_columns(
        split=pl.when(pl.col("task_id").is_in(["t0", "t1"])).then(pl.lit("test")).otherwise(None)
    )
    a = assign_splits(df, seed=0, fractions=(1.0, 0.0, 0.0))
    got = dict(a.unique("task_id").select("task_id", "split").iter_rows())
    assert got["t0"] == got["t1"] == "test"
    assert {v for k, v in got.items() if k not in ("t0", "t1")} == {"train"}
    # overwrite re-assigns everything
    b = assign_splits(df, seed=0, fractions=(1.0, 0.0, 0.0), overwrite=True)
    assert set(b["split"].to_list()) == {"train"}


def test_bad_existing_split_values() -> None:
    df = _long(4).with_columns(split=pl.lit("holdout"))
    with pytest.raises(TraceValidationError, match="column 'split': expected one of"):
        assign_splits(df, seed=0)
    mixed = _long(2, 2).with_columns(split=pl.Series(["train", "test", "train", "train"]))
    with pytest.raises(TraceValidationError, match="more than one split"):
        assign_splits(mixed, seed=0)


def test_bad_fractions() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(_long(5), seed=0, fractions=(0.5, 0.1, 0.1))


def test_carve_split_moves_fraction_of_train_only() -> None:
    df = assign_splits(_long(100), seed=0, fractions=(0.8, 0.0, 0.2))
    out = carve_split(df, seed=1, fraction=0.25)
    before = dict(df.unique("task_id").select("task_id", "split").iter_rows())
    after = dict(out.unique("task_id").select("task_id", "split").iter_rows())
    assert sum(v == "val" for v in after.values()) == 20
    assert all(before[t] == "train" for t, v in after.items() if v == "val")
    assert all(after[t] == "test" for t, v in before.items() if v == "test")
    assert out.equals(carve_split(df, seed=1, fraction=0.25))

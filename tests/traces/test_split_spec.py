"""SplitSpec / apply_split_spec / require_splits: the one split rule of every importer and command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router_rl.traces import simulate_fleet
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.split import MissingSplitError, SplitSpec, apply_split_spec, require_splits


def _tasks(n: int, labels: list[str | None] | None = None, column: str = "split") -> pl.DataFrame:
    df = pl.DataFrame({"task_id": [f"t{i:03d}" for i in range(n)]})
    if labels is not None:
        df = df.with_columns(pl.Series(column, labels, dtype=pl.Utf8))
    return df


def _counts(df: pl.DataFrame) -> dict[str, int]:
    return dict(df["split"].value_counts().iter_rows())


def test_parse() -> None:
    assert SplitSpec.parse("train=0.7,val=0.1,test=0.2").fractions == (0.7, 0.1, 0.2)
    assert SplitSpec.parse("test=0.5, train=0.5").fractions == (0.5, 0.0, 0.5)
    assert SplitSpec.parse("training=0.8,validation=0.2").fractions == (0.8, 0.2, 0.0)
    assert SplitSpec.parse(None).fractions == (0.7, 0.1, 0.2) and SplitSpec.parse("", column="fold").column == "fold"
    assert SplitSpec.parse("train=0.6,val=0.2,test=0.2").text() == "train=0.6,val=0.2,test=0.2"
    for bad, why in (("tr=1", "NAME=FRACTION"), ("train=0.5", "sum to 1"), ("train=x,test=1", "expected a fraction"),
                     ("train=0.5,train=0.5", "given twice"), ("train=1.5,test=-0.5", ">= 0")):
        with pytest.raises(ValueError, match=why):
            SplitSpec.parse(bad)


def test_unlabelled_tasks_get_seeded_fractions() -> None:
    df, notes = apply_split_spec(_tasks(200), SplitSpec.parse("train=0.6,val=0.2,test=0.2"), seed=4)
    assert _counts(df) == {"train": 120, "val": 40, "test": 40}
    again, _ = apply_split_spec(_tasks(200).reverse(), SplitSpec.parse("train=0.6,val=0.2,test=0.2"), seed=4)
    assert again.sort("task_id")["split"].to_list() == df["split"].to_list()  # row order does not matter
    other, _ = apply_split_spec(_tasks(200), SplitSpec.parse("train=0.6,val=0.2,test=0.2"), seed=5)
    assert other["split"].to_list() != df["split"].to_list()
    assert notes == ["200 unlabelled tasks split train=0.6,val=0.2,test=0.2 (seed 4)"]


def test_train_test_labels_are_kept_and_val_is_carved_from_train() -> None:
    labels = ["train"] * 150 + ["Test"] * 50  # case-insensitive labels
    df, notes = apply_split_spec(_tasks(200, labels), SplitSpec(), seed=0)
    assert _counts(df) == {"train": 135, "val": 15, "test": 50}  # val = 10% of train
    assert df.filter(pl.col("split") == "test")["task_id"].to_list() == [f"t{i:03d}" for i in range(150, 200)]
    assert notes[-1] == "no task in 'val': carved 15 of 150 train tasks (10%, seed 0) as val"
    df2, _ = apply_split_spec(_tasks(200, labels), SplitSpec.parse("train=0.8,test=0.2"), seed=0)
    assert _counts(df2) == {"train": 150, "test": 50}  # val fraction 0: nothing carved


def test_other_label_column_aliases_partial_labels_and_none() -> None:
    labels = ["training"] * 100 + ["dev"] * 20 + [None] * 80
    df, notes = apply_split_spec(_tasks(200, labels, column="fold"), SplitSpec(column="fold"), seed=1)
    assert "fold" not in df.columns and df.height == 200
    c = _counts(df)
    assert c["train"] == 100 + 56 and c["val"] == 20 + 8 and c["test"] == 16
    assert notes[0] == "split labels of 120 tasks read from column 'fold'"
    ignored, notes = apply_split_spec(_tasks(200, ["train"] * 200), SplitSpec(column="none"), seed=1)
    assert _counts(ignored) == {"train": 140, "val": 20, "test": 40}
    assert "ignored" in notes[0]
    with pytest.raises(TraceValidationError, match=r"split column 'fold' \(--split-column\) not found"):
        apply_split_spec(_tasks(10), SplitSpec(column="fold"), seed=0)
    with pytest.raises(TraceValidationError, match=r"expected split labels .* got \['holdout'\]"):
        apply_split_spec(_tasks(3, ["train", "holdout", "test"]), SplitSpec(), seed=0)


def test_require_splits_carves_val_or_names_the_fix() -> None:
    m = simulate_fleet(200, seed=0).matrix()
    labels = np.where(np.arange(m.n_tasks) < 160, "train", "test")
    tt = type(m)(**{**m.__dict__, "tasks": m.tasks.with_columns(pl.Series("split", labels))})
    parts, notes = require_splits(tt, ("train", "val", "test"), seed=0, source="f.parquet")
    assert (parts["train"].n_tasks, parts["val"].n_tasks, parts["test"].n_tasks) == (144, 16, 40)
    assert set(parts["val"].task_ids) <= set(tt.task_ids[:160])
    assert "f.parquet: no task in split 'val': carved 16 of 160 train tasks (10%, seed 0) as val" in notes[0]
    same, _ = require_splits(tt, ("val",), seed=0, source="f.parquet")
    assert list(same["val"].task_ids) == list(parts["val"].task_ids)  # seeded: train and evaluate agree
    full, none = require_splits(m, ("train", "val", "test"), seed=0, source="f")
    assert none == [] and full["val"].n_tasks == 20
    only_train = type(m)(**{**m.__dict__, "tasks": m.tasks.with_columns(pl.lit("train").alias("split"))})
    with pytest.raises(MissingSplitError, match=r"no task in split 'test' \(splits: train=200\); re-split it: "
                                                r"router-rl traces import long f -o OUT.parquet --split-column none"):
        require_splits(only_train, ("train", "test"), seed=0, source="f")
    no_col = type(m)(**{**m.__dict__, "tasks": m.tasks.drop("split")})
    with pytest.raises(MissingSplitError, match="no 'split' column"):
        require_splits(no_col, ("train",), seed=0, source="f")


def _mini_routerbench(folder: Path, n_train: int = 100, n_test: int = 40) -> Path:
    """Two tiny CSVs in the routerbench wide format (synthetic values, real column layout)."""
    from router_rl.traces.importers.routerbench import MODELS

    folder.mkdir()
    for name, n, off in (("mbpp_train.csv", n_train, 0), ("mbpp_test.csv", n_test, n_train)):
        cols: dict[str, list[object]] = {"sample_id": [f"s{off + i}" for i in range(n)],
                                         "prompt": [str([f"q{off + i}"]) for i in range(n)],
                                         "eval_name": ["mbpp"] * n}
        for j, m in enumerate(MODELS):
            cols[m] = [float((i + j) % 2) for i in range(n)]
            cols[f"{m}|total_cost"] = [0.001 * (j + 1)] * n
        pl.DataFrame(cols).write_csv(folder / name)
    return folder


def test_dataset_importers_take_the_same_split_spec(tmp_path: Path) -> None:
    from router_rl.traces.importers import import_traces

    src = _mini_routerbench(tmp_path / "rb")
    default = import_traces("routerbench", src, seed=0).matrix().tasks
    assert _counts(default) == {"train": 90, "val": 10, "test": 40}  # documented default: 10% of train
    same = import_traces("routerbench", src, seed=0, split=SplitSpec()).matrix().tasks
    assert same["split"].to_list() == default["split"].to_list()  # the uniform rule gives the same split
    wider = import_traces("routerbench", src, seed=0, split=SplitSpec.parse("train=0.7,val=0.2,test=0.1"))
    assert _counts(wider.matrix().tasks) == {"train": 80, "val": 20, "test": 40}
    assert any("carved 20 of 100 train tasks (20%, seed 0)" in n for n in wider.report.notes)
    resplit = import_traces("routerbench", src, seed=0, split=SplitSpec.parse("train=0.5,val=0.25,test=0.25",
                                                                              column="none"))
    assert _counts(resplit.matrix().tasks) == {"train": 70, "val": 35, "test": 35}

"""Seeded, task-level train/val/test splits.

A split is assigned per *task* (``by`` column, default ``task_id``), never per row, so no task
appears in two splits. The assignment depends only on the set of task ids, the seed and the
fractions (ids are sorted before the seeded permutation), not on row order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from router_rl.traces.errors import TraceValidationError
from router_rl.traces.schema import SPLITS


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise ValueError(f"assign_splits: fractions must be (train, val, test), got {tuple(fractions)}")
    f = tuple(float(x) for x in fractions)
    if any(not np.isfinite(x) or x < 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"assign_splits: fractions must be >= 0 and sum to 1, got {f}")
    return f  # type: ignore[return-value]


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_train = round(n * fractions[0])
    n_val = min(round(n * fractions[1]), n - n_train)
    return n_train, n_val, n - n_train - n_val


def split_labels(ids: Sequence[object] | pl.Series, *, seed: int, fractions: Sequence[float]) -> pl.DataFrame:
    """Split labels for unique ids: a frame ``(id, split)`` with exact, rounded counts.

    Args:
        ids: Unique task ids (any order; sorted internally).
        seed: Seed of the permutation.
        fractions: ``(train, val, test)`` fractions summing to 1.
    """
    f = _check_fractions(fractions)
    s = pl.Series("id", ids).unique().sort()
    n = s.len()
    n_train, n_val, _ = _counts(n, f)
    perm = np.random.default_rng(seed).permutation(n)
    labels = np.empty(n, dtype=object)
    labels[perm[:n_train]] = "train"
    labels[perm[n_train : n_train + n_val]] = "val"
    labels[perm[n_train + n_val :]] = "test"
    return pl.DataFrame({"id": s, "split": pl.Series(labels.tolist(), dtype=pl.Utf8)})


def assign_splits(
    df: pl.DataFrame,
    *,
    seed: int,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    by: str = "task_id",
    overwrite: bool = False,
) -> pl.DataFrame:
    """Add (or complete) a ``split`` column assigned per task.

    Args:
        df: Any table with the ``by`` column (outcomes in long format, or a tasks frame).
        seed: Seed of the assignment (deterministic).
        fractions: ``(train, val, test)`` fractions of tasks.
        by: Column whose values are kept together (``task_id``).
        overwrite: Re-assign every task even if a ``split`` column exists.

    Returns:
        ``df`` with a ``split`` column. Existing non-null split values are kept (unless
        ``overwrite``) and must be one of ``train``/``val``/``test`` and constant per task;
        tasks with a null split get one from ``fractions``.

    Raises:
        TraceValidationError: an existing split value is unknown or differs within a task.
    """
    if by not in df.columns:
        raise TraceValidationError(f"assign_splits: missing column {by!r}", column=by)
    if "split" in df.columns and not overwrite:
        bad = df.filter(pl.col("split").is_not_null() & ~pl.col("split").is_in(list(SPLITS)))
        if bad.height:
            raise TraceValidationError(
                f"expected one of {list(SPLITS)}, got {bad['split'].unique().head(5).to_list()}",
                column="split",
                n_rows=bad.height,
            )
        per = df.group_by(by).agg(pl.col("split").n_unique().alias("n"), pl.col("split").null_count().alias("z"))
        mixed = per.filter((pl.col("n") > 1) & ~((pl.col("n") == 2) & (pl.col("z") > 0)))
        if mixed.height:
            raise TraceValidationError(
                f"a task is in more than one split, e.g. {mixed[by].head(3).to_list()}",
                column="split",
                n_rows=mixed.height,
            )
        todo = df.filter(pl.col("split").is_null())[by].unique()
        if todo.len() == 0:
            return df
        done = df.filter(pl.col("split").is_not_null()).select(by, "split").unique(subset=by)
        todo = todo.filter(~todo.is_in(done[by].implode()))
        lab = split_labels(todo, seed=seed, fractions=fractions).rename({"id": by, "split": "__new"})
        lab = lab.with_columns(pl.col(by).cast(df.schema[by]))
        done = done.rename({"split": "__new"})
        allf = pl.concat([done, lab])
        return df.join(allf, on=by, how="left", maintain_order="left").with_columns(
            pl.col("__new").alias("split")
        ).drop("__new")
    lab = split_labels(df[by], seed=seed, fractions=fractions).rename({"id": by})
    lab = lab.with_columns(pl.col(by).cast(df.schema[by]))
    out = df.drop("split") if "split" in df.columns else df
    return out.join(lab, on=by, how="left", maintain_order="left")


def carve_split(
    df: pl.DataFrame,
    *,
    seed: int,
    fraction: float,
    source: str = "train",
    target: str = "val",
    by: str = "task_id",
) -> pl.DataFrame:
    """Move a seeded ``fraction`` of the tasks of split ``source`` into split ``target``.

    Used by importers whose data ships with train/test only (carve ``val`` from ``train``).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"carve_split: fraction must be in [0, 1], got {fraction}")
    if "split" not in df.columns:
        raise TraceValidationError("carve_split: no 'split' column", column="split")
    ids = df.filter(pl.col("split") == source)[by].unique().sort()
    n_move = round(ids.len() * fraction)
    perm = np.random.default_rng(seed).permutation(ids.len())
    moved = ids.gather(np.sort(perm[:n_move]))
    return df.with_columns(
        pl.when(pl.col(by).is_in(moved.implode())).then(pl.lit(target)).otherwise(pl.col("split")).alias("split")
    )

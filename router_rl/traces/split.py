"""Seeded, task-level train/val/test splits.

A split is assigned per *task* (``by`` column, default ``task_id``), never per row, so no task
appears in two splits. The assignment depends only on the set of task ids, the seed and the
fractions (ids are sorted before the seeded permutation), not on row order.

:class:`SplitSpec` / :func:`apply_split_spec` are the one rule every importer applies for
``--split`` / ``--split-column``; :func:`require_splits` is what commands call to get the splits
they need from a trace file (a missing ``val`` is carved from train with a note, a missing
``train``/``test`` is a :class:`MissingSplitError` whose message holds the fix).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from router_rl.traces.errors import TraceValidationError
from router_rl.traces.schema import SPLITS

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix


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


# --- explicit split specs (``--split``, ``--split-column``) ---------------------------------------
#: Split labels accepted in a file's split column (case-insensitive) and what they mean.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
#: Example of the ``--split`` syntax, used in messages.
SPLIT_SYNTAX = "train=0.7,val=0.1,test=0.2"
#: ``--split-column`` value meaning "ignore the file's labels".
NO_LABELS = "none"


@dataclass(frozen=True)
class SplitSpec:
    """How an importer assigns task-level splits.

    The rule (the same for every importer given a spec):

    1. labels come from ``column`` (default: a ``split`` column when the file has one; ``"none"``:
       ignore any labels and split every task); values ``train``/``val``/``test`` (and the
       aliases of :data:`SPLIT_ALIASES`), empty = unlabelled;
    2. unlabelled tasks are assigned by ``fractions`` with ``seed`` (:func:`assign_splits`);
    3. when no task ends up in ``val`` and ``fractions[1] > 0``, ``fractions[1]`` of the train
       tasks are carved into ``val`` (seeded, :func:`carve_split`), e.g. 10% of train for a file
       that ships train/test only.

    Attributes:
        fractions: ``(train, val, test)`` fractions of unlabelled tasks, summing to 1.
        column: Column holding the labels; ``None`` = ``split`` when present.
    """

    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", _check_fractions(self.fractions))

    @classmethod
    def parse(cls, text: str | None, *, column: str | None = None) -> SplitSpec:
        """Parse ``"train=0.7,val=0.1,test=0.2"`` (omitted names are 0; ``None``/``""`` = default).

        Raises:
            ValueError: unknown split name, a value that is not a number, or fractions that do not
                sum to 1 (the message shows the expected syntax).
        """
        if not text:
            return cls(column=column)
        got: dict[str, float] = {}
        for item in text.split(","):
            name, sep, raw = item.strip().partition("=")
            name = SPLIT_ALIASES.get(name.strip().lower(), name.strip())
            if not sep or name not in SPLITS:
                raise ValueError(f"expected NAME=FRACTION items with NAME in {list(SPLITS)}, e.g. {SPLIT_SYNTAX!r}; "
                                 f"got {item.strip()!r}")
            if name in got:
                raise ValueError(f"split {name!r} given twice in {text!r}")
            try:
                got[name] = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected a fraction in [0, 1], e.g. {SPLIT_SYNTAX!r}") from None
        f = tuple(got.get(s, 0.0) for s in SPLITS)
        if any(not np.isfinite(x) or x < 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {text!r} (e.g. {SPLIT_SYNTAX!r})")
        return cls(fractions=f, column=column)  # type: ignore[arg-type]

    def text(self) -> str:
        """The spec in ``--split`` syntax."""
        return ",".join(f"{s}={f:g}" for s, f in zip(SPLITS, self.fractions, strict=True))


def apply_split_spec(
    df: pl.DataFrame, spec: SplitSpec, *, seed: int, source: str | None = None, by: str = "task_id"
) -> tuple[pl.DataFrame, list[str]]:
    """Give every task a split following ``spec`` (the rule in :class:`SplitSpec`).

    Returns:
        ``(df, notes)``: ``df`` with a normalised ``split`` column (the label column, if another,
        is consumed: it is not a feature), and one note per thing done (labels read, tasks
        assigned, val carved) for the import report.

    Raises:
        TraceValidationError: ``spec.column`` is absent, or a label is not a split name.
    """
    notes: list[str] = []
    col = spec.column
    if col is not None and col.lower() == NO_LABELS:
        if "split" in df.columns:
            notes.append("the file's 'split' labels are ignored (--split-column none)")
            df = df.drop("split")
        col = None
    elif col is not None and col not in df.columns:
        raise TraceValidationError(
            f"split column {col!r} (--split-column) not found (columns: {df.columns[:20]})",
            source=source,
            column=col,
        )
    if col is None and "split" in df.columns:
        col = "split"
    if col is not None:
        raw = df[col].cast(pl.Utf8).str.strip_chars()
        norm = raw.str.to_lowercase().replace_strict(SPLIT_ALIASES, default=None)
        bad = raw.filter(raw.is_not_null() & (raw != "") & norm.is_null()).unique().sort()
        if bad.len():
            raise TraceValidationError(
                f"expected split labels {sorted(SPLIT_ALIASES)} or empty, got {bad.head(5).to_list()}",
                source=source, column=col, n_rows=int((raw.is_not_null() & (raw != "") & norm.is_null()).sum()),
            )
        replaced = col != "split" and "split" in df.columns
        df = df.drop([c for c in {col, "split"} if c in df.columns]).with_columns(norm.alias("split"))
        n_lab = df.filter(pl.col("split").is_not_null())[by].n_unique()
        notes.append(f"split labels of {n_lab} tasks read from column {col!r}"
                     + (" (it replaces the file's 'split' column)" if replaced else ""))
    n_before = df.filter(pl.col("split").is_null())[by].n_unique() if "split" in df.columns else df[by].n_unique()
    df = assign_splits(df, seed=seed, fractions=spec.fractions, by=by)
    if n_before:
        notes.append(f"{n_before} unlabelled tasks split {spec.text()} (seed {seed})")
    val_frac = spec.fractions[1]
    has_val = df.filter(pl.col("split") == "val").height > 0
    if not has_val and val_frac > 0:
        n_train = df.filter(pl.col("split") == "train")[by].n_unique()
        df = carve_split(df, seed=seed, fraction=val_frac, by=by)
        n_val = df.filter(pl.col("split") == "val")[by].n_unique()
        notes.append(f"no task in 'val': carved {n_val} of {n_train} train tasks ({val_frac:.0%}, seed {seed}) as val")
    return df, notes


class MissingSplitError(ValueError):
    """A trace file lacks a split a command needs; the message holds the one-line fix."""


def split_counts(tasks: pl.DataFrame) -> dict[str, int]:
    """Tasks per split label of a tasks frame (``{}`` without a ``split`` column)."""
    if "split" not in tasks.columns:
        return {}
    return {str(k): int(v) for k, v in tasks["split"].value_counts().iter_rows()}


def require_splits(
    matrix: OutcomeMatrix,
    names: Sequence[str],
    *,
    seed: int,
    source: str,
    val_fraction: float = 0.1,
) -> tuple[dict[str, OutcomeMatrix], list[str]]:
    """The splits ``names`` of ``matrix``; a missing ``val`` is carved from train, others are errors.

    Args:
        matrix: The outcome matrix of a trace file.
        names: Splits the caller needs (``train``, ``val``, ``test``).
        seed: Seed of the val carve.
        source: File name for messages.
        val_fraction: Fraction of the train tasks carved into ``val`` when it is missing.

    Returns:
        ``(splits, notes)``: ``name -> matrix`` and a message per carve (print it).

    Raises:
        MissingSplitError: no ``split`` column, or ``train``/``test`` needed but empty; the message
            names the splits present and the ``router-rl traces import`` command that fixes it.
    """
    fix = (f"re-split it: router-rl traces import long {source} -o OUT.parquet --split-column {NO_LABELS} "
           f"--split {SPLIT_SYNTAX}")
    counts = split_counts(matrix.tasks)
    if not counts:
        raise MissingSplitError(f"{source}: no 'split' column; {fix}")
    have = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"
    tasks = matrix.tasks
    notes: list[str] = []
    if "val" in names and not counts.get("val"):
        if not counts.get("train"):
            raise MissingSplitError(f"{source}: no task in split 'val' nor in 'train' to carve it from "
                                    f"(splits: {have}); {fix}")
        carved = carve_split(tasks.select("task_id", "split"), seed=seed, fraction=val_fraction)
        n_val = int((carved["split"] == "val").sum())
        if n_val == 0 or n_val == counts["train"]:
            raise MissingSplitError(f"{source}: no task in split 'val' and {counts['train']} train task(s) are too "
                                    f"few to carve {val_fraction:.0%} of them; {fix}")
        tasks = tasks.with_columns(carved["split"])
        notes.append(f"{source}: no task in split 'val': carved {n_val} of {counts['train']} train tasks "
                     f"({val_fraction:.0%}, seed {seed}) as val; to store a split in the file instead: "
                     f"router-rl traces import long {source} -o OUT.parquet --split {SPLIT_SYNTAX}")
    full = dataclasses.replace(matrix, tasks=tasks) if notes else matrix
    out: dict[str, OutcomeMatrix] = {}
    for name in names:
        mask = (tasks["split"] == name).to_numpy()
        if not mask.any():
            raise MissingSplitError(f"{source}: no task in split {name!r} (splits: {have}); {fix}")
        out[name] = full.take(mask)
    return out, notes

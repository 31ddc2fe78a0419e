"""Vectorised validation of long outcome tables (one row per task x model).

Rules (all checks are polars expressions, no Python loop over rows):

* **Required columns** ``task_id``, ``model``, ``quality``, ``cost_usd`` must exist (always an error,
  even with ``drop_invalid=True``: there is nothing sensible to keep).
* **Types.** Numeric columns accept any integer/float dtype, or strings that parse as numbers
  (CSV files); a non-empty string that does not parse is a *bad value* for that row. Token
  columns must hold whole numbers. ``task_id``/``model`` accept strings or integers (integers
  are cast to strings). ``error`` must be a string column (null = no error). Any other dtype
  (lists, structs, booleans in numeric columns, ...) is a column-level error.
* **Row checks.** ``quality`` null/NaN or outside [0, 1]; ``cost_usd`` null/NaN/inf or negative;
  ``latency_s`` negative or infinite (NaN is treated as unknown, i.e. null); token counts negative;
  null ``task_id``/``model``; duplicate ``(task_id, model)`` pairs (every copy is offending, as
  we cannot tell which is right).
* **Task checks.** Every task-level column (anything that is not a cell column) must be constant
  within a ``task_id``; every task must have a row for every model present in the table.

Without ``drop_invalid`` the first failing rule raises :class:`TraceValidationError` naming the
file, the first offending rows (0-based data rows of the input), the column and the expectation,
with a summary of any other failing rule. With ``drop_invalid=True`` offending rows are removed,
then tasks left incomplete (or with inconsistent task columns) are removed entirely, and the
returned :class:`ValidationReport` counts rows per reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from router_rl.traces.errors import TraceValidationError
from router_rl.traces.schema import OUTCOME_OPTIONAL, OUTCOME_REQUIRED, TASK_COLUMNS

#: Columns that vary per (task, model) cell; everything else is task-level.
CELL_COLUMNS: tuple[str, ...] = (
    "model",
    "quality",
    "cost_usd",
    "latency_s",
    "input_tokens",
    "output_tokens",
    "error",
)

_FLOAT_COLS = ("quality", "cost_usd", "latency_s")
#: How to drop offending rows, for the CLI and for Python callers.
_DROP_HINT = "drop offending rows with --drop-invalid (Python: drop_invalid=True)"
_INCONSISTENT_HINT = (
    "a per-model column (price, location, ...) belongs in the catalog (see docs/traces.md), "
    "a per-call one is an outcome column (--cell-column NAME)"
)
_INT_COLS = ("input_tokens", "output_tokens")
_ROW = "__row"

#: Human-readable expectation per reason (used in error messages and docs).
REASONS: dict[str, tuple[str | None, str]] = {
    "null_task_id": ("task_id", "expected a non-null task id"),
    "null_model": ("model", "expected a non-null model id"),
    "bad_value:quality": ("quality", "expected a number"),
    "bad_value:cost_usd": ("cost_usd", "expected a number"),
    "bad_value:latency_s": ("latency_s", "expected a number (seconds) or empty"),
    "bad_value:input_tokens": ("input_tokens", "expected a whole number or empty"),
    "bad_value:output_tokens": ("output_tokens", "expected a whole number or empty"),
    "quality_missing": ("quality", "expected a float in [0, 1], not null/NaN"),
    "quality_range": ("quality", "expected a float in [0, 1]"),
    "cost_missing": ("cost_usd", "expected a finite USD amount >= 0, not null/NaN/inf"),
    "cost_negative": ("cost_usd", "expected a USD amount >= 0"),
    "latency_invalid": ("latency_s", "expected seconds >= 0 (finite) or null"),
    "input_tokens_negative": ("input_tokens", "expected a token count >= 0 or null"),
    "output_tokens_negative": ("output_tokens", "expected a token count >= 0 or null"),
    "duplicate": ("model", "expected one row per (task_id, model); this pair repeats"),
    "task_column_inconsistent": (None, "task-level column must be constant within a task_id"),
    "incomplete_task": ("task_id", "expected one row per model for every task"),
}


@dataclass
class ValidationReport:
    """What validation saw and (with ``drop_invalid``) removed.

    Attributes:
        source: File or dataset name the table came from.
        n_rows_in: Rows before validation.
        n_rows_out: Rows kept.
        n_tasks: Tasks kept.
        n_models: Models in the kept table.
        dropped_rows: Rows removed per reason (a row counts under the first reason it hit;
            ``incomplete_task``/``task_column_inconsistent`` count the remaining rows of tasks
            removed entirely).
        dropped_tasks: Number of task ids that lost all their rows.
        notes: Free-text remarks from importers (e.g. how a missing cost was derived).
        dropped_columns: Per reason, the columns that caused it when it is not implied by the
            reason (``task_column_inconsistent``: the task-level columns that differed).
    """

    source: str | None = None
    n_rows_in: int = 0
    n_rows_out: int = 0
    n_tasks: int = 0
    n_models: int = 0
    dropped_rows: dict[str, int] = field(default_factory=dict)
    dropped_tasks: int = 0
    notes: list[str] = field(default_factory=list)
    dropped_columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        """Total rows removed."""
        return self.n_rows_in - self.n_rows_out

    @property
    def clean(self) -> bool:
        """True when nothing was dropped."""
        return self.n_dropped == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationReport:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def summary(self) -> str:
        """One line, e.g. ``kept 3100/3178 rows; dropped quality_missing=154, incomplete_task=...``."""
        s = f"{self.source or 'traces'}: kept {self.n_rows_out}/{self.n_rows_in} rows, {self.n_tasks} tasks"
        if self.dropped_rows:
            parts = ", ".join(
                f"{k}={v}" + (f" (columns {', '.join(self.dropped_columns[k])})" if self.dropped_columns.get(k) else "")
                for k, v in self.dropped_rows.items()
            )
            s += f"; dropped {parts} ({self.dropped_tasks} tasks removed)"
        return s


def _coerce(df: pl.DataFrame, source: str | None) -> tuple[pl.DataFrame, dict[str, pl.Expr]]:
    """Cast known columns to their schema dtype; return bad-value masks for unparsable cells."""
    bad: dict[str, pl.Expr] = {}
    casts: list[pl.Expr] = []
    schema = df.schema
    for col in ("task_id", "model"):
        dt = schema[col]
        if dt == pl.Utf8 or dt == pl.Categorical or dt == pl.Null:
            if dt != pl.Utf8:
                casts.append(pl.col(col).cast(pl.Utf8))
        elif dt.is_integer():
            casts.append(pl.col(col).cast(pl.Utf8))
        else:
            raise TraceValidationError(f"expected strings (or integers), got dtype {dt}", source=source, column=col)
    for col in (*_FLOAT_COLS, *_INT_COLS):
        if col not in schema:
            continue
        dt = schema[col]
        target = pl.Float64 if col in _FLOAT_COLS else pl.Int64
        if dt == pl.Utf8:
            stripped = pl.col(col).str.strip_chars()
            parsed = stripped.cast(pl.Float64, strict=False)
            empty = stripped.is_null() | (stripped == "")
            bad_expr = ~empty & parsed.is_null()
            if target == pl.Int64:
                bad_expr = bad_expr | (parsed.is_not_null() & parsed.is_finite() & (parsed.round(0) != parsed))
                bad_expr = bad_expr | (parsed.is_not_null() & ~parsed.is_finite())
            bad[f"bad_value:{col}"] = bad_expr
            conv = parsed if target == pl.Float64 else pl.when(bad_expr).then(None).otherwise(parsed).cast(pl.Int64)
            casts.append(conv.alias(col))
        elif dt.is_numeric():
            if target == pl.Int64 and dt.is_float():
                x = pl.col(col)
                bad_expr = x.is_not_null() & (x.is_nan() | ~x.is_finite() | (x.round(0) != x))
                bad[f"bad_value:{col}"] = bad_expr
                casts.append(pl.when(bad_expr).then(None).otherwise(x).cast(pl.Int64).alias(col))
            elif dt != target:
                casts.append(pl.col(col).cast(target))
        elif dt == pl.Null:
            casts.append(pl.col(col).cast(target))
        else:
            raise TraceValidationError(f"expected a numeric column, got dtype {dt}", source=source, column=col)
    if "error" in schema:
        dt = schema["error"]
        if dt == pl.Null or dt == pl.Categorical:
            casts.append(pl.col("error").cast(pl.Utf8))
        elif dt != pl.Utf8:
            raise TraceValidationError(
                f"expected a string error kind (null = no error), got dtype {dt}", source=source, column="error"
            )
    if casts:
        df = df.with_columns(casts)
    if "latency_s" in df.columns:  # NaN latency means "unknown": normalised to null
        df = df.with_columns(pl.col("latency_s").fill_nan(None))
    for col in ("quality", "cost_usd"):
        if col in df.columns and df.schema[col] != pl.Float64:
            df = df.with_columns(pl.col(col).cast(pl.Float64))
    return df, bad


def _row_checks(df: pl.DataFrame, bad: dict[str, pl.Expr]) -> dict[str, pl.Expr]:
    q, c = pl.col("quality"), pl.col("cost_usd")
    checks: dict[str, pl.Expr] = {
        "null_task_id": pl.col("task_id").is_null(),
        "null_model": pl.col("model").is_null(),
    }
    # bad-value masks refer to the pre-cast string columns, so they are computed separately.
    checks["quality_missing"] = q.is_null() | q.is_nan()
    checks["quality_range"] = (q < 0.0) | (q > 1.0)
    checks["cost_missing"] = c.is_null() | c.is_nan() | c.is_infinite()
    checks["cost_negative"] = c < 0.0
    if "latency_s" in df.columns:
        lat = pl.col("latency_s")
        checks["latency_invalid"] = (lat < 0.0) | lat.is_infinite()
    for col in _INT_COLS:
        if col in df.columns:
            checks[f"{col}_negative"] = pl.col(col) < 0
    return checks


def validate_outcomes(
    df: pl.DataFrame,
    *,
    source: str | None = None,
    drop_invalid: bool = False,
    models: list[str] | None = None,
    cell_columns: tuple[str, ...] = (),
) -> tuple[pl.DataFrame, ValidationReport]:
    """Validate (and normalise dtypes of) a long outcome table.

    Args:
        df: One row per (task, model); see ``docs/traces.md`` for the columns.
        source: File/dataset name used in messages and the report.
        drop_invalid: Drop offending rows (and tasks left incomplete) instead of raising.
        models: The models every task must have; defaults to every model present.
        cell_columns: Extra per-call columns (e.g. ``api_calls``) that may vary within a task;
            kept as they are (not checked, not task-level).

    Returns:
        ``(clean_df, report)``; ``clean_df`` has schema dtypes for every known column, in the
        input row order.

    Raises:
        TraceValidationError: on any failing rule (unless ``drop_invalid``), and always on a
            missing required column or an unusable column dtype.
    """
    n_in = df.height
    missing = [c for c in OUTCOME_REQUIRED if c not in df.columns]
    if missing:
        raise TraceValidationError(
            f"missing required column(s) {missing}; expected at least {list(OUTCOME_REQUIRED)} "
            f"(got columns {df.columns[:20]})",
            source=source,
            column=missing[0],
        )
    if _ROW in df.columns:
        raise TraceValidationError(f"reserved column name {_ROW!r}", source=source, column=_ROW)

    # 1) bad values of string-typed numeric columns are evaluated on the raw frame.
    df = df.with_row_index(_ROW)
    raw = df
    tasks_in = df["task_id"].n_unique() if drop_invalid else 0
    raw_bad: dict[str, pl.Expr]
    df_cast, raw_bad = _coerce(df, source)
    if raw_bad:
        bad_frame = df.select(**{k: v.fill_null(False) for k, v in raw_bad.items()})
        df = df_cast.with_columns(bad_frame)
    else:
        df = df_cast
    all_models = df["model"].drop_nulls().unique().sort().to_list()  # before any row is dropped
    checks: dict[str, pl.Expr] = {k: pl.col(k) for k in raw_bad}
    checks.update(_row_checks(df, raw_bad))

    # 2) duplicates of (task_id, model) among rows that pass every other row check (so a copy
    #    that is invalid anyway does not also condemn its valid twin).
    flags = df.select(_ROW, "task_id", "model", **{k: v.fill_null(False) for k, v in checks.items()})
    other_bad = pl.any_horizontal([pl.col(r) for r in checks])
    flags = flags.with_columns(
        duplicate=~other_bad & ((~other_bad).cast(pl.UInt32).sum().over("task_id", "model") > 1)
    ).drop("task_id", "model")
    checks["duplicate"] = pl.col("duplicate")
    reasons = list(checks)
    dropped: dict[str, int] = {}
    dropped_columns: dict[str, list[str]] = {}
    any_bad = pl.any_horizontal([pl.col(r) for r in reasons]) if reasons else pl.lit(False)
    flags = flags.with_columns(__bad=any_bad)
    n_bad_rows = int(flags["__bad"].sum())
    problems: list[tuple[str, list[int], int]] = []
    if n_bad_rows:
        counts = flags.select(pl.col(r).sum() for r in reasons).row(0)
        for r, cnt in zip(reasons, counts, strict=True):
            if cnt:
                rows = flags.filter(pl.col(r))[_ROW].head(6).to_list()
                problems.append((r, rows, int(cnt)))
        if not drop_invalid:
            _raise(problems, raw, source)
        # count each dropped row under its first reason
        first = pl.coalesce([pl.when(pl.col(r)).then(pl.lit(r)) for r in reasons])
        vc = dict(flags.filter("__bad").select(first.alias("reason"))["reason"].value_counts().iter_rows())
        dropped.update((r, int(vc[r])) for r in reasons if r in vc)
        keep = ~flags["__bad"]
        df = df.filter(keep)

    # 3) task-level columns constant within a task.
    task_cols = [c for c in df.columns
                 if c not in CELL_COLUMNS and c not in ("task_id", _ROW, *raw_bad, *cell_columns)]
    df = df.drop([c for c in raw_bad if c in df.columns])
    if task_cols:
        incons = (
            df.group_by("task_id")
            .agg([pl.col(c).n_unique().alias(c) for c in task_cols])
            .filter(pl.any_horizontal([pl.col(c) > 1 for c in task_cols]))
        )
        if incons.height:
            bad_tasks = incons["task_id"]
            bad_cols = [c for c in task_cols if (incons[c] > 1).any()]
            mask = pl.col("task_id").is_in(bad_tasks.implode())
            if not drop_invalid:
                rows = df.filter(mask)[_ROW].head(6).to_list()
                raise TraceValidationError(
                    f"{REASONS['task_column_inconsistent'][1]} ({incons.height} task(s), e.g. "
                    f"{bad_tasks.head(3).to_list()}); affected column(s) {bad_cols}; {_INCONSISTENT_HINT}; "
                    f"{_DROP_HINT}",
                    source=source,
                    column=bad_cols[0],
                    rows=rows,
                    n_rows=int(df.select(mask.sum()).item()),
                )
            n_drop = int(df.select(mask.sum()).item())
            dropped["task_column_inconsistent"] = n_drop
            dropped_columns["task_column_inconsistent"] = bad_cols
            df = df.filter(~mask)

    # 4) completeness: every task has every model.
    present = all_models if models is None else list(models)
    unknown = sorted(set(df["model"].unique().to_list()) - set(present)) if models is not None else []
    if unknown:
        raise TraceValidationError(
            f"models {unknown[:10]} are not among the expected models {present}", source=source, column="model"
        )
    n_models = len(present)
    per_task = df.group_by("task_id").len()
    short = per_task.filter(pl.col("len") != n_models)
    if short.height:
        mask = pl.col("task_id").is_in(short["task_id"].implode())
        if not drop_invalid:
            rows = df.filter(mask)[_ROW].head(6).to_list()
            raise TraceValidationError(
                f"{REASONS['incomplete_task'][1]} ({n_models} models); {short.height} task(s) are incomplete, "
                f"e.g. {short['task_id'].head(3).to_list()} with {short['len'].head(3).to_list()} rows; {_DROP_HINT}",
                source=source,
                column="task_id",
                rows=rows,
                n_rows=int(df.select(mask.sum()).item()),
            )
        dropped["incomplete_task"] = int(df.select(mask.sum()).item())
        df = df.filter(~mask)

    df = df.drop(_ROW)
    n_tasks = df["task_id"].n_unique()
    report = ValidationReport(
        source=source,
        n_rows_in=n_in,
        n_rows_out=df.height,
        n_tasks=n_tasks,
        n_models=n_models if df.height else 0,
        dropped_rows=dropped,
        dropped_tasks=max(tasks_in - n_tasks, 0) if dropped else 0,
        dropped_columns=dropped_columns,
    )
    return df, report


def _raise(problems: list[tuple[str, list[int], int]], df: pl.DataFrame, source: str | None) -> None:
    reason, rows, count = problems[0]
    column, expectation = REASONS[reason]
    shown = rows[:5]
    detail = ""
    if column is not None and column in df.columns and reason != "duplicate":
        vals = df.filter(pl.col(_ROW).is_in(shown))[column].to_list()
        detail = f", got {vals[: len(shown)]!r}"
    elif reason == "duplicate":
        pairs = df.filter(pl.col(_ROW).is_in(shown)).select("task_id", "model").rows()
        detail = f", e.g. {pairs[:3]}"
    others = ""
    if len(problems) > 1:
        others = "; also: " + ", ".join(f"{r} ({c} rows)" for r, _, c in problems[1:])
    raise TraceValidationError(
        f"{expectation}{detail} [{reason}]{others}; {_DROP_HINT}",
        source=source,
        column=column,
        rows=rows,
        n_rows=count,
    )


#: All known columns of the outcome schema, for documentation helpers.
KNOWN_COLUMNS = (*OUTCOME_REQUIRED, *OUTCOME_OPTIONAL, *TASK_COLUMNS)

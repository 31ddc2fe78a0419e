"""Bad-input cases of validate_outcomes: every rule, messages naming file/row/column, drop reports."""

from __future__ import annotations

import math

import polars as pl
import pytest

from router_rl.traces import TraceValidationError, validate_outcomes


def _frame(**over: list) -> pl.DataFrame:
    d: dict[str, list] = {
        "task_id": ["t1", "t1", "t2", "t2", "t3", "t3"],
        "model": ["a", "b", "a", "b", "a", "b"],
        "quality": [0.5, 1.0, 0.0, 0.25, 1.0, 0.0],
        "cost_usd": [0.1, 0.2, 0.1, 0.2, 0.1, 0.2],
        "latency_s": [1.0, 2.0, 1.0, 2.0, 1.0, 2.0],
        "input_tokens": [10, 10, 20, 20, 30, 30],
        "output_tokens": [5, 6, 7, 8, 9, 10],
        "prompt": ["p1", "p1", "p2", "p2", "p3", "p3"],
    }
    d.update(over)
    return pl.DataFrame(d, strict=False)


def test_clean_frame_passes_unchanged() -> None:
    df = _frame()
    out, rep = validate_outcomes(df, source="x.csv")
    assert out.equals(df)
    assert (rep.n_rows_in, rep.n_rows_out, rep.n_tasks, rep.n_models, rep.dropped_rows) == (6, 6, 3, 2, {})
    assert rep.clean


def test_missing_required_column_names_it() -> None:
    with pytest.raises(TraceValidationError, match=r"x\.csv: column 'cost_usd': missing required column"):
        validate_outcomes(_frame().drop("cost_usd"), source="x.csv")
    # even drop_invalid cannot fix a missing column
    with pytest.raises(TraceValidationError, match="missing required"):
        validate_outcomes(_frame().drop("quality"), source="x.csv", drop_invalid=True)


@pytest.mark.parametrize(
    ("column", "values", "reason", "row"),
    [
        ("quality", [0.5, 1.0, 1.5, 0.25, 1.0, 0.0], "quality_range", 2),
        ("quality", [0.5, 1.0, 0.0, -0.1, 1.0, 0.0], "quality_range", 3),
        ("quality", [0.5, None, 0.0, 0.25, 1.0, 0.0], "quality_missing", 1),
        ("quality", [0.5, 1.0, 0.0, 0.25, math.nan, 0.0], "quality_missing", 4),
        ("cost_usd", [0.1, 0.2, 0.1, 0.2, None, 0.2], "cost_missing", 4),
        ("cost_usd", [0.1, 0.2, math.nan, 0.2, 0.1, 0.2], "cost_missing", 2),
        ("cost_usd", [0.1, 0.2, 0.1, -0.01, 0.1, 0.2], "cost_negative", 3),
        ("latency_s", [1.0, -2.0, 1.0, 2.0, 1.0, 2.0], "latency_invalid", 1),
        ("input_tokens", [10, 10, -1, 20, 30, 30], "input_tokens_negative", 2),
        ("output_tokens", [5, 6, 7, 8, 9, -3], "output_tokens_negative", 5),
        ("quality", ["0.5", "1", "high", "0.25", "1", "0"], "bad_value:quality", 2),
        ("output_tokens", [5.0, 6.5, 7.0, 8.0, 9.0, 10.0], "bad_value:output_tokens", 1),
    ],
)
def test_bad_cell_raises_with_file_row_column(column: str, values: list, reason: str, row: int) -> None:
    df = _frame(**{column: values})
    with pytest.raises(TraceValidationError) as ei:
        validate_outcomes(df, source="bad.csv")
    msg = str(ei.value)
    assert msg.startswith(f"bad.csv: row {row}, column '{column}':"), msg
    assert f"[{reason}]" in msg
    assert ei.value.rows[0] == row and ei.value.column == column
    # drop_invalid removes the row, then its now-incomplete task, and counts both
    out, rep = validate_outcomes(df, source="bad.csv", drop_invalid=True)
    assert rep.dropped_rows == {reason: 1, "incomplete_task": 1}
    assert rep.dropped_tasks == 1
    assert (out.height, rep.n_tasks, rep.n_rows_out) == (4, 2, 4)
    task_of_row = ["t1", "t1", "t2", "t2", "t3", "t3"][row]
    assert task_of_row not in out["task_id"].to_list()


def test_castable_strings_are_accepted_and_typed() -> None:
    df = _frame(quality=["0.5", "1", "0", " 0.25 ", "1.0", "0"], cost_usd=["0.1"] * 6,
                input_tokens=["10", "10", "20", "20", "", None])
    out, _ = validate_outcomes(df)
    assert out.schema["quality"] == pl.Float64 and out.schema["input_tokens"] == pl.Int64
    assert out["quality"].to_list() == [0.5, 1.0, 0.0, 0.25, 1.0, 0.0]
    assert out["input_tokens"].to_list() == [10, 10, 20, 20, None, None]


def test_integer_ids_are_cast_to_strings_and_nan_latency_is_unknown() -> None:
    df = _frame(task_id=[1, 1, 2, 2, 3, 3], latency_s=[1.0, math.nan, 1.0, 2.0, 1.0, 2.0])
    out, _ = validate_outcomes(df)
    assert out.schema["task_id"] == pl.Utf8 and out["task_id"][0] == "1"
    assert out["latency_s"][1] is None


def test_unusable_dtype_is_a_column_error() -> None:
    df = _frame(quality=[[0.5]] * 6)
    with pytest.raises(TraceValidationError, match="column 'quality': expected a numeric column"):
        validate_outcomes(df, source="x.parquet", drop_invalid=True)


def test_duplicate_pair() -> None:
    df = pl.concat([_frame(), _frame().slice(2, 1)])
    expect = r"rows 2, 6, column 'model': expected one row per \(task_id, model\)"
    with pytest.raises(TraceValidationError, match=expect):
        validate_outcomes(df, source="d.csv")
    out, rep = validate_outcomes(df, source="d.csv", drop_invalid=True)
    assert rep.dropped_rows == {"duplicate": 2, "incomplete_task": 1}
    assert sorted(out["task_id"].unique().to_list()) == ["t1", "t3"]


def test_incomplete_task() -> None:
    df = _frame().filter(~((pl.col("task_id") == "t3") & (pl.col("model") == "b")))
    with pytest.raises(TraceValidationError, match=r"d.csv: row 4, column 'task_id': expected one row per model") as ei:
        validate_outcomes(df, source="d.csv")
    assert "['t3']" in str(ei.value)
    out, rep = validate_outcomes(df, source="d.csv", drop_invalid=True)
    assert rep.dropped_rows == {"incomplete_task": 1} and out.height == 4


def test_expected_models_argument() -> None:
    with pytest.raises(TraceValidationError, match="incomplete"):
        validate_outcomes(_frame(), models=["a", "b", "c"])
    with pytest.raises(TraceValidationError, match=r"models \['b'\] are not among"):
        validate_outcomes(_frame(), models=["a"])


def test_task_column_not_constant() -> None:
    df = _frame(prompt=["p1", "p1", "p2", "OTHER", "p3", "p3"])
    with pytest.raises(TraceValidationError, match=r"rows 2, 3, column 'prompt': task-level column must be constant"):
        validate_outcomes(df, source="c.csv")
    out, rep = validate_outcomes(df, drop_invalid=True)
    assert rep.dropped_rows == {"task_column_inconsistent": 2} and rep.dropped_tasks == 1
    assert "t2" not in out["task_id"].to_list()


def test_several_problems_are_all_mentioned_and_counted() -> None:
    df = _frame(quality=[0.5, 2.0, 0.0, 0.25, 1.0, 0.0], cost_usd=[0.1, 0.2, 0.1, 0.2, -1.0, -1.0])
    with pytest.raises(TraceValidationError) as ei:
        validate_outcomes(df, source="m.csv")
    assert "quality_range" in str(ei.value) and "cost_negative (2 rows)" in str(ei.value)
    out, rep = validate_outcomes(df, drop_invalid=True)
    assert rep.dropped_rows == {"quality_range": 1, "cost_negative": 2, "incomplete_task": 1}
    assert out["task_id"].unique().to_list() == ["t2"]
    assert rep.n_dropped == 4
    assert "dropped quality_range=1" in rep.summary()


def test_invalid_copy_does_not_condemn_its_valid_twin() -> None:
    twin = _frame().slice(2, 1).with_columns(quality=pl.lit(None, dtype=pl.Float64))
    df = pl.concat([_frame(), twin])
    out, rep = validate_outcomes(df, drop_invalid=True)
    assert rep.dropped_rows == {"quality_missing": 1}
    assert out.height == 6 and rep.dropped_tasks == 0

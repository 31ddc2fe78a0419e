"""The long importer carries the catalog (columns or a file) and per-call outcome columns."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from router_rl.traces import load_traces
from router_rl.traces.catalog import read_catalog_table
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.importers.long import import_long
from router_rl.traces.split import SplitSpec

MODELS = ("gpt-4o", "my-local-7b")


def _frame(n_tasks: int = 20, **extra: list[object]) -> pl.DataFrame:
    rows = {"task_id": [f"t{t}" for t in range(n_tasks) for _ in MODELS],
            "model": [m for _ in range(n_tasks) for m in MODELS],
            "quality": [float((t + j) % 2) for t in range(n_tasks) for j in range(len(MODELS))],
            "cost_usd": [0.01 if m == "gpt-4o" else 0.001 for _ in range(n_tasks) for m in MODELS],
            "repo": [f"r{t % 3}" for t in range(n_tasks) for _ in MODELS]}
    return pl.DataFrame({**rows, **extra})


def _per_model(values: dict[str, object], n_tasks: int = 20) -> list[object]:
    return [values[m] for _ in range(n_tasks) for m in MODELS]


def test_catalog_columns_and_per_call_columns(tmp_path: Path) -> None:
    n = 20
    df = _frame(n, location=_per_model({"gpt-4o": "cloud", "my-local-7b": "local"}),
                provider=_per_model({"gpt-4o": "openai", "my-local-7b": "ollama"}),
                usd_per_m_input=_per_model({"gpt-4o": 2.5, "my-local-7b": None}),
                gpu_usd_per_hour=_per_model({"gpt-4o": None, "my-local-7b": 0.45}),
                tokens_per_s=_per_model({"gpt-4o": None, "my-local-7b": 80}),
                context_window=_per_model({"gpt-4o": 128000, "my-local-7b": 32768}),
                api_calls=list(range(2 * n)), turns=[1.0] * (2 * n))
    src = tmp_path / "o.csv"
    df.write_csv(src)
    ts = import_long(src)
    gpt, loc = ts.catalog["gpt-4o"], ts.catalog["my-local-7b"]
    assert (gpt.location, gpt.provider, gpt.usd_per_m_input, gpt.context_window) == ("cloud", "openai", 2.5, 128000)
    assert (loc.location, loc.provider, loc.gpu_usd_per_hour, loc.tokens_per_s) == ("local", "ollama", 0.45, 80.0)
    assert loc.usd_per_m_input == 0.0 and loc.open_weight is True
    assert ts.meta["cell_columns"] == ["api_calls"]  # varies within a task; 'turns' is constant: a task feature
    m = ts.matrix()
    assert "api_calls" not in m.tasks.columns and "turns" in m.tasks.columns and "repo" in m.tasks.columns
    assert not any(c in ts.outcomes.columns for c in ("usd_per_m_input", "location", "provider"))
    out = tmp_path / "t.parquet"
    ts.save(out)
    back = load_traces(out)
    assert back.meta["cell_columns"] == ["api_calls"] and "api_calls" not in back.matrix().tasks.columns
    again = import_long(out, split=SplitSpec(column="none"), seed=2)  # re-splitting a saved file keeps its catalog
    assert again.catalog["my-local-7b"].gpu_usd_per_hour == 0.45 and again.meta["cell_columns"] == ["api_calls"]


def test_catalog_column_must_be_constant_per_model(tmp_path: Path) -> None:
    src = tmp_path / "o.csv"
    _frame(4, usd_per_m_input=[1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 1.0, 0.0]).write_csv(src)
    with pytest.raises(TraceValidationError, match=r"column 'usd_per_m_input': a catalog column must be constant per "
                                                   r"model.*'gpt-4o': \[1.0, 2.0\].*--cell-column usd_per_m_input"):
        import_long(src)
    _frame(2, location=["cloud", "moon", "cloud", "moon"]).write_csv(src)
    with pytest.raises(ValueError, match=r"'my-local-7b', field 'location': expected one of \['local', 'cloud'\]"):
        import_long(src)


def test_catalog_file_formats_and_errors(tmp_path: Path) -> None:
    src = tmp_path / "o.csv"
    _frame(10).write_csv(src)
    csv = tmp_path / "c.csv"
    csv.write_text("model,location,usd_per_m_output,open_weight\nmy-local-7b,cloud,1.5,false\n")
    ts = import_long(src, catalog=csv)
    spec = ts.catalog["my-local-7b"]
    assert (spec.location, spec.usd_per_m_output, spec.open_weight, spec.provider) == ("cloud", 1.5, False, "api")
    assert ts.catalog["gpt-4o"].location == "cloud"  # not in the file: inferred, and said so
    assert any("models not in the catalog" in n and "gpt-4o" in n for n in ts.report.notes)
    js = tmp_path / "c.json"
    js.write_text('[{"model": "gpt-4o", "usd_per_m_input": 2.5, "context_window": 128000}]')
    assert read_catalog_table(js) == {"gpt-4o": {"usd_per_m_input": 2.5, "context_window": 128000}}
    for text, why in (("model,price\ngpt-4o,1\n", r"unknown catalog field\(s\) \['price'\]"),
                      ("model,context_window\ngpt-4o,1.5\n", "field 'context_window': expected a whole number"),
                      ("model,usd_per_m_input\ngpt-4o,cheap\n", "field 'usd_per_m_input': expected a number"),
                      ("model\ngpt-4o\ngpt-4o\n", "listed twice")):
        csv.write_text(text)
        with pytest.raises(ValueError, match=why):
            import_long(src, catalog=csv)
    with pytest.raises(FileNotFoundError, match="catalog file not found"):
        import_long(src, catalog=tmp_path / "nope.yaml")


def test_string_per_call_column_needs_cell_columns(tmp_path: Path) -> None:
    src = tmp_path / "o.csv"
    _frame(3, judge=["a", "b"] * 3).write_csv(src)
    with pytest.raises(TraceValidationError, match=r"affected column\(s\) \['judge'\].*--cell-column NAME.*"
                                                   r"--drop-invalid"):
        import_long(src)
    ts = import_long(src, cell_columns=("judge",))
    assert ts.meta["cell_columns"] == ["judge"] and ts.outcomes["judge"].to_list()[:2] == ["a", "b"]
    with pytest.raises(TraceValidationError, match=r"--cell-column \['nope'\] not in the file"):
        import_long(src, cell_columns=("nope",))


def test_cost_derived_from_tokens_and_catalog_prices(tmp_path: Path) -> None:
    n = 5
    df = _frame(n).drop("cost_usd").with_columns(
        input_tokens=pl.Series(_per_model({"gpt-4o": 1000, "my-local-7b": 2000}, n)),
        output_tokens=pl.Series(_per_model({"gpt-4o": 100, "my-local-7b": 400}, n)),
    )
    src = tmp_path / "o.csv"
    df.write_csv(src)
    cat = tmp_path / "c.yaml"
    cat.write_text("- {model: gpt-4o, usd_per_m_input: 2.5, usd_per_m_output: 10}\n"
                   "- {model: my-local-7b, location: local, gpu_usd_per_hour: 3.6, tokens_per_s: 40}\n")
    ts = import_long(src, catalog=cat)
    cost = dict(ts.outcomes.filter(pl.col("task_id") == "t0").select("model", "cost_usd").iter_rows())
    assert cost["gpt-4o"] == pytest.approx((1000 * 2.5 + 100 * 10) / 1e6)
    assert cost["my-local-7b"] == pytest.approx((400 / 40 + 2000 / 400) * 3.6 / 3600)  # GPU-seconds x USD/h
    assert any("cost_usd derived" in n for n in ts.report.notes)
    cat.write_text("- {model: gpt-4o, usd_per_m_input: 2.5}\n")
    with pytest.raises(TraceValidationError, match=r"no price for models \['my-local-7b'\]"):
        import_long(src, catalog=cat)
    df.drop("output_tokens").write_csv(src)
    with pytest.raises(TraceValidationError, match=r"missing required column 'cost_usd' and token column\(s\) "
                                                   r"\['output_tokens'\]"):
        import_long(src, catalog=cat)

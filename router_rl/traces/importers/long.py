"""Generic importer: a CSV/parquet already in the long outcome format.

Required columns ``task_id, model, quality, cost_usd``; optional cell columns
``latency_s, input_tokens, output_tokens, error``. Other columns are sorted into three kinds:

* **catalog columns** (:data:`~router_rl.traces.catalog.CATALOG_FIELDS`: ``location``,
  ``provider``, ``usd_per_m_input``, ``usd_per_m_output``, ``gpu_usd_per_hour``,
  ``tokens_per_s``, ``context_window``, ``open_weight``): per model, must be constant per model;
  moved into the catalog. A ``catalog`` file (CSV/TSV/parquet/YAML/JSON, one entry per model)
  may give the same fields; a value given both ways must agree. What neither gives is inferred
  from the model id (GPT/Claude/Gemini/... = cloud, everything else local) or defaulted;
* **per-call columns** (``cell_columns``, plus every numeric column that varies within a task,
  e.g. ``api_calls``, ``turns``): kept in the outcome table next to ``quality``, never used as
  task features; the report lists them;
* **task-level columns** (everything else, e.g. ``prompt``, ``repo``): constant within a task,
  used as features.

Splits follow :class:`~router_rl.traces.split.SplitSpec` (labels from a ``split`` column or
``split.column``, unlabelled tasks by fractions, ``val`` carved from train when absent).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from router_rl.traces.catalog import CATALOG_FIELDS, ModelCatalog, ModelSpec, coerce_catalog_field, read_catalog_table
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.importers._common import finish, infer_location, infer_provider, read_table
from router_rl.traces.parquet import read_metadata, read_parquet
from router_rl.traces.schema import LOCAL
from router_rl.traces.split import SplitSpec
from router_rl.traces.traceset import TraceSet
from router_rl.traces.validate import CELL_COLUMNS

#: Kept for callers of the old name: the model-level columns moved into the catalog.
MODEL_LEVEL = CATALOG_FIELDS


def import_long(
    path: str | Path,
    *,
    drop_invalid: bool = False,
    seed: int = 0,
    split: SplitSpec | None = None,
    catalog: str | Path | None = None,
    cell_columns: Sequence[str] = (),
) -> TraceSet:
    """Import a long-format outcome file (see module docstring).

    Args:
        path: A ``.csv``/``.tsv``/``.parquet`` file, or a folder holding exactly one.
        drop_invalid: Drop offending rows/tasks (counted in the report) instead of raising.
        seed: Seed of the split assignment and of the val carve.
        split: Split rule; default ``SplitSpec()`` (70/10/20 for unlabelled tasks, val carved
            as 10% of train when the file has none).
        catalog: Optional catalog file with per-model fields.
        cell_columns: Columns to keep as per-call outcome columns even if they are strings or
            constant within tasks.

    Raises:
        TraceValidationError: a bad cell, a model-level column that differs within a model, a
            catalog value that contradicts the file, ... (naming the file, column and rows).
        ValueError / FileNotFoundError: an unreadable file or catalog.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.parquet"), *path.glob("*.csv"), *path.glob("*.tsv")])
        if len(files) != 1:
            raise ValueError(f"{path}: expected exactly one .csv/.tsv/.parquet file in the folder, found {len(files)}")
        path = files[0]
    if not path.exists():
        raise FileNotFoundError(f"trace file not found: {path}")
    src = str(path)
    saved = read_metadata(path) if path.suffix == ".parquet" else None
    if saved is not None:  # a trace file written by TraceSet.save: re-import it keeping its catalog
        parts = read_parquet(path, saved)
        df = parts.outcomes
        cell_columns = (*cell_columns, *[c for c in parts.meta.get("cell_columns") or () if c not in cell_columns])
    else:
        df = read_table(path, infer_schema_length=10000)
    if "model" not in df.columns:
        raise TraceValidationError(f"missing required column ['model'] (got columns {df.columns[:20]})",
                                   source=src, column="model")
    notes: list[str] = []
    df = df.with_columns(pl.col("model").cast(pl.Utf8))
    missing_cells = [c for c in cell_columns if c not in df.columns]
    if missing_cells:
        raise TraceValidationError(f"--cell-column {missing_cells} not in the file (columns: {df.columns[:20]})",
                                   source=src, column=missing_cells[0])
    models = df["model"].unique(maintain_order=True).drop_nulls().to_list()
    fields = _model_columns(df, src)
    if saved is not None:
        for spec in parts.catalog.to_dict():
            fields.setdefault(spec.pop("model"), {}).update({k: v for k, v in spec.items() if v is not None})
    df = df.drop([c for c in CATALOG_FIELDS if c in df.columns])
    if fields:
        notes.append(f"catalog columns {sorted({k for f in fields.values() for k in f})} read per model")
    if catalog is not None:
        given = read_catalog_table(catalog)
        notes.extend(_merge_catalog(fields, given, models, src, str(catalog)))
    cat = _build_catalog(models, fields)
    if "cost_usd" not in df.columns:
        df = _derive_cost(df, cat, fields, src)
        notes.append("cost_usd derived per call from input/output tokens x catalog prices (no cost_usd column)")
    cells = (*cell_columns, *_varying_numeric(df, exclude=cell_columns))
    if cells:
        notes.append(f"per-call outcome columns (not task features): {list(cells)}")
    return finish(df, cat, source=src, drop_invalid=drop_invalid, seed=seed, meta={"importer": "long"},
                  notes=notes, split=split or SplitSpec(), cell_columns=tuple(cells))


def _model_columns(df: pl.DataFrame, src: str) -> dict[str, dict[str, Any]]:
    """Catalog fields found as columns, per model (must be constant per model; nulls = not given)."""
    level = [c for c in CATALOG_FIELDS if c in df.columns]
    if not level:
        return {}
    per = df.filter(pl.col("model").is_not_null()).group_by("model", maintain_order=True).agg(
        [pl.col(c).drop_nulls().unique().alias(c) for c in level]
    )
    out: dict[str, dict[str, Any]] = {}
    for c in level:
        bad = per.filter(pl.col(c).list.len() > 1)
        if bad.height:
            ex = bad.row(0, named=True)
            raise TraceValidationError(
                f"a catalog column must be constant per model, but {bad.height} model(s) have several values, e.g. "
                f"{ex['model']!r}: {ex[c][:4]}; if it is a per-call value, keep it as an outcome column with "
                f"--cell-column {c}", source=src, column=c)
    for row in per.iter_rows(named=True):
        m = str(row["model"])
        out[m] = {}
        for c in level:
            vals = row[c]
            v = coerce_catalog_field(c, vals[0] if vals else None, model=m, source=src)
            if v is not None:
                out[m][c] = v
    return out


def _merge_catalog(fields: dict[str, dict[str, Any]], given: dict[str, dict[str, Any]], models: list[str],
                   src: str, cat_src: str) -> list[str]:
    """Merge the catalog file into ``fields`` (in place); return notes."""
    for m, f in given.items():
        if m not in models:
            continue
        mine = fields.setdefault(m, {})
        for k, v in f.items():
            if k in mine and mine[k] != v:
                raise TraceValidationError(
                    f"model {m!r}: {k}={mine[k]!r} in the file but {v!r} in the catalog {cat_src}; give it once",
                    source=src, column=k)
            mine[k] = v
    notes = [f"catalog {cat_src}: {sum(m in given for m in models)} of {len(models)} models"]
    unlisted = [m for m in models if m not in given]
    if unlisted:
        notes.append(f"models not in the catalog {cat_src} (location inferred from the id): {unlisted[:10]}")
    extra = sorted(set(given) - set(models))
    if extra:
        notes.append(f"catalog {cat_src} lists models absent from the data (ignored): {extra[:10]}")
    return notes


def _build_catalog(models: list[str], fields: dict[str, dict[str, Any]]) -> ModelCatalog:
    specs = []
    for m in models:
        f = dict(fields.get(m, {}))
        loc = f.pop("location", None) or infer_location(m)
        f.setdefault("provider", infer_provider(m, loc))
        f.setdefault("open_weight", loc == LOCAL)
        try:
            specs.append(ModelSpec(model=m, location=loc, **f))
        except ValueError as e:
            raise TraceValidationError(str(e), column="model") from e
    return ModelCatalog(specs)


def _derive_cost(df: pl.DataFrame, cat: ModelCatalog, fields: dict[str, dict[str, Any]], src: str) -> pl.DataFrame:
    """``cost_usd`` from tokens x the catalog (:meth:`ModelSpec.cost`) when the file has no cost column.

    Every model needs an explicit price (a token price, or ``gpu_usd_per_hour`` with
    ``tokens_per_s`` for a local model) and every row its token counts: nothing is assumed free.
    """
    need = "give cost_usd, or input_tokens/output_tokens plus per-model prices (usd_per_m_input/usd_per_m_output, " \
           "or gpu_usd_per_hour and tokens_per_s for local models) as columns or in --catalog"
    lacking = [c for c in ("input_tokens", "output_tokens") if c not in df.columns]
    if lacking:
        raise TraceValidationError(f"missing required column 'cost_usd' and token column(s) {lacking}; {need}",
                                   source=src, column="cost_usd")
    def priced(m: str) -> bool:
        given = fields.get(m, {})
        token_price = "usd_per_m_input" in given or "usd_per_m_output" in given
        gpu_price = cat[m].is_local and "gpu_usd_per_hour" in given and cat[m].tokens_per_s is not None
        return token_price or gpu_price

    unpriced = [m for m in cat.models if not priced(m)]
    if unpriced:
        raise TraceValidationError(f"missing required column 'cost_usd' and no price for models {unpriced[:10]}; "
                                   f"{need}", source=src, column="cost_usd")
    toks = df.select(pl.col("input_tokens").cast(pl.Float64, strict=False),
                     pl.col("output_tokens").cast(pl.Float64, strict=False))
    bad = toks.select((pl.col("input_tokens").is_null() | pl.col("output_tokens").is_null()).arg_true())
    if bad.height:
        rows = bad.to_series().head(6).to_list()
        raise TraceValidationError(f"cost_usd is derived from tokens, but token counts are missing or not numbers; "
                                   f"{need}", source=src, column="input_tokens", rows=rows, n_rows=bad.height)
    specs = {s.model: s for s in cat}
    cost = [specs[m].cost(i, o) if m in specs else None
            for m, i, o in zip(df["model"].to_list(), toks["input_tokens"].to_list(),
                               toks["output_tokens"].to_list(), strict=True)]
    return df.with_columns(pl.Series("cost_usd", cost, dtype=pl.Float64))


def _varying_numeric(df: pl.DataFrame, *, exclude: Sequence[str]) -> list[str]:
    """Numeric non-schema columns that take several values within some task (per-call values)."""
    cand = [c for c in df.columns
            if c not in CELL_COLUMNS and c not in ("task_id", "split", *exclude) and df.schema[c].is_numeric()]
    if not cand or "task_id" not in df.columns:
        return []
    n = df.group_by("task_id").agg([pl.col(c).n_unique().alias(c) for c in cand])
    return [c for c in cand if (n[c] > 1).any()]

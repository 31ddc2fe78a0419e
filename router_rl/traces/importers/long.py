"""Generic importer: a CSV/parquet already in the long outcome format.

Required columns ``task_id, model, quality, cost_usd``; optional cell columns
``latency_s, input_tokens, output_tokens, error``; any other column is a task-level feature and
must be constant within a task. Model-level columns ``location`` (``local``/``cloud``) and
``provider`` are moved into the catalog when present (constant per model); otherwise the
location is inferred from the model id (GPT/Claude/Gemini/... = cloud, everything else local).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.importers._common import catalog_from_models, finish, infer_provider, read_table
from router_rl.traces.schema import LOCAL, LOCATIONS
from router_rl.traces.traceset import TraceSet

MODEL_LEVEL = ("location", "provider")


def import_long(path: str | Path, *, drop_invalid: bool = False, seed: int = 0) -> TraceSet:
    """Import a long-format outcome file (see module docstring)."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.parquet"), *path.glob("*.csv")])
        if len(files) != 1:
            raise ValueError(f"{path}: expected exactly one .csv/.parquet file in the folder, found {len(files)}")
        path = files[0]
    src = str(path)
    df = read_table(path, infer_schema_length=10000)
    if "model" not in df.columns:
        raise TraceValidationError("missing required column ['model']", source=src, column="model")
    models = df["model"].cast(pl.Utf8).unique(maintain_order=True).drop_nulls().to_list()
    level = [c for c in MODEL_LEVEL if c in df.columns]
    if level:
        per = df.group_by("model").agg([pl.col(c).n_unique().alias(c) for c in level])
        for c in level:
            bad = per.filter(pl.col(c) > 1)["model"].to_list()
            if bad:
                raise TraceValidationError(f"model-level column must be constant per model; models {bad[:5]}",
                                           source=src, column=c)
        firsts = df.group_by("model", maintain_order=True).agg([pl.col(c).first() for c in level])
        specs = []
        for row in firsts.iter_rows(named=True):
            m = str(row["model"])
            loc = row.get("location") or catalog_from_models([m])[m].location
            if loc not in LOCATIONS:
                raise TraceValidationError(f"expected one of {LOCATIONS}, got {loc!r} for model {m!r}",
                                           source=src, column="location")
            specs.append(ModelSpec(model=m, provider=row.get("provider") or infer_provider(m, loc), location=loc,
                                   open_weight=loc == LOCAL))
        catalog = ModelCatalog(specs)
        df = df.drop(level)
    else:
        catalog = catalog_from_models([str(m) for m in models])
    return finish(df, catalog, source=src, drop_invalid=drop_invalid, seed=seed, meta={"importer": "long"})

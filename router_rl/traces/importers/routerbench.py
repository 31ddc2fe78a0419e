"""RouterBench 0-shot subset as vendored by RouterDC (``routerbench-subset-via-routerdc``).

Wide CSVs ``<task>_{train,test}.csv``: one row per prompt; for each of 11 models a 0/1 score
column ``<model>``, ``<model>|total_cost`` (USD of that call) and ``<model>|model_response``.

* ``task_id`` = the file's ``sample_id``; ``prompt`` = the stringified list of strings parsed with
  :func:`ast.literal_eval` and joined with blank lines; ``category`` = ``eval_name``.
* ``split``: ``train``/``test`` from the file name; ``val`` is carved from train (seeded, 10% of
  the train tasks).
* Known defects (SOURCE.md): ARC-Challenge has NaN score cells (92 train / 62 test) and duplicate
  sample_ids (7 train / 1 test, whose copies carry different prompts). By default these raise
  :class:`TraceValidationError`; with ``drop_invalid=True`` the NaN cells are dropped, then
  every task left incomplete or with two different prompts is removed, and the report counts
  rows per reason. Demos and experiments use ``drop_invalid=True``.
* No latency and no token counts. GPT/Claude = cloud; Llama/Mistral/Mixtral/Yi/WizardLM/
  CodeLlama = local (open weights), each keeping the USD cost the dataset reports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl

from router_rl.traces.errors import TraceValidationError
from router_rl.traces.importers._common import catalog_from_models, finish
from router_rl.traces.split import SplitSpec, carve_split
from router_rl.traces.traceset import TraceSet

DATASET = "routerbench-subset-via-routerdc"
MODELS: tuple[str, ...] = (
    "WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1",
    "claude-v1",
    "claude-v2",
    "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
)
VAL_FRACTION = 0.1


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    for sub in (path, path / "routerbench_zs"):
        files = sorted(sub.glob("*_train.csv")) + sorted(sub.glob("*_test.csv"))
        if files:
            return files
    raise FileNotFoundError(f"{path}: no routerbench '*_train.csv'/'*_test.csv' files found")


def _parse_prompt(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        val = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(val, list):
        return "\n\n".join(str(x) for x in val)
    return str(val)


def read_wide(file: Path) -> pl.DataFrame:
    """One routerbench CSV in long outcome format (unvalidated)."""
    df = pl.read_csv(file, infer_schema_length=0)
    src = str(file)
    missing = [c for c in ("sample_id", "prompt", "eval_name") if c not in df.columns]
    missing += [c for m in MODELS for c in (m, f"{m}|total_cost") if c not in df.columns]
    if missing:
        raise TraceValidationError(f"missing column(s) {missing[:6]}", source=src, column=missing[0])
    split = "test" if file.stem.endswith("_test") else "train" if file.stem.endswith("_train") else None
    # Parsed here, one row after another on this thread, never in a polars UDF: CPython 3.11's
    # AST constructor keeps its recursion depth in interpreter-global state, so ast.literal_eval
    # run from polars' worker threads at once fails with "AST constructor recursion depth
    # mismatch" (cpython gh-106905) on some runs.
    prompts = pl.Series("prompt", [_parse_prompt(t) for t in df["prompt"].to_list()], dtype=pl.Utf8)
    tasks = df.select(
        pl.col("sample_id").alias("task_id"),
        pl.lit(prompts),
        pl.col("eval_name").alias("category"),
        pl.lit(DATASET).alias("source"),
        pl.lit(split, dtype=pl.Utf8).alias("split"),
    )
    cells = [
        tasks.with_columns(
            model=pl.lit(m),
            quality=df[m],
            cost_usd=df[f"{m}|total_cost"],
        )
        for m in MODELS
    ]
    return pl.concat(cells).select(
        "task_id", "model", "quality", "cost_usd", "prompt", "category", "source", "split"
    )


def import_routerbench(
    path: str | Path, *, drop_invalid: bool = False, seed: int = 0, split: SplitSpec | None = None
) -> TraceSet:
    """Import the folder (or one CSV) of ``routerbench-subset-via-routerdc``."""
    path = Path(path)
    files = _files(path)
    df = pl.concat([read_wide(f) for f in files])
    catalog = catalog_from_models(list(MODELS))
    ts = finish(
        df,
        catalog,
        source=str(path),
        drop_invalid=drop_invalid,
        seed=seed,
        split=split,
        meta={"importer": "routerbench", "dataset": DATASET, "files": [f.name for f in files],
              "val_fraction_of_train": VAL_FRACTION},
        notes=["split train/test from file names; val carved from train"],
    )
    if split is None:  # the documented default; a SplitSpec carves val itself, only when missing
        ts.outcomes = carve_split(ts.outcomes, seed=seed, fraction=VAL_FRACTION)
    return ts

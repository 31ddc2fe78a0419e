"""Helpers shared by the importers: reading tables, local/cloud classification, finishing a TraceSet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.schema import CLOUD, LOCAL
from router_rl.traces.split import SplitSpec, apply_split_spec, assign_splits
from router_rl.traces.traceset import TraceSet
from router_rl.traces.validate import validate_outcomes

#: Substrings (lower-case) that mark a closed-weight model served only by a cloud API.
CLOUD_PATTERNS: tuple[str, ...] = (
    "gpt-",
    "gpt4",
    "gpt3",
    "o1-",
    "o3-",
    "o4-",
    "chatgpt",
    "claude",
    "gemini",
    "palm",
    "command-r",
    "cohere",
    "mistral-large",
    "mistral-medium",
    "mistral-small-2402",
    "codestral",
    "yi-large",
    "grok",
    "nova-",
    "reka",
    "openrouter/",
    "palmyra",
)
#: Default local compute assumption for open-weight models when a dataset has no cost.
DEFAULT_GPU_USD_PER_HOUR = 2.0  # one data-centre GPU (e.g. an A100 80GB on-demand) per hour
DEFAULT_TOKENS_PER_S = 40.0
CHARS_PER_TOKEN = 4.0  # decode throughput of a 7-8B model on that GPU, single stream


def estimate_tokens(text: pl.Expr) -> pl.Expr:
    """Token estimate used where a dataset has none: ``ceil(chars / 4)`` (documented in docs/traces.md)."""
    return (text.str.len_chars().cast(pl.Float64) / CHARS_PER_TOKEN).ceil().cast(pl.Int64)


def infer_location(model: str) -> str:
    """``"cloud"`` for closed-weight API models (GPT, Claude, Gemini, ...), else ``"local"``."""
    m = model.lower()
    return CLOUD if any(p in m for p in CLOUD_PATTERNS) else LOCAL


def infer_provider(model: str, location: str) -> str:
    """Best-effort provider name from a model id."""
    m = model.lower()
    for key, prov in (
        ("claude", "anthropic"),
        ("gpt", "openai"),
        ("o1-", "openai"),
        ("gemini", "google"),
        ("openrouter/", "openrouter"),
        ("command", "cohere"),
        ("mistral-large", "mistral"),
        ("codestral", "mistral"),
    ):
        if key in m:
            return prov
    return "vllm" if location == LOCAL else "api"


def read_table(path: Path, **csv_kw: Any) -> pl.DataFrame:
    """Read a CSV or parquet file, with a clear error for other suffixes."""
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix in (".csv", ".tsv"):
        return pl.read_csv(path, separator="\t" if path.suffix == ".tsv" else ",", **csv_kw)
    raise ValueError(f"{path}: expected a .csv, .tsv or .parquet file")


def finish(
    df: pl.DataFrame,
    catalog: ModelCatalog,
    *,
    source: str,
    drop_invalid: bool,
    seed: int,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    meta: dict[str, Any] | None = None,
    notes: list[str] | None = None,
    split: SplitSpec | None = None,
    cell_columns: tuple[str, ...] = (),
) -> TraceSet:
    """Validate, add splits (respecting existing ones), order rows and wrap in a TraceSet.

    ``split=None`` keeps labels and assigns ``fractions`` to unlabelled tasks (each importer's
    documented default); a :class:`SplitSpec` applies its rule instead (see
    :func:`router_rl.traces.split.apply_split_spec`), its notes land in the report.
    ``cell_columns`` are extra per-call outcome columns (recorded in ``meta["cell_columns"]``).
    """
    df, report = validate_outcomes(df, source=source, drop_invalid=drop_invalid, models=None,
                                   cell_columns=cell_columns)
    if df.height == 0:
        raise TraceValidationError(f"no valid rows left ({report.summary()})", source=source)
    present = set(df["model"].unique().to_list())
    catalog = ModelCatalog([s for s in catalog if s.model in present])
    missing = sorted(present - set(catalog.models))
    if missing:
        raise ValueError(f"{source}: importer catalog lacks models {missing}")
    split_notes: list[str] = []
    if split is None:
        df = assign_splits(df, seed=seed, fractions=fractions)
    else:
        df, split_notes = apply_split_spec(df, split, seed=seed, source=source)
        fractions = split.fractions
    order = {m: i for i, m in enumerate(catalog.models)}
    df = (
        df.with_columns(pl.col("model").replace_strict(order, return_dtype=pl.Int32).alias("__m"))
        .sort(["task_id", "__m"], maintain_order=True)
        .drop("__m")
    )
    report.notes.extend([*(notes or []), *split_notes])
    m: dict[str, Any] = {"source": source, "split_seed": seed, "split_fractions": list(fractions)}
    if split is not None:
        m["split_spec"] = {"fractions": list(split.fractions), "column": split.column}
    if cell_columns:
        m["cell_columns"] = list(cell_columns)
    m.update(meta or {})
    return TraceSet(outcomes=df, catalog=catalog, report=report, meta=m)


def catalog_from_models(models: list[str], overrides: dict[str, dict[str, Any]] | None = None) -> ModelCatalog:
    """A catalog with inferred location/provider for each model (plus per-model overrides)."""
    specs = []
    for m in models:
        loc = infer_location(m)
        kw: dict[str, Any] = {
            "model": m,
            "provider": infer_provider(m, loc),
            "location": loc,
            "open_weight": loc == LOCAL,
        }
        kw.update((overrides or {}).get(m, {}))
        specs.append(ModelSpec(**kw))
    return ModelCatalog(specs)

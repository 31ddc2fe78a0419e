"""LLMRouter (UIUC) ``dcrouter_preprocessed`` scores of 9 NVIDIA-NIM-hosted open models (``llmrouter-dcrouter-9model``).

* Outcomes from ``per_question_long.csv`` (``split, question_idx, task_name, model, score``);
  prompt text from ``dcrouter_preprocessed/{train,test}.json`` (item ``question_idx``).
* ``task_id`` = ``llmrouter:<split>:<question_idx>``; ``category`` = ``task_name``; ``split`` from
  the file (val carved from train, seeded, 10%). Scores are in [0, 1]; most are 0/1, some tasks
  have fractional scores.
* **Cost is an estimate**: the dataset has no per-query cost or tokens, only list prices
  (``llm_candidates/default_llm.json``, USD per million tokens). We estimate
  ``input_tokens = ceil(len(question) / 4)`` and a fixed ``output_tokens`` per task kind
  (:data:`OUTPUT_TOKENS`), and set ``cost_usd = input x input_price + output x output_price``.
  The token columns hold these estimates. No latency.
* All nine are open-weight models, hence the ``local`` tier (priced at the hosted list price).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.importers._common import estimate_tokens, finish, infer_location, infer_provider
from router_rl.traces.split import SplitSpec, carve_split
from router_rl.traces.traceset import TraceSet

DATASET = "llmrouter-dcrouter-9model"
#: Assumed output tokens per task kind (generation tasks long, multiple choice short).
OUTPUT_TOKENS: dict[str, int] = {
    "mbpp": 256,
    "human_eval": 256,
    "gsm8k": 256,
    "math": 384,
    "agentverse-mgsm": 256,
    "agentverse-logicgrid": 256,
    "commongen": 64,
    "natural_qa": 32,
    "trivia_qa": 32,
}
DEFAULT_OUTPUT_TOKENS = 16  # multiple-choice answers (mmlu, gpqa, arc, openbook, commonsense)
VAL_FRACTION = 0.1


def import_llmrouter(
    path: str | Path, *, drop_invalid: bool = False, seed: int = 0, split: SplitSpec | None = None
) -> TraceSet:
    """Import the ``llmrouter-dcrouter-9model`` folder."""
    root = Path(path)
    if root.is_file():
        root = root.parent
    long_csv = root / "per_question_long.csv"
    prices_json = root / "llm_candidates" / "default_llm.json"
    for f in (long_csv, prices_json):
        if not f.exists():
            raise FileNotFoundError(f"{root}: expected {f.relative_to(root)} (dataset {DATASET})")
    df = pl.read_csv(long_csv, schema_overrides={"score": pl.Float64})
    src = str(long_csv)
    need = ("split", "question_idx", "task_name", "model", "score")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise TraceValidationError(f"missing column(s) {missing}", source=src, column=missing[0])
    questions = []
    for part in ("train", "test"):
        qf = root / "dcrouter_preprocessed" / f"{part}.json"
        if qf.exists():
            items = json.loads(qf.read_text())
            questions.append(pl.DataFrame({
                "split": [part] * len(items),
                "question_idx": list(range(len(items))),
                "prompt": [str(it.get("question", "")) for it in items],
            }))
    if questions:
        df = df.join(pl.concat(questions), on=["split", "question_idx"], how="left", maintain_order="left")
    else:
        df = df.with_columns(prompt=pl.lit(None, dtype=pl.Utf8))
    prices = json.loads(prices_json.read_text())
    unknown = sorted(set(df["model"].unique().to_list()) - set(prices))
    if unknown:
        raise TraceValidationError(f"models without a list price in {prices_json.name}: {unknown}",
                                   source=src, column="model")
    p_in = {m: float(v["input_price"]) for m, v in prices.items()}
    p_out = {m: float(v["output_price"]) for m, v in prices.items()}
    df = df.with_columns(
        task_id=pl.format("llmrouter:{}:{}", "split", "question_idx"),
        input_tokens=estimate_tokens(pl.col("prompt").fill_null("")),
        output_tokens=pl.col("task_name").replace_strict(OUTPUT_TOKENS, default=DEFAULT_OUTPUT_TOKENS,
                                                         return_dtype=pl.Int64),
    ).with_columns(
        cost_usd=(pl.col("input_tokens") * pl.col("model").replace_strict(p_in, return_dtype=pl.Float64)
                  + pl.col("output_tokens") * pl.col("model").replace_strict(p_out, return_dtype=pl.Float64)) / 1e6,
    )
    out = df.select(
        "task_id", "model", pl.col("score").alias("quality"), "cost_usd", "input_tokens", "output_tokens",
        "prompt", pl.col("task_name").alias("category"), pl.lit(DATASET).alias("source"), "split",
    )
    models = sorted(out["model"].unique().to_list())
    catalog = ModelCatalog([
        ModelSpec(m, infer_provider(m, infer_location(m)), infer_location(m), usd_per_m_input=p_in[m],
                  usd_per_m_output=p_out[m], open_weight=infer_location(m) == "local")
        for m in models
    ])
    ts = finish(out, catalog, source=str(root), drop_invalid=drop_invalid, seed=seed, split=split,
                meta={"importer": "llmrouter", "dataset": DATASET, "val_fraction_of_train": VAL_FRACTION},
                notes=["cost = list price x estimated tokens (input ceil(chars/4), output fixed per task kind)"])
    if split is None:  # the documented default; a SplitSpec carves val itself, only when missing
        ts.outcomes = carve_split(ts.outcomes, seed=seed, fraction=VAL_FRACTION)
    return ts

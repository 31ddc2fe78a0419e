"""RouterDC ``split2_model7``: 7 open 7-8B models on 16 task files (``routerdc-7model-oss``).

* Each ``*.json`` is a list of ``{"question", "scores": {model: float}}``. ``task_id`` =
  ``routerdc:<file stem>:<index>``; ``category`` = the file stem without ``_train``/``_test``/
  ``-train``/``-test``; ``split`` = train/test from the file name, files without one (MATH_prealgebra,
  ceval, javascript, mbpp) get a seeded 70/10/20 split, and 10% of train is carved into val.
* Scores are fractions (pass@1 over 10 samples for code/gsm8k; option probabilities for
  arc/mmlu/cmmlu/ceval; 0/1 for MATH) and used as graded quality in [0, 1].
* **No cost in the data.** All seven are local 7-8B models; cost = estimated GPU-seconds x
  :data:`~router_rl.traces.importers._common.DEFAULT_GPU_USD_PER_HOUR` with GPU-seconds from
  estimated tokens (input ``ceil(chars/4)``, output :data:`OUTPUT_TOKENS` per kind) at
  :data:`~router_rl.traces.importers._common.DEFAULT_TOKENS_PER_S` decode (prefill 10x faster).
  Identical for all seven models of a task, so cost does not separate them here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.importers._common import (
    DEFAULT_GPU_USD_PER_HOUR,
    DEFAULT_TOKENS_PER_S,
    estimate_tokens,
    finish,
)
from router_rl.traces.split import SplitSpec, carve_split
from router_rl.traces.traceset import TraceSet

DATASET = "routerdc-7model-oss"
OUTPUT_TOKENS: dict[str, int] = {"humaneval": 256, "mbpp": 256, "javascript": 256, "gsm8k": 256,
                                 "MATH_prealgebra": 256}
DEFAULT_OUTPUT_TOKENS = 16
VAL_FRACTION = 0.1
_SPLIT_RE = re.compile(r"^(?P<cat>.+?)[-_](?P<split>train|test)$")


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    for sub in (path, path / "split2_model7"):
        files = sorted(sub.glob("*.json"))
        if files:
            return files
    raise FileNotFoundError(f"{path}: no routerdc '*.json' files found")


def import_routerdc(
    path: str | Path, *, drop_invalid: bool = False, seed: int = 0, split: SplitSpec | None = None
) -> TraceSet:
    """Import the ``routerdc-7model-oss`` folder (or one of its JSON files)."""
    path = Path(path)
    frames = []
    models: list[str] | None = None
    for f in _files(path):
        items = json.loads(f.read_text())
        if not isinstance(items, list):
            raise TraceValidationError("expected a JSON list of {question, scores}", source=str(f))
        m = _SPLIT_RE.match(f.stem)
        cat, label = (m["cat"], m["split"]) if m else (f.stem, None)
        rows_q, rows_m, rows_s, rows_i = [], [], [], []
        for i, it in enumerate(items):
            if not isinstance(it, dict) or "question" not in it or not isinstance(it.get("scores"), dict):
                raise TraceValidationError("expected an object with 'question' and 'scores'", source=str(f),
                                           rows=[i], column="scores")
            if models is None:
                models = list(it["scores"])
            for mod, sc in it["scores"].items():
                rows_i.append(i)
                rows_q.append(it["question"])
                rows_m.append(mod)
                rows_s.append(sc)
        frames.append(pl.DataFrame({
            "task_id": [f"routerdc:{f.stem}:{i}" for i in rows_i],
            "model": rows_m,
            "quality": pl.Series(rows_s, dtype=pl.Float64, strict=False),
            "prompt": rows_q,
            "category": [cat] * len(rows_i),
            "source": [DATASET] * len(rows_i),
            "split": pl.Series([label] * len(rows_i), dtype=pl.Utf8),
        }))
    df = pl.concat(frames)
    catalog = ModelCatalog([
        ModelSpec(m, "vllm", "local", gpu_usd_per_hour=DEFAULT_GPU_USD_PER_HOUR, tokens_per_s=DEFAULT_TOKENS_PER_S,
                  open_weight=True)
        for m in (models or [])
    ])
    df = df.with_columns(
        input_tokens=estimate_tokens(pl.col("prompt")),
        output_tokens=pl.col("category").replace_strict(OUTPUT_TOKENS, default=DEFAULT_OUTPUT_TOKENS,
                                                        return_dtype=pl.Int64),
    ).with_columns(
        cost_usd=(pl.col("output_tokens") / DEFAULT_TOKENS_PER_S
                  + pl.col("input_tokens") / (DEFAULT_TOKENS_PER_S * 10.0)) * DEFAULT_GPU_USD_PER_HOUR / 3600.0
    )
    ts = finish(df, catalog, source=str(path), drop_invalid=drop_invalid, seed=seed, split=split,
                meta={"importer": "routerdc", "dataset": DATASET, "val_fraction_of_train": VAL_FRACTION},
                notes=[f"cost = estimated GPU-seconds x ${DEFAULT_GPU_USD_PER_HOUR}/h (no cost in the data)"])
    if split is None:  # the documented default; a SplitSpec carves val itself, only when missing
        ts.outcomes = carve_split(ts.outcomes, seed=seed, fraction=VAL_FRACTION)
    return ts

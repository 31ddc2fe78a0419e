"""A node's trajectory store: its opted-in decision log plus feedback, read as accepted SFT pairs.

A **trajectory store** is a folder on one node (one agent type's router) holding what the router
already writes:

* ``decisions/``: decision-log part files (:mod:`router_rl.traces.decision_log`) written with the
  prompt *and* response text opted in for the agent type (``logging.text_for_agent_types``);
* ``feedback/`` (optional): feedback part files (:mod:`router_rl.traces.feedback`); the label of a
  request is joined by :func:`router_rl.logs.join.join_logs`' rule. Without feedback the decision
  row's own ``quality`` is the label.

A trajectory is **accepted** when it has both texts, a label and ``quality >= threshold``. Every row
that is not accepted is counted by reason in :class:`TrajectoryReport`; nothing is dropped silently.
The texts never leave the node: :mod:`router_rl.federated.data` tokenises them on the client and
only LoRA tensors travel.

:func:`write_routerbench_store` fills a store from the RouterBench subset (real prompts and the 11
models' real responses with 0/1 correctness labels), one store per task category: the federated
clients of the docs' experiments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

DECISIONS = "decisions"
FEEDBACK = "feedback"
#: RouterBench files per task category (``<file>_train.csv`` / ``<file>_test.csv``).
ROUTERBENCH_CATEGORIES: dict[str, str] = {"arc": "arc_challenge", "mbpp": "mbpp", "winogrande": "winograde"}


class TrajectoryStoreError(ValueError):
    """A trajectory store is missing or unusable (the message names the folder and what is wrong)."""


@dataclass(frozen=True)
class Trajectory:
    """One accepted (prompt -> response) pair (kept on the node that logged it)."""

    request_id: str
    prompt: str
    response: str
    quality: float
    prompt_sha256: str


@dataclass
class TrajectoryReport:
    """What :meth:`TrajectoryStore.read` read and why rows were not accepted.

    Attributes:
        rows: Decision rows read (after the join's exclusions, which ``join`` counts).
        no_prompt_text: Rows without prompt text (not opted in, or flagged sensitive).
        no_response_text: Rows with a prompt but without response text.
        unlabeled: Rows with both texts but no label yet.
        below_threshold: Labeled rows with ``quality < threshold``.
        accepted: Trajectories accepted.
        threshold: The quality threshold applied.
        join: The :class:`router_rl.logs.join.JoinReport` counts (feedback present) or ``{}``.
    """

    rows: int = 0
    no_prompt_text: int = 0
    no_response_text: int = 0
    unlabeled: int = 0
    below_threshold: int = 0
    accepted: int = 0
    threshold: float = 1.0
    join: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


class TrajectoryStore:
    """One node's trajectory store (see the module docstring).

    Args:
        root: The store folder (``decisions/`` and optionally ``feedback/``).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def decisions_dir(self) -> Path:
        """Folder of the decision-log part files."""
        return self.root / DECISIONS

    @property
    def feedback_dir(self) -> Path:
        """Folder of the feedback part files (may be absent)."""
        return self.root / FEEDBACK

    def _labeled(self) -> tuple[pl.DataFrame, dict[str, Any]]:
        from router_rl.traces.decision_log import read_decision_log

        if not self.decisions_dir.is_dir():
            raise TrajectoryStoreError(
                f"trajectory store {self.root}: no {DECISIONS}/ folder of decision-log part files"
            )
        dec = read_decision_log(self.decisions_dir)
        cols = ["request_id", "ts", "agent_type", "prompt", "response", "prompt_sha256"]
        if not self.feedback_dir.is_dir():
            dedup = dec.sort("ts").unique(subset="request_id", keep="first", maintain_order=True)
            return dedup.select(*cols, "quality"), {"duplicate_decisions": dec.height - dedup.height}
        from router_rl.logs.join import join_logs

        joined, rep = join_logs(self.decisions_dir, self.feedback_dir)
        texts = dec.unique(subset="request_id", keep="first", maintain_order=True).select(cols)
        out = joined.select("request_id", "quality").join(texts, on="request_id", how="left")
        return out.select(*cols, "quality"), rep.to_dict()

    def read(self, threshold: float, *, agent_type: str | None = None) -> tuple[list[Trajectory], TrajectoryReport]:
        """The accepted trajectories, in the log's order, and the counts of what was not accepted.

        Args:
            threshold: Minimum quality of an accepted trajectory.
            agent_type: Keep only this agent type's rows (others are counted in ``join`` / ignored
                before counting); ``None`` keeps all.

        Raises:
            TrajectoryStoreError: the store has no ``decisions/`` folder.
            router_rl.traces.decision_log.DecisionLogError: a part file breaks the schema.
        """
        df, join = self._labeled()
        if agent_type is not None:
            df = df.filter(pl.col("agent_type") == agent_type)
        rep = TrajectoryReport(rows=df.height, threshold=threshold, join=join)
        has_p = pl.col("prompt").is_not_null() & (pl.col("prompt").str.len_chars() > 0)
        has_r = pl.col("response").is_not_null() & (pl.col("response").str.len_chars() > 0)
        rep.no_prompt_text = df.filter(~has_p).height
        rep.no_response_text = df.filter(has_p & ~has_r).height
        texts = df.filter(has_p & has_r)
        rep.unlabeled = texts.filter(pl.col("quality").is_null()).height
        labeled = texts.filter(pl.col("quality").is_not_null())
        rep.below_threshold = labeled.filter(pl.col("quality") < threshold).height
        ok = labeled.filter(pl.col("quality") >= threshold)
        rep.accepted = ok.height
        out = [
            Trajectory(str(r["request_id"]), str(r["prompt"]), str(r["response"]), float(r["quality"]),
                       str(r["prompt_sha256"] or _sha(str(r["prompt"]))))
            for r in ok.iter_rows(named=True)
        ]
        return out, rep

    def accepted_ids(self, threshold: float) -> list[str]:
        """Request ids of the accepted trajectories (what the round scheduler counts)."""
        return [t.request_id for t in self.read(threshold)[0]]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_heldout(prompt_sha256: str, fraction: float, seed: int) -> bool:
    """Whether a prompt is in the held-out split: a seeded hash of the prompt, stable as the store grows.

    All responses to one prompt fall on the same side, so held-out prompts are never trained on.
    """
    h = hashlib.sha256(f"{seed}:{prompt_sha256}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def split_heldout(
    trajectories: Sequence[Trajectory], fraction: float, seed: int
) -> tuple[list[Trajectory], list[Trajectory]]:
    """``(train, heldout)`` by :func:`is_heldout` of each trajectory's prompt."""
    train: list[Trajectory] = []
    held: list[Trajectory] = []
    for t in trajectories:
        (held if is_heldout(t.prompt_sha256, fraction, seed) else train).append(t)
    return train, held


# --- RouterBench -> trajectory stores ---------------------------------------------------------------
def routerbench_rows(
    category: str, *, max_prompts: int = 0, dataset_dir: str | Path | None = None, seed: int = 0,
) -> pl.DataFrame:
    """One row per (prompt, model) of a RouterBench category: prompt, response, 0/1 quality.

    Reads ``<file>_train.csv`` and ``<file>_test.csv`` of ``routerbench-subset-via-routerdc`` (the
    RouterBench importer's parsing of the prompt). Nothing is removed here: ``quality`` is null where
    the score cell is NaN/empty (:func:`write_routerbench_store` skips and counts those and empty
    responses).

    Args:
        category: A key of :data:`ROUTERBENCH_CATEGORIES` (``arc``, ``mbpp``, ``winogrande``).
        max_prompts: Keep a seeded sample of this many prompts (0: all).
        dataset_dir: The dataset folder (default: ``$ROUTER_RL_DATASETS``/routerbench-subset-via-routerdc).
        seed: Seed of the prompt sample.
    """
    import numpy as np

    from router_rl.core.paths import require_datasets_dir
    from router_rl.traces.importers.routerbench import DATASET, MODELS, _parse_prompt

    if category not in ROUTERBENCH_CATEGORIES:
        raise ValueError(f"category: expected one of {sorted(ROUTERBENCH_CATEGORIES)}, got {category!r}")
    root = Path(dataset_dir) if dataset_dir is not None else require_datasets_dir(DATASET)
    base = root / "routerbench_zs" if (root / "routerbench_zs").is_dir() else root
    frames = []
    for part in ("train", "test"):
        f = base / f"{ROUTERBENCH_CATEGORIES[category]}_{part}.csv"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing RouterBench file")
        df = pl.read_csv(f, infer_schema_length=0)
        missing = [c for m in MODELS for c in (m, f"{m}|model_response") if c not in df.columns]
        if missing:
            raise ValueError(f"{f}: missing column(s) {missing[:4]}")
        prompts = [_parse_prompt(t) for t in df["prompt"].to_list()]
        for m in MODELS:
            frames.append(pl.DataFrame({
                "sample_id": df["sample_id"], "prompt": prompts, "model": [m] * df.height,
                "response": [_parse_prompt(t) for t in df[f"{m}|model_response"].to_list()], "score": df[m],
            }, schema={"sample_id": pl.Utf8, "prompt": pl.Utf8, "model": pl.Utf8, "response": pl.Utf8,
                       "score": pl.Utf8}))
    rows = pl.concat(frames)
    if max_prompts:
        ids = sorted(set(rows["sample_id"].to_list()))
        rng = np.random.default_rng(seed)
        keep = set(rng.choice(ids, size=min(max_prompts, len(ids)), replace=False).tolist())
        rows = rows.filter(pl.col("sample_id").is_in(list(keep)))
    return rows.with_columns(quality=pl.col("score").cast(pl.Float64, strict=False))


@dataclass(frozen=True)
class StoreWriteReport:
    """What :func:`write_routerbench_store` wrote and skipped."""

    category: str
    prompts: int
    rows_written: int
    skipped_no_score: int
    skipped_empty_response: int
    correct: int


def write_routerbench_store(
    root: str | Path,
    category: str,
    *,
    agent_type: str | None = None,
    max_prompts: int = 0,
    seed: int = 0,
    dataset_dir: str | Path | None = None,
    start: datetime | None = None,
    with_feedback: bool = True,
) -> StoreWriteReport:
    """Write a RouterBench category as a node's trajectory store (decision log + feedback).

    Each (prompt, model response) is one routed request of ``agent_type`` (default: the category)
    that the router logged with the prompt and response text opted in; its RouterBench 0/1 score
    arrives as feedback (source ``routerbench``) when ``with_feedback``, else it is the decision
    row's own ``quality``. Cells without a score or with an empty response are skipped and counted.

    Args:
        root: The store folder (``decisions/``, ``feedback/`` are created).
        category: ``arc``, ``mbpp`` or ``winogrande``.
        agent_type: The node's agent type written in the rows.
        max_prompts: Seeded sample of prompts (0: all).
        seed: Seed of the sample and of the request ids.
        dataset_dir: RouterBench folder (default: from ``$ROUTER_RL_DATASETS``).
        start: Timestamp of the first row (default 2026-12-01T00:00Z); one second per row.
        with_feedback: Labels as feedback rows (the live router's path) or in the decision rows.
    """
    from router_rl.traces.decision_log import DecisionLogWriter
    from router_rl.traces.feedback import FeedbackWriter
    from router_rl.traces.importers.routerbench import MODELS

    rows = routerbench_rows(category, max_prompts=max_prompts, dataset_dir=dataset_dir, seed=seed)
    no_score = rows.filter(pl.col("quality").is_null()).height
    rows = rows.filter(pl.col("quality").is_not_null())
    empty = rows.filter(pl.col("response").is_null() | (pl.col("response").str.strip_chars() == "")).height
    rows = rows.filter(pl.col("response").is_not_null() & (pl.col("response").str.strip_chars() != ""))
    t0 = start or datetime(2026, 12, 1, tzinfo=UTC)
    at = agent_type or category
    store = TrajectoryStore(root)
    models = list(MODELS)
    probs = [1.0 / len(models)] * len(models)
    probs[-1] = 1.0 - sum(probs[:-1])
    dw = DecisionLogWriter(store.decisions_dir, batch_size=2048, flush_interval_s=None,
                           log_prompts=True, log_responses=True)
    fw = FeedbackWriter(store.feedback_dir, batch_size=2048, flush_interval_s=None) if with_feedback else None
    try:
        for i, r in enumerate(rows.iter_rows(named=True)):
            # the prompt is part of the id: RouterBench repeats a few sample_ids with different prompts
            key = f"{seed}:{category}:{r['sample_id']}:{_sha(r['prompt'])}:{r['model']}"
            rid = hashlib.sha256(key.encode()).hexdigest()[:24]
            ts = t0 + timedelta(seconds=i)
            dw.append({
                "request_id": rid, "ts": ts, "agent_type": at, "category": category,
                "prompt": r["prompt"], "prompt_chars": len(r["prompt"]), "prompt_sha256": _sha(r["prompt"]),
                "strategy": "routerbench", "decided_by": "explicit", "policy_version": "routerbench",
                "action_models": models, "action_probs": probs, "chosen_model": r["model"],
                "propensity": probs[models.index(r["model"])], "served_model": r["model"],
                "outcome_model": r["model"], "response": r["response"],
                "quality": None if with_feedback else float(r["quality"]),
            })
            if fw is not None:
                fts = ts + timedelta(milliseconds=500)
                fw.append({"feedback_id": f"rb-{rid}", "request_id": rid, "quality": float(r["quality"]),
                           "source": "routerbench", "ts": fts, "received_ts": fts})
    finally:
        dw.close()
        if fw is not None:
            fw.close()
    return StoreWriteReport(
        category=category, prompts=rows.select("sample_id", "prompt").n_unique(), rows_written=rows.height,
        skipped_no_score=no_score, skipped_empty_response=empty,
        correct=rows.filter(pl.col("quality") >= 1.0).height,
    )

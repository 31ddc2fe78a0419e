"""Simulated router traffic: a decision log + feedback sampled from an outcome matrix, with its truth.

:func:`simulate_log` plays the live router on a full-information outcome matrix (the simulated
fleet, or any imported matrix): ``n`` requests are tasks drawn with replacement from a split, the
logging policy's distribution is computed once on the batch (``policy.action_distribution``),
exploration applied with the router's own :func:`router_rl.policies.exploration.explore`, one model
sampled per request, and the outcome of the served model read from the matrix. The rows are in
:data:`DECISION_LOG_SCHEMA` exactly as the router writes them (``quality`` null: labels arrive as
feedback rows in :data:`FEEDBACK_SCHEMA`, source ``"simulated"``), and :meth:`SimulatedLog.write`
writes them through :class:`~router_rl.traces.decision_log.DecisionLogWriter`.

Fallbacks (``fallback_rate``): each (request, model) pair fails with that probability, drawn for
every model up front so the truth of every action is defined; a failed chosen model is answered by
the ``fallback_model`` (default: the first local model of the catalog, else the first model),
which itself never fails as the chosen model. With ``no_answer_rate`` the fallback fails too: no
model answers (``outcome_model`` null, ``error`` set, quality 0 in the truth, no feedback).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from pydantic import Field

from router_rl.core.config import NonNegativeFloat, PositiveFloat, StrictConfig, UnitFloat
from router_rl.policies.exploration import ExplorationConfig, explore, explored
from router_rl.traces.schema import DECISION_LOG_SCHEMA, FEEDBACK_SCHEMA, LOCAL

if TYPE_CHECKING:
    from router_rl.logs.data import LoggedData
    from router_rl.logs.truth import LogTruth
    from router_rl.policies.base import RoutingPolicy
    from router_rl.traces.catalog import ModelCatalog
    from router_rl.traces.matrix import OutcomeMatrix
    from router_rl.traces.traceset import TraceSet

#: ``source`` of the simulated feedback rows.
SIMULATED_SOURCE = "simulated"
#: ``fallback_reason`` / attempt reason of a simulated failure.
SIMULATED_FAILURE = "simulated_failure"
#: ``error`` of a request no model answered.
NO_ANSWER_ERROR = "all_attempts_failed"


class LogSimulationConfig(StrictConfig):
    """How the simulated router behaves around the logging policy.

    Attributes:
        feedback_rate: Share of answered requests that receive a feedback row (the rest stay
            unlabeled: "label not arrived yet").
        label_delay_s: Mean (exponential) delay between a decision and its feedback's ``ts``.
        fallback_rate: Probability that a (request, model) call fails and the fallback model serves.
        fallback_model: Model serving failed calls (default: first local model of the catalog,
            else the first model).
        no_answer_rate: Probability that the fallback fails too (no model answers).
        failure_latency_s: Seconds a failed attempt adds to the request's latency.
        requests_per_s: Mean arrival rate (exponential gaps) of the decision timestamps.
        start: ISO-8601 UTC time of the first decision.
        privacy_local: Tasks with ``privacy`` true may only go to local models (the router's
            promise); off by default so every model keeps support in the log.
        request_prefix: Request ids are ``{prefix}-{seed}-{i:07d}``.
    """

    feedback_rate: UnitFloat = 1.0
    label_delay_s: NonNegativeFloat = 60.0
    fallback_rate: UnitFloat = 0.0
    fallback_model: str | None = None
    no_answer_rate: UnitFloat = 0.0
    failure_latency_s: NonNegativeFloat = 1.0
    requests_per_s: PositiveFloat = 1.0
    start: str = "2026-12-01T00:00:00Z"
    privacy_local: bool = False
    request_prefix: str = Field(default="sim", min_length=1)


@dataclass(eq=False)
class SimulatedLog:
    """A simulated decision log, its feedback and the full truth.

    Attributes:
        decisions: ``n`` rows in :data:`DECISION_LOG_SCHEMA` (``quality`` null, as the router logs).
        feedback: Rows in :data:`FEEDBACK_SCHEMA` (one per labeled request, source ``"simulated"``).
        truth: :class:`~router_rl.logs.truth.LogTruth`, row ``i`` = ``decisions`` row ``i``.
        catalog: Catalog of the action set (locations, prices), when the matrix had one.
        meta: The simulation's settings (JSON-able).
    """

    decisions: pl.DataFrame
    feedback: pl.DataFrame
    truth: LogTruth
    catalog: ModelCatalog | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Decisions."""
        return self.decisions.height

    def write(self, directory: str | Path, *, batch_size: int = 5000) -> Path:
        """Write ``decisions/`` and ``feedback/`` (part files), ``truth.parquet``, ``catalog.json``, ``meta.json``.

        Decision rows go through :class:`~router_rl.traces.decision_log.DecisionLogWriter` (every
        row validated by ``validate_row``), feedback rows through
        :class:`~router_rl.traces.feedback.FeedbackWriter`.
        """
        from router_rl.traces.decision_log import DecisionLogWriter
        from router_rl.traces.feedback import FeedbackWriter

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with DecisionLogWriter(d / "decisions", batch_size=batch_size, flush_interval_s=None) as w:
            for chunk in self.decisions.iter_slices(batch_size):
                w.extend(_rows_of(chunk))
        with FeedbackWriter(d / "feedback", batch_size=batch_size, flush_interval_s=None) as fw:
            for chunk in self.feedback.iter_slices(batch_size):
                fw.extend(chunk.to_dicts())
        self.truth.write(d / "truth.parquet")
        if self.catalog is not None:
            self.catalog.save(d / "catalog.json")
        (d / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True))
        return d

    def logged(self) -> LoggedData:
        """The :class:`~router_rl.logs.data.LoggedData` a join of this log gives (same rows, same order).

        Labels are the feedback qualities (NaN where no feedback was sent; 0 where no model answered).
        """
        from router_rl.logs.data import LoggedData

        fb = self.feedback.select("request_id", pl.col("quality").alias("__label"))
        df = self.decisions.join(fb, on="request_id", how="left", maintain_order="left")
        df = df.with_columns(pl.col("__label").alias("quality")).drop("__label")
        return LoggedData.from_table(df, locations=self.truth.locations, models=self.truth.models)


def _rows_of(chunk: pl.DataFrame) -> list[dict[str, Any]]:
    """Row dicts of a decision frame; feature vectors as float32 numpy rows (exact, and fast to rebuild)."""
    rows = chunk.drop("features").to_dicts()
    feats = chunk["features"]
    if chunk.height and not feats.is_null().any() and feats.list.len().n_unique() == 1:
        X = feats.list.to_array(int(feats.list.len()[0])).to_numpy()
        for r, x in zip(rows, X, strict=True):
            r["features"] = x
    else:
        for r, x in zip(rows, feats.to_list(), strict=True):
            r["features"] = x
    return rows


def _fallback_index(models: tuple[str, ...], locations: tuple[str, ...], name: str | None) -> int:
    if name is not None:
        if name not in models:
            raise ValueError(f"LogSimulationConfig.fallback_model: {name!r} is not one of {list(models)}")
        return models.index(name)
    return locations.index(LOCAL) if LOCAL in locations else 0


def _parse_start(start: str) -> np.datetime64:
    s = start[:-1] if start.endswith("Z") else start.replace("+00:00", "")
    try:
        return np.datetime64(s, "us")
    except ValueError as e:
        raise ValueError(f"LogSimulationConfig.start: expected an ISO-8601 UTC time, got {start!r}") from e


def _task_columns(tasks: pl.DataFrame) -> dict[str, Any]:
    """Per-task decision-log columns (agent, category, complexity, prompt size / hash)."""
    n = tasks.height

    def col(name: str) -> list[Any]:
        return tasks[name].cast(pl.Utf8).to_list() if name in tasks.columns else [None] * n

    prompts = tasks["prompt"].to_list() if "prompt" in tasks.columns else [None] * n
    if "complexity" in tasks.columns and tasks["complexity"].dtype == pl.Utf8:
        complexity = tasks["complexity"].to_list()
    elif "prompt" in tasks.columns:
        from router_rl.features.complexity import complexity_scores

        _, levels = complexity_scores(prompts)
        complexity = [lv.value for lv in levels]
    else:
        complexity = [None] * n
    return {
        "agent_id": col("agent_id"),
        "agent_type": col("agent_type"),
        "category": col("category"),
        "complexity": complexity,
        "prompt_chars": [len(p) if p is not None else None for p in prompts],
        "prompt_sha256": [hashlib.sha256(p.encode()).hexdigest() if p is not None else None for p in prompts],
    }


def simulate_log(
    source: TraceSet | OutcomeMatrix,
    policy: RoutingPolicy,
    *,
    n: int,
    exploration: ExplorationConfig | None = None,
    split: str | None = None,
    encoder: Any | None = None,
    seed: int = 0,
    config: LogSimulationConfig | None = None,
) -> SimulatedLog:
    """Simulate ``n`` routed requests of a logging policy on a full-information outcome matrix.

    Args:
        source: A :class:`~router_rl.traces.traceset.TraceSet` (its ground truth, when simulated,
            fills :attr:`LogTruth.expected_quality`) or an :class:`OutcomeMatrix`; it needs a
            model catalog (locations).
        policy: The fitted logging policy (any :class:`RoutingPolicy` with an
            ``action_distribution``: LightGBM, rules, single, random, ...); its models must be the
            matrix's (any order; the policy's order is the logged one).
        n: Number of requests (tasks drawn with replacement).
        exploration: Exploration on top of the policy (default none).
        split: Draw tasks from this split only (``None``: every task).
        encoder: The fitted :class:`~router_rl.features.FeatureEncoder` (default: the policy's);
            must match the encoder the policy was trained with.
        seed: Seed of every draw (tasks, actions, failures, arrival times, feedback).
        config: Feedback / fallback / timing settings.

    Returns:
        The :class:`SimulatedLog`.

    Raises:
        ValueError: ``n < 1``, no catalog, no encoder, other models, unknown split or fallback model.
    """
    from router_rl.logs.truth import LogTruth
    from router_rl.traces.matrix import OutcomeMatrix

    if n < 1:
        raise ValueError(f"simulate_log: n must be >= 1, got {n}")
    cfg = config or LogSimulationConfig()
    expl = exploration or ExplorationConfig()
    matrix = source if isinstance(source, OutcomeMatrix) else source.matrix()
    if matrix.catalog is None:
        raise ValueError("simulate_log: the outcome matrix has no model catalog (locations are needed)")
    if set(policy.models) != set(matrix.models):
        raise ValueError(
            f"simulate_log: policy {policy.version} routes between {list(policy.models)}, "
            f"the matrix has {list(matrix.models)}"
        )
    expected = None
    if not isinstance(source, OutcomeMatrix) and source.ground_truth is not None:
        expected = source.ground_truth_matrix()
    if policy.models != matrix.models:
        cols = [matrix.model_index(m) for m in policy.models]
        matrix = matrix.select_models(policy.models)
        expected = expected[:, cols] if expected is not None else None
    task_rows = np.arange(matrix.n_tasks)
    if split is not None:
        if "split" not in matrix.tasks.columns:
            raise ValueError(f"simulate_log: split={split!r} but the matrix has no 'split' column")
        task_rows = np.flatnonzero((matrix.tasks["split"] == split).to_numpy())
        if task_rows.size == 0:
            raise ValueError(f"simulate_log: no task in split {split!r}")
    enc = encoder if encoder is not None else policy.encoder
    if enc is None:
        raise ValueError(
            f"simulate_log: policy {policy.version} carries no feature encoder; "
            "pass encoder= (the router logs features)"
        )
    fingerprint = str(enc.fingerprint)
    policy.check_encoder(fingerprint)

    models = policy.models
    k = len(models)
    assert matrix.catalog is not None
    locations = tuple(matrix.catalog[m].location for m in models)
    is_local = np.array([loc == LOCAL for loc in locations], dtype=bool)
    fb = _fallback_index(models, locations, cfg.fallback_model)

    # --- per task (the split), computed once
    tasks = matrix.tasks[task_rows.tolist()]
    X_tasks = np.asarray(enc.transform(tasks), dtype=np.float32)
    base_tasks = np.asarray(policy.action_distribution(X_tasks), dtype=np.float64)
    if base_tasks.shape != (task_rows.size, k):
        raise ValueError(f"simulate_log: policy returned shape {base_tasks.shape}, expected {(task_rows.size, k)}")
    allowed_tasks = np.ones((task_rows.size, k), dtype=bool)
    if cfg.privacy_local and "privacy" in tasks.columns:
        if not is_local.any():
            raise ValueError("simulate_log: privacy_local needs a local model in the action set")
        priv = tasks["privacy"].fill_null(False).to_numpy().astype(bool)
        allowed_tasks[priv] = is_local
    probs_tasks = explore(base_tasks, expl, allowed_tasks)
    masked_base = explore(base_tasks, ExplorationConfig(), allowed_tasks)  # the top choice before exploration
    per_task = _task_columns(tasks)

    # --- per request (vectorised)
    rng = np.random.default_rng(seed)
    t = rng.integers(0, task_rows.size, size=n)  # index into the split's tasks
    rows = task_rows[t]  # index into the matrix
    probs = probs_tasks[t]
    u = rng.random(n)
    cum = np.cumsum(probs, axis=1)
    a = np.minimum((cum <= u[:, None]).sum(axis=1), k - 1)
    zero = probs[np.arange(n), a] <= 0  # u at the very top of a cumsum that rounds below 1
    if zero.any():
        last_pos = k - 1 - np.argmax((probs[zero] > 0)[:, ::-1], axis=1)
        a[zero] = last_pos
    a = a.astype(np.int64)
    failed = rng.random((n, k)) < cfg.fallback_rate
    failed[:, fb] = False
    no_answer = failed & (rng.random((n, k)) < cfg.no_answer_rate)
    gaps = rng.exponential(1.0 / cfg.requests_per_s, size=n)
    got_feedback = rng.random(n) < cfg.feedback_rate
    delays = rng.exponential(cfg.label_delay_s, size=n) if cfg.label_delay_s > 0 else np.zeros(n)

    # --- truth of every action: choosing a = its own answer, the fallback's, or none
    q0, c0, l0 = matrix.quality[rows], matrix.cost[rows], matrix.latency[rows]
    served_idx = np.where(failed, fb, np.arange(k)[None, :])  # (n, k) model serving when a is chosen
    r2 = np.arange(n)[:, None]
    tq = np.where(no_answer, 0.0, q0[r2, served_idx])
    tc = np.where(no_answer, 0.0, c0[r2, served_idx])
    tl = l0[r2, served_idx] + failed * cfg.failure_latency_s
    tl = np.where(no_answer, 2 * cfg.failure_latency_s, tl)
    tloc = np.where(no_answer, 0.0, is_local[served_idx].astype(np.float64))
    teq = None
    if expected is not None:
        teq = np.where(no_answer, 0.0, expected[rows][r2, served_idx])

    ids = np.array([f"{cfg.request_prefix}-{seed}-{i:07d}" for i in range(n)], dtype=object)
    task_ids = np.asarray(tasks["task_id"].cast(pl.Utf8).to_list(), dtype=object)[t]
    truth = LogTruth(
        request_ids=ids, task_ids=task_ids, models=models, locations=locations, quality=tq, cost_usd=tc,
        latency_s=tl, local=tloc, model_quality=q0, failed=failed, no_answer=no_answer, expected_quality=teq,
    )

    # --- the decision rows, as the router writes them
    ar = np.arange(n)
    chosen_failed = failed[ar, a]
    chosen_none = no_answer[ar, a]
    served = np.where(chosen_failed, fb, a)
    answered = ~chosen_none
    start = _parse_start(cfg.start)
    ts = start + np.round(np.cumsum(gaps) * 1e6).astype("timedelta64[us]")
    model_arr = np.asarray(models, dtype=object)
    served_model: list[str | None] = [m if ok else None for m, ok in
                                      zip(model_arr[served].tolist(), answered.tolist(), strict=True)]
    fb_reason = [SIMULATED_FAILURE if f else None for f in chosen_failed.tolist()]
    first_try = pl.Series(model_arr[a].tolist(), dtype=pl.Utf8) + f":{SIMULATED_FAILURE}"
    attempts = pl.select(
        pl.when(pl.Series(chosen_none))
        .then(pl.concat_list(first_try, pl.lit(f"{models[fb]}:{SIMULATED_FAILURE}")))
        .when(pl.Series(chosen_failed))
        .then(pl.concat_list(first_try))
        .otherwise(pl.lit([], dtype=pl.List(pl.Utf8)))
        .alias("attempts")
    ).to_series()
    in_tok = matrix.input_tokens[rows][ar, served]
    out_tok = matrix.output_tokens[rows][ar, served]
    tok_ok = answered & np.isfinite(in_tok) & np.isfinite(out_tok)
    expl_json = json.dumps(expl.to_log(), sort_keys=True) if expl.active else None
    served_prop = probs[ar, served]

    def by_task(name: str) -> list[Any]:
        vals = per_task[name]
        return [vals[i] for i in t.tolist()]

    def nullable(x: np.ndarray, ok: np.ndarray) -> pl.Series:
        return pl.Series(np.where(ok, x, np.nan)).fill_nan(None)

    columns: dict[str, Any] = {
        "request_id": ids.tolist(),
        "ts": pl.Series(ts).dt.replace_time_zone("UTC"),
        "agent_id": by_task("agent_id"),
        "agent_type": by_task("agent_type"),
        "category": by_task("category"),
        "complexity": by_task("complexity"),
        "prompt_chars": by_task("prompt_chars"),
        "prompt_sha256": by_task("prompt_sha256"),
        "prompt": None,
        "features": pl.Series(X_tasks[t]).cast(pl.List(pl.Float32)),
        "encoder_fingerprint": fingerprint,
        "strategy": "simulated",
        "decided_by": policy.kind,
        "policy_version": policy.version,
        "action_models": pl.Series([list(models)]).new_from_index(0, n) if n else [],
        "action_probs": pl.Series(probs).cast(pl.List(pl.Float64)),
        "chosen_model": model_arr[a].tolist(),
        "propensity": probs[ar, a],
        "explored": np.asarray(explored(masked_base[t], a), dtype=bool),
        "exploration": expl_json,
        "shadow_model": None,
        "breaker_states": None,
        "policy_state": None,
        "served_model": served_model,
        "served_propensity": nullable(served_prop, answered),
        "outcome_model": served_model,
        "attempts": attempts,
        "fallback_used": answered & (served != a),
        "fallback_reason": fb_reason,
        "quality": None,
        "cost_usd": nullable(tc[ar, a], answered),
        "latency_s": tl[ar, a],
        "input_tokens": nullable(in_tok, tok_ok).cast(pl.Int64),
        "output_tokens": nullable(out_tok, tok_ok).cast(pl.Int64),
        "usage_estimated": [False if ok else None for ok in answered.tolist()],
        "error": [None if ok else NO_ANSWER_ERROR for ok in answered.tolist()],
        "response": None,
    }
    for c in DECISION_LOG_SCHEMA:  # columns the simulation has nothing for (refinement, ...) are null
        columns.setdefault(c, None)
    decisions = pl.DataFrame(
        {c: (pl.Series(c, v) if not (v is None or isinstance(v, str)) else pl.repeat(v, n, eager=True).alias(c))
         for c, v in columns.items()}
    ).cast(DECISION_LOG_SCHEMA)  # type: ignore[arg-type]
    decisions = decisions.select(list(DECISION_LOG_SCHEMA))

    # --- feedback: answered requests, a share of them, after a delay
    lab = got_feedback & answered
    fts = ts[lab] + np.round(delays[lab] * 1e6).astype("timedelta64[us]")
    fids = [f"{r}:{SIMULATED_SOURCE}" for r in ids[lab].tolist()]
    feedback = pl.DataFrame(
        {
            "feedback_id": pl.Series(fids, dtype=pl.Utf8),
            "request_id": pl.Series(ids[lab].tolist(), dtype=pl.Utf8),
            "quality": pl.Series(tq[ar, a][lab], dtype=pl.Float64),
            "source": pl.repeat(SIMULATED_SOURCE, int(lab.sum()), eager=True),
            "details": pl.repeat(None, int(lab.sum()), dtype=pl.Utf8, eager=True),
            "ts": pl.Series(fts).dt.replace_time_zone("UTC"),
            "received_ts": pl.Series(fts).dt.replace_time_zone("UTC"),
        }
    ).cast(FEEDBACK_SCHEMA)  # type: ignore[arg-type]

    meta = {
        "seed": seed,
        "n": n,
        "split": split,
        "policy_version": policy.version,
        "policy_kind": policy.kind,
        "encoder_fingerprint": fingerprint,
        "exploration": expl.to_log(),
        "config": cfg.to_dict(),
        "fallback_model": models[fb],
        "models": list(models),
        "locations": list(locations),
        "counts": {
            "decisions": n,
            "feedback": int(lab.sum()),
            "unlabeled": int((~lab).sum()),
            "fallbacks": int((answered & chosen_failed).sum()),
            "no_answer": int(chosen_none.sum()),
            "explored": int(np.asarray(explored(masked_base[t], a)).sum()),
        },
        "local_share": float(is_local[a].mean()),
    }
    return SimulatedLog(decisions=decisions, feedback=feedback, truth=truth, catalog=matrix.catalog, meta=meta)

"""``ReplayBackend``: the state and behaviour of a replay server, independent of HTTP.

It maps a request to a task (header ``x-router-rl-task-id``, else the prompt text matched against
the tasks' ``prompt`` column, else a SHA-256 hash of the prompt modulo the number of tasks),
returns the recorded outcome of that (task, model) cell, holds the fault set and the request log.
The HTTP side is :mod:`router_rl.replay.app` (routes) and :mod:`router_rl.replay.wire` (bodies and
streams); hosting is :mod:`router_rl.replay.server`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from router_rl.core.errors import ConfigError
from router_rl.replay.faults import FaultRule, FaultSet
from router_rl.traces.catalog import ModelCatalog
from router_rl.traces.matrix import OutcomeMatrix

if TYPE_CHECKING:
    from router_rl.traces.traceset import TraceSet

TASK_HEADER = "x-router-rl-task-id"
QUALITY_HEADER = "x-router-rl-quality"
#: Refinement iteration of a call (sent by the router's refinement loop); with it, the record
#: ``<task>#r<k>`` answers iteration ``k`` of ``<task>`` when the trace has one.
ITERATION_HEADER = "x-router-refine-iteration"
_MAX_LOG = 100_000


class ReplayBackend:
    """The state and behaviour of a replay server (independent of how it is hosted).

    Args:
        matrix: Outcomes to replay (its catalog, when present, gives each model's provider).
        error_kinds: Optional ``(n_tasks, n_models)`` array of recorded error strings (None = ok);
            defaults to ``"error"`` where ``matrix.error`` is True.
        time_scale: Multiplier of recorded latencies (0 = answer immediately).
        faults: Initial fault rules.
        seed: Seed of the fault probability draws.
        quality_threshold: Content says ``ok`` when quality >= this, else ``fail``.
        default_latency_s: Latency used where the matrix has none (before scaling).
        api_key: When set, requests must carry it (``Authorization: Bearer`` or ``x-api-key``).
        replay_errors: Answer recorded errors with HTTP errors (else serve the outcome anyway).
    """

    def __init__(
        self,
        matrix: OutcomeMatrix,
        *,
        error_kinds: np.ndarray | None = None,
        time_scale: float = 1.0,
        faults: list[FaultRule | dict[str, Any]] | None = None,
        seed: int = 0,
        quality_threshold: float = 0.5,
        default_latency_s: float = 0.5,
        api_key: str | None = None,
        replay_errors: bool = True,
    ) -> None:
        if not (math.isfinite(time_scale) and time_scale >= 0):
            raise ConfigError("replay.time_scale", f"expected a finite number >= 0, got {time_scale!r}")
        if matrix.n_tasks == 0:
            raise ConfigError("replay.matrix", "the outcome matrix has no task")
        self.matrix = matrix
        if error_kinds is None:
            error_kinds = np.full(matrix.quality.shape, None, dtype=object)
            error_kinds[matrix.error] = "error"
        if error_kinds.shape != matrix.quality.shape:
            raise ConfigError("replay.error_kinds", f"expected shape {matrix.quality.shape}, got {error_kinds.shape}")
        self.error_kinds = error_kinds
        self.time_scale = float(time_scale)
        self.faults = FaultSet(faults, seed=seed)
        self.quality_threshold = quality_threshold
        self.default_latency_s = default_latency_s
        self._api_key = api_key
        self.replay_errors = replay_errors
        self.log: list[dict[str, Any]] = []
        #: model -> factor multiplying its recorded quality (a regression injected at runtime)
        self.quality_factors: dict[str, float] = {}
        self.on_kill: Callable[[], None] | None = None
        ids = [str(t) for t in matrix.tasks["task_id"].to_list()]
        self._task_index = {t: i for i, t in enumerate(ids)}
        self._task_ids = ids
        self._prompt_index: dict[str, int] = {}
        if "prompt" in matrix.tasks.columns:
            for i, p in enumerate(matrix.tasks["prompt"].to_list()):
                if p:
                    self._prompt_index.setdefault(sha(str(p)), i)
        self._providers: dict[str, str | None] = {
            m: (matrix.catalog[m].provider if matrix.catalog is not None else None) for m in matrix.models
        }

    def __repr__(self) -> str:
        return (
            f"ReplayBackend(n_tasks={self.matrix.n_tasks}, models={list(self.matrix.models)}, "
            f"time_scale={self.time_scale}, faults={len(self.faults.rules)})"
        )

    # --- construction helpers ------------------------------------------------------------------
    @classmethod
    def from_frame(cls, outcomes: pl.DataFrame, *, catalog: ModelCatalog | None = None, **kw: Any) -> ReplayBackend:
        """Backend over a long outcome table (keeps the recorded error kinds of its ``error`` column)."""
        m = OutcomeMatrix.from_frame(outcomes, catalog=catalog)
        kw.setdefault("error_kinds", _error_kinds(outcomes, m))
        return cls(m, **kw)

    @classmethod
    def from_trace_set(cls, ts: TraceSet, **kw: Any) -> ReplayBackend:
        """Backend over a :class:`~router_rl.traces.TraceSet` (keeps the recorded error kinds)."""
        m = ts.matrix()
        kw.setdefault("error_kinds", _error_kinds(ts.outcomes, m))
        return cls(m, **kw)

    @classmethod
    def from_path(cls, path: str | Path, **kw: Any) -> ReplayBackend:
        """Backend over a trace file readable by :func:`router_rl.traces.load_traces`."""
        from router_rl.traces.load import load_traces

        return cls.from_trace_set(load_traces(path), **kw)

    @classmethod
    def simulated(cls, n_tasks: int = 200, *, seed: int = 0, **kw: Any) -> ReplayBackend:
        """Backend over a simulated fleet (:func:`router_rl.traces.simulate.simulate_fleet`)."""
        from router_rl.traces.simulate import simulate_fleet

        kw.setdefault("seed", seed)
        return cls.from_trace_set(simulate_fleet(n_tasks, seed=seed), **kw)

    # --- runtime quality regressions ---------------------------------------------------------------
    def set_quality_factor(self, model: str, factor: float) -> None:
        """Serve ``model``'s recorded quality multiplied by ``factor`` from now on (1 = as recorded).

        Raises:
            ConfigError: ``model`` is not served here, or ``factor`` is not in [0, 1].
        """
        if model not in self.matrix.models:
            raise ConfigError("replay.quality.model", f"{model!r} is not served here ({list(self.matrix.models)})")
        if not (isinstance(factor, int | float) and not isinstance(factor, bool) and 0.0 <= factor <= 1.0):
            raise ConfigError("replay.quality.factor", f"expected a number in [0, 1], got {factor!r}")
        if factor == 1.0:
            self.quality_factors.pop(model, None)
        else:
            self.quality_factors[model] = float(factor)

    # --- lookups ---------------------------------------------------------------------------------
    @property
    def models(self) -> tuple[str, ...]:
        """Served model ids."""
        return self.matrix.models

    def provider_of(self, model: str) -> str | None:
        """Catalog provider of ``model`` (None without a catalog)."""
        return self._providers.get(model)

    def resolve_task(self, task_id: str | None, prompts: list[str]) -> tuple[int, str]:
        """Row of the task a request is about, and how it was found (``header``/``prompt``/``hash``).

        Raises:
            KeyError: when ``task_id`` is given but unknown.
        """
        if task_id:
            if task_id not in self._task_index:
                raise KeyError(task_id)
            return self._task_index[task_id], "header"
        for p in prompts:
            i = self._prompt_index.get(sha(p))
            if i is not None:
                return i, "prompt"
        h = int(sha("\n".join(prompts))[:16], 16)
        return h % self.matrix.n_tasks, "hash"

    def iteration_row(self, row: int, iteration: str | None) -> int:
        """The row answering refinement ``iteration`` ``k`` of task ``row``.

        The record ``<task>#r<j>`` of the highest recorded ``j <= k`` (an answer stays as good as
        its last recorded refinement), else the task's own row.
        """
        if not iteration or not iteration.isdigit():
            return row
        task = self._task_ids[row]
        for j in range(min(int(iteration), 64), 0, -1):
            hit = self._task_index.get(f"{task}#r{j}")
            if hit is not None:
                return hit
        return row

    def check_key(self, headers: Any) -> bool:
        """Whether the request carries the configured API key (always True without one)."""
        if not self._api_key:
            return True
        auth = headers.get("authorization", "")
        return auth == f"Bearer {self._api_key}" or headers.get("x-api-key", "") == self._api_key

    def outcome(self, row: int, model: str, prompt_chars: int) -> dict[str, Any]:
        """The recorded outcome of (task ``row``, ``model``) as a JSON-ready dict."""
        j = self.matrix.model_index(model)
        q = float(self.matrix.quality[row, j]) * self.quality_factors.get(model, 1.0)
        lat = float(self.matrix.latency[row, j])
        lat = self.default_latency_s if not math.isfinite(lat) else lat
        it = float(self.matrix.input_tokens[row, j])
        ot = float(self.matrix.output_tokens[row, j])
        verdict = "ok" if q >= self.quality_threshold else "fail"
        content = f"{verdict} quality={q:.4f} task={self._task_ids[row]}"
        return {
            "task_id": self._task_ids[row],
            "task_index": row,
            "quality": q,
            "verdict": verdict,
            "content": content,
            "recorded_latency_s": lat,
            "cost_usd": float(self.matrix.cost[row, j]),
            "input_tokens": int(it) if math.isfinite(it) else max(1, math.ceil(prompt_chars / 4)),
            "output_tokens": int(ot) if math.isfinite(ot) else max(1, math.ceil(len(content) / 4)),
            "error": self.error_kinds[row, j] if self.replay_errors else None,
        }

    def record(self, entry: dict[str, Any]) -> None:
        """Append one request to the server-side log (bounded)."""
        entry["n"] = len(self.log)
        entry["ts"] = time.time()
        if len(self.log) >= _MAX_LOG:
            del self.log[: _MAX_LOG // 10]
        self.log.append(entry)

    def stats(self) -> dict[str, Any]:
        """Request counts by model, API, fault and task, plus the raw log."""
        return {
            "total": len(self.log),
            "by_model": dict(Counter(e["model"] for e in self.log)),
            "by_api": dict(Counter(e["api"] for e in self.log)),
            "by_fault": dict(Counter(e["fault"] or "none" for e in self.log)),
            "by_task": dict(Counter(e["task_id"] for e in self.log if e.get("task_id"))),
            "requests": self.log,
        }


def _error_kinds(outcomes: pl.DataFrame, m: OutcomeMatrix) -> np.ndarray:
    """``(n_tasks, n_models)`` object array of the recorded error strings (None = no error)."""
    kinds = np.full(m.quality.shape, None, dtype=object)
    if "error" in outcomes.columns:
        t_idx = {t: i for i, t in enumerate(m.tasks["task_id"].to_list())}
        m_idx = {x: j for j, x in enumerate(m.models)}
        sub = outcomes.select("task_id", "model", "error").filter(pl.col("error").is_not_null())
        for t, mod, err in sub.iter_rows():
            kinds[t_idx[t], m_idx[mod]] = str(err)
    return kinds


def sha(text: str) -> str:
    """Hex SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def error_status(kind: str) -> tuple[int, str]:
    """HTTP status and error code answering a recorded error ``kind``."""
    k = kind.lower()
    if "429" in k or "rate" in k:
        return 429, "rate_limit_exceeded"
    if "timeout" in k:
        return 504, "timeout"
    if "context" in k:
        return 400, "context_length_exceeded"
    if "auth" in k:
        return 401, "invalid_api_key"
    return 500, "recorded_error"

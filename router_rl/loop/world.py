"""The world of a closed loop: an outcome matrix, its traffic tasks and held-out tasks, the encoder.

The loop serves a full-information outcome matrix (the built-in simulated fleet, or a trace file
such as an imported RouterBench / BFCL matrix) through replay backends, so every answer's truth is
known: what *every* model would have produced on *every* request. :class:`LoopWorld` holds it:

* ``traffic``: the tasks the traffic driver draws requests from (the matrix's ``train`` split, or
  every task when the matrix has no split);
* ``test``: held-out tasks (``test`` split; the traffic tasks when there is none) on which the live
  policy and the offline full-information LightGBM are compared;
* ``encoder``: a :class:`~router_rl.features.FeatureEncoder` fitted on the traffic tasks' records,
  the router's log encoder (``features.encoder_path``), so every logged row is learnable;
* the records the router encodes for a request (:func:`request_record`: one user message holding
  the task prompt, its agent type, category and ``max_tokens``), so offline features equal the
  logged ones exactly;
* the regressions injected so far (:meth:`LoopWorld.quality_factors`): the truth of a row uses
  the factors in force when it was served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from router_rl.features import FeatureEncoder
    from router_rl.traces.catalog import ModelCatalog
    from router_rl.traces.matrix import OutcomeMatrix


class LoopWorldError(ValueError):
    """The outcome matrix cannot drive a loop (names what is missing)."""


def request_record(task: dict[str, Any]) -> dict[str, Any]:
    """The encoder record the router builds for the driver's request of ``task`` (a tasks-frame row).

    The driver sends one user message (the prompt), ``x-agent-type`` / ``x-task-category`` and the
    task's ``max_tokens``; the router encodes ``router.policy_client.task_record(...)`` of exactly
    these (``n_messages`` = 1).
    """
    from router_rl.router.policy_client import task_record

    mt = task.get("max_tokens")
    return task_record(
        str(task.get("prompt") or ""),
        _opt_str(task.get("category")),
        _opt_str(task.get("agent_type")),
        int(mt) if mt is not None and int(mt) >= 1 else None,
        1,
        None,
    ).encoder_record()


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


@dataclass(eq=False)
class LoopWorld:
    """The matrix a loop replays, split into traffic and held-out tasks, and the log encoder.

    Attributes:
        matrix: The full outcome matrix (every model, every task).
        traffic_rows: Matrix rows the driver draws requests from.
        test_rows: Held-out matrix rows (evaluation of the live policy vs the offline baseline).
        encoder: The fitted feature encoder (the router's log encoder).
        source: ``"sim"`` or the trace file's path.
        factors: ``(round, model, factor)`` regressions injected, in order.
    """

    matrix: OutcomeMatrix
    traffic_rows: np.ndarray
    test_rows: np.ndarray
    encoder: FeatureEncoder
    source: str
    factors: list[tuple[int, str, float]] = field(default_factory=list)

    @property
    def models(self) -> tuple[str, ...]:
        """The action set (matrix order)."""
        return self.matrix.models

    @property
    def catalog(self) -> ModelCatalog:
        """The matrix's model catalog."""
        assert self.matrix.catalog is not None
        return self.matrix.catalog

    @property
    def locations(self) -> tuple[str, ...]:
        """``local`` / ``cloud`` per model."""
        return tuple(self.catalog[m].location for m in self.models)

    def task_rows_frame(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Task rows as dicts (``task_id``, ``prompt``, ``agent_type``, ...)."""
        return self.matrix.tasks[np.asarray(rows).tolist()].to_dicts()

    def features(self, rows: np.ndarray) -> np.ndarray:
        """``(n, d)`` features the router logs for requests of matrix rows ``rows``."""
        recs = [request_record(t) for t in self.task_rows_frame(rows)]
        return np.asarray(self.encoder.transform_records(recs), dtype=np.float32)

    def quality_factors(self, round_: int) -> np.ndarray:
        """``(k,)`` factor on each model's quality for requests served in round ``round_`` (1-based)."""
        f = np.ones(len(self.models))
        for r, m, x in self.factors:
            if r <= round_:
                f[self.models.index(m)] = x
        return f

    def quality(self, rows: np.ndarray, round_: int) -> np.ndarray:
        """``(n, k)`` true quality of every model on matrix rows ``rows`` in round ``round_``."""
        return self.matrix.quality[np.asarray(rows)] * self.quality_factors(round_)[None, :]


def load_world(
    traces: str | Path | None,
    *,
    seed: int = 0,
    fleet_tasks: int = 3000,
    hash_buckets: int = 64,
) -> LoopWorld:
    """Build the world: the simulated fleet (``traces=None``) or a trace file, and its encoder.

    Args:
        traces: A trace file readable by :func:`router_rl.traces.load_traces`, or None for
            :func:`router_rl.traces.simulate_fleet` (``fleet_tasks`` tasks, seeded).
        seed: Seed of the fleet (and of the split of a trace file without one).
        fleet_tasks: Tasks of the simulated fleet.
        hash_buckets: Word and char n-gram hash buckets of the encoder.

    Raises:
        LoopWorldError: no catalog, no prompt column, duplicate prompts (the replay backend maps a
            request to its task by the prompt), no local or no cloud model.
    """
    from router_rl.features import FeatureEncoder
    from router_rl.features.config import EncoderConfig

    if traces is None:
        from router_rl.traces.simulate import simulate_fleet

        matrix = simulate_fleet(fleet_tasks, seed=seed).matrix()
        source = "sim"
    else:
        from router_rl.traces.load import load_traces

        p = Path(traces)
        if not p.is_file():
            raise LoopWorldError(f"--traces: {p} is not a file")
        matrix = load_traces(p, seed=seed).matrix()
        source = str(p)
    if matrix.catalog is None:
        raise LoopWorldError(f"{source}: the outcome matrix has no model catalog (locations and prices are needed)")
    if "prompt" not in matrix.tasks.columns:
        raise LoopWorldError(f"{source}: the tasks have no 'prompt' column (the driver sends the prompt)")
    prompts = matrix.tasks["prompt"].cast(pl.Utf8)
    if prompts.null_count() or prompts.n_unique() != matrix.n_tasks:
        raise LoopWorldError(
            f"{source}: {matrix.n_tasks - prompts.n_unique()} duplicate or missing prompts; the replay backend "
            "maps a request to its task by the prompt, so prompts must be unique"
        )
    loc = matrix.is_local()
    if not loc.any() or loc.all():
        raise LoopWorldError(f"{source}: the loop needs local and cloud models (locations: {list(matrix.models)})")
    rows = np.arange(matrix.n_tasks)
    if "split" in matrix.tasks.columns:
        split = matrix.tasks["split"].cast(pl.Utf8).to_numpy()
        traffic = rows[split == "train"]
        test = rows[split == "test"]
    else:
        traffic, test = rows, rows
    if traffic.size == 0:
        traffic = rows
    if test.size == 0:
        test = traffic
    enc = FeatureEncoder(EncoderConfig(n_word_hash=hash_buckets, n_char_hash=hash_buckets))
    recs = [request_record(t) for t in matrix.tasks[traffic.tolist()].to_dicts()]
    enc.fit(pl.DataFrame(recs))
    return LoopWorld(matrix=matrix, traffic_rows=traffic, test_rows=test, encoder=enc, source=source)

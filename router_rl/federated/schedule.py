"""Rounds on a schedule: a round starts when every participating node has >= N new accepted trajectories.

The scheduler looks at the nodes' trajectory stores (:class:`router_rl.federated.trajectories.TrajectoryStore`)
and a JSON **state file** that remembers, per node, the request ids of the accepted trajectories the
previous rounds already counted. A round is *due* when each node has at least ``min_new`` accepted
trajectories not in its state (default 1,000, the fleet plan's "every ~1,000 tasks"). After a round
ran, :meth:`RoundScheduler.commit` adds what that round saw to the state (atomically: a temporary
file, fsync, rename), so a crash mid-round repeats the round rather than skipping data.

Counting by request id (not by timestamp) means a trajectory whose label arrives late is counted
when it is accepted, and a trajectory is never counted twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from router_rl.federated.config import FederatedConfig
from router_rl.federated.trajectories import TrajectoryStore

T = TypeVar("T")
STATE_VERSION = 1


class ScheduleStateError(ValueError):
    """The state file is unreadable or was written for other nodes (names the file and the field)."""


@dataclass(frozen=True)
class ScheduleCheck:
    """One look at the stores.

    Attributes:
        due: Every node has ``>= min_new`` new accepted trajectories.
        new: New accepted trajectories per node.
        accepted: All accepted trajectories per node.
        waiting_for: Nodes below ``min_new`` (empty when due).
        min_new: The threshold.
        round: The number the next round would have (1 + rounds already run).
    """

    due: bool
    new: dict[str, int]
    accepted: dict[str, int]
    waiting_for: tuple[str, ...]
    min_new: int
    round: int
    _ids: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)


class RoundScheduler:
    """Decides when a federated round starts (see the module docstring).

    Args:
        stores: Node name -> trajectory store folder (the participating nodes).
        state_file: The JSON state file (created on the first commit).
        min_new: New accepted trajectories each node needs before a round (>= 1).
        quality_threshold: Quality an accepted trajectory needs (as the clients' training uses).
    """

    def __init__(
        self, stores: Mapping[str, str | Path], state_file: str | Path, *, min_new: int = 1000,
        quality_threshold: float = 1.0,
    ) -> None:
        if not stores:
            raise ValueError("RoundScheduler: stores must name at least one node")
        if min_new < 1:
            raise ValueError(f"RoundScheduler: min_new must be >= 1, got {min_new}")
        if not 0.0 <= quality_threshold <= 1.0:
            raise ValueError(f"RoundScheduler: quality_threshold must be in [0, 1], got {quality_threshold}")
        self.stores = {str(k): TrajectoryStore(v) for k, v in stores.items()}
        self.state_file = Path(state_file)
        self.min_new = min_new
        self.quality_threshold = quality_threshold

    # --- state ---------------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        """The state (an empty one when the file does not exist yet)."""
        if not self.state_file.exists():
            return {"version": STATE_VERSION, "rounds": [], "seen": {n: [] for n in self.stores}}
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ScheduleStateError(f"{self.state_file}: unreadable schedule state ({e})") from e
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ScheduleStateError(f"{self.state_file}, field 'version': expected {STATE_VERSION}")
        seen = state.get("seen")
        if not isinstance(seen, dict) or not isinstance(state.get("rounds"), list):
            raise ScheduleStateError(f"{self.state_file}: expected fields 'seen' (object) and 'rounds' (list)")
        unknown = sorted(set(seen) - set(self.stores))
        if unknown:
            raise ScheduleStateError(
                f"{self.state_file}, field 'seen': node(s) {unknown} are not among the stores {sorted(self.stores)}"
            )
        for n in self.stores:
            seen.setdefault(n, [])
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        with tmp.open("w") as fh:
            json.dump(state, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_file)

    # --- decisions -------------------------------------------------------------------------------
    def check(self) -> ScheduleCheck:
        """Count each node's new accepted trajectories; ``due`` when all have ``>= min_new``."""
        state = self.load_state()
        new: dict[str, int] = {}
        accepted: dict[str, int] = {}
        ids: dict[str, list[str]] = {}
        for name, store in self.stores.items():
            acc = store.accepted_ids(self.quality_threshold)
            seen = set(state["seen"][name])
            fresh = [i for i in acc if i not in seen]
            accepted[name], new[name], ids[name] = len(acc), len(fresh), fresh
        waiting = tuple(n for n in self.stores if new[n] < self.min_new)
        return ScheduleCheck(due=not waiting, new=new, accepted=accepted, waiting_for=waiting,
                             min_new=self.min_new, round=len(state["rounds"]) + 1, _ids=ids)

    def commit(self, check: ScheduleCheck, *, result: Mapping[str, Any] | None = None) -> None:
        """Record that the round of ``check`` ran: its new trajectories are counted from now on.

        Args:
            check: What :meth:`check` returned before the round started (trajectories that
                arrived during the round count for the next one).
            result: Scalars to keep with the round (e.g. its held-out loss).
        """
        state = self.load_state()
        if len(state["rounds"]) + 1 != check.round:
            raise ScheduleStateError(
                f"{self.state_file}: round {check.round} was checked but the state has "
                f"{len(state['rounds'])} rounds (another scheduler committed in between)"
            )
        for name, fresh in check._ids.items():
            state["seen"][name] = sorted(set(state["seen"][name]) | set(fresh))
        state["rounds"].append({
            "round": check.round, "at": datetime.now(tz=UTC).isoformat(), "new": check.new,
            **({"result": dict(result)} if result else {}),
        })
        self._write_state(state)

    def run_if_due(self, run_round: Callable[[ScheduleCheck], T]) -> tuple[ScheduleCheck, T | None]:
        """Run ``run_round(check)`` when a round is due and commit it; otherwise run nothing.

        A round that raises is not committed (its trajectories stay new).

        Returns:
            ``(check, run_round's value or None when no round was due)``.
        """
        chk = self.check()
        if not chk.due:
            return chk, None
        out = run_round(chk)
        self.commit(chk, result=out if isinstance(out, Mapping) else None)
        return chk, out


def scheduled_round(cfg: FederatedConfig, out_dir: str | Path, *, server_round: int) -> dict[str, Any]:
    """One federated round continuing from the global adapter in ``out_dir`` (the seeded initial one at round 1).

    The same client and server functions as :func:`router_rl.federated.runner.run_inprocess`:
    every client trains from the current global adapter on its store's accepted trajectories, the
    server FedAvgs them and evaluates; the new global adapter and ``metrics.json`` replace the old
    ones in ``out_dir`` (``round-<r>.json`` keeps each round's metrics).

    Args:
        cfg: The run config.
        out_dir: The federation's folder (``global_adapter/``).
        server_round: The round number (seeds the local training; :attr:`ScheduleCheck.round`).

    Returns:
        ``{"round", "eval_loss", "train_loss", "eval_loss_before"}``.
    """
    from router_rl.federated.client import get_client
    from router_rl.federated.lora import get_adapter_arrays, load_saved_adapter
    from router_rl.federated.runner import initial_adapter
    from router_rl.federated.server import (
        ClientReply,
        FederationHistory,
        aggregate_evaluate,
        aggregate_train,
        save_outputs,
    )

    out = Path(out_dir)
    prev = out / "global_adapter"
    if server_round > 1 and not (prev / "adapter_config.json").is_file():
        raise ScheduleStateError(f"{prev}: round {server_round} needs the previous round's global adapter")
    arrays = get_adapter_arrays(load_saved_adapter(cfg, prev)) if server_round > 1 else initial_adapter(cfg)
    ids = list(range(cfg.num_clients))
    history = FederationHistory()
    before = aggregate_evaluate(history, 0, [ClientReply(i, get_client(cfg, i).evaluate(arrays)) for i in ids])
    replies = []
    for i in ids:
        new, metrics = get_client(cfg, i).fit(arrays, server_round=server_round)
        replies.append(ClientReply(i, metrics, new))
    arrays = aggregate_train(history, server_round, replies, expected_keys=set(arrays))
    evals = [ClientReply(i, get_client(cfg, i).evaluate(arrays)) for i in ids]
    after = aggregate_evaluate(history, server_round, evals)
    save_outputs(cfg, arrays, history, out)
    (out / f"round-{server_round}.json").write_text(json.dumps(history.to_json(), indent=2, sort_keys=True))
    return {"round": server_round, "eval_loss_before": before, "eval_loss": after,
            "train_loss": float(history.rounds[server_round]["train_loss"])}

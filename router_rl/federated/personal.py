"""Per-agent-type adapters: the global adapter fine-tuned locally after aggregation, measured.

Three adapters per agent type (client), each evaluated on that client's own held-out data:

* **global**: the federated adapter after ``R`` rounds (``R x S`` local steps per client, plus what
  the other clients' data contributed through aggregation);
* **personalised**: the global adapter plus ``P`` more local steps on the client's own data (local
  fine-tuning after aggregation; it stays on the node and is served as ``base+<agent>``);
* **local-only**: the seeded initial adapter trained on the client's own data alone for the same
  ``R x S + P`` steps (no federation).

Step counts are equal for personalised and local-only, so the difference is what the federation
contributed. All training is seeded (``cfg.seed``, round, client).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router_rl.federated.config import FederatedConfig


@dataclass
class PersonalisationResult:
    """Per agent type: held-out loss of the initial, global, personalised and local-only adapters.

    Attributes:
        rows: One dict per client (``agent_type``, ``initial``, ``global``, ``personalised``,
            ``local_only``, ``train_examples``, ``heldout_tokens``).
        global_arrays: The federated adapter.
        personal_arrays: Partition id -> personalised adapter.
        steps: ``{"rounds", "local_steps_per_round", "personal_steps", "local_only_steps"}``.
        history: The federation's per-round metrics (:class:`router_rl.federated.server.FederationHistory`).
    """

    rows: list[dict[str, Any]]
    global_arrays: dict[str, np.ndarray]
    personal_arrays: dict[int, dict[str, np.ndarray]]
    steps: dict[str, int]
    history: Any = field(default=None, repr=False)


def _train_from(cfg: FederatedConfig, partition_id: int, arrays: Mapping[str, np.ndarray], steps: int,
                *, server_round: int) -> dict[str, np.ndarray]:
    from router_rl.federated.client import get_client
    from router_rl.federated.lora import get_adapter_arrays, set_adapter_arrays
    from router_rl.federated.train import train_local

    rt = get_client(cfg, partition_id)
    set_adapter_arrays(rt.model, arrays)
    sub = cfg.model_copy(update={"max_local_steps": steps, "local_epochs": 1000})
    train_local(rt.model, rt.partition.train, sub, server_round=server_round, partition_id=partition_id)
    return get_adapter_arrays(rt.model)


def personalise(
    cfg: FederatedConfig, global_arrays: Mapping[str, np.ndarray], *, steps: int
) -> dict[int, dict[str, np.ndarray]]:
    """Each client's personal adapter: ``global_arrays`` plus ``steps`` local steps on its own data."""
    if steps < 1:
        raise ValueError(f"personalise: steps must be >= 1, got {steps}")
    return {i: _train_from(cfg, i, global_arrays, steps, server_round=cfg.num_rounds + 1)
            for i in range(cfg.num_clients)}


def compare_personalisation(cfg: FederatedConfig, out_dir: str | Path, *, personal_steps: int) -> PersonalisationResult:
    """Run the federation, personalise, train local-only adapters and evaluate all on each client.

    Args:
        cfg: Run config; ``max_local_steps`` must be set (the step budget is counted from it).
        out_dir: Where the federation writes ``global_adapter/`` and ``metrics.json``.
        personal_steps: ``P``, local steps after aggregation.
    """
    from router_rl.federated.client import get_client
    from router_rl.federated.runner import initial_adapter, run_inprocess

    if not cfg.max_local_steps:
        raise ValueError("compare_personalisation: set max_local_steps (the local-only budget is R x S + P steps)")
    res = run_inprocess(cfg, out_dir)
    personal = personalise(cfg, res.arrays, steps=personal_steps)
    init = initial_adapter(cfg)
    budget = cfg.num_rounds * cfg.max_local_steps + personal_steps
    rows = []
    for i in range(cfg.num_clients):
        local = _train_from(cfg, i, init, budget, server_round=10_000)
        rt = get_client(cfg, i)
        ev = {name: rt.evaluate(a) for name, a in
              (("initial", init), ("global", res.arrays), ("personalised", personal[i]), ("local_only", local))}
        rows.append({
            "agent_type": cfg.agent_types[i],
            **{name: float(m["eval-loss"]) for name, m in ev.items()},
            "train_examples": rt.partition.num_train,
            "heldout_tokens": int(ev["global"]["num-tokens"]),
        })
    steps = {"rounds": cfg.num_rounds, "local_steps_per_round": cfg.max_local_steps,
             "personal_steps": personal_steps, "local_only_steps": budget}
    return PersonalisationResult(rows=rows, global_arrays=res.arrays, personal_arrays=personal, steps=steps,
                                 history=res.history)

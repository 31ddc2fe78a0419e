"""Bytes sent per client per round, plain FedAvg vs SecAgg+, on the tiny local model (issue #22 item 9).

Builds the tiny offline base model, runs one federated round per (clients, mode) over the
in-process :class:`router_rl.federated.grid.LocalGrid` (the real ServerApp logic and ClientApp;
every message is serialised with Flower's object encoding and its size counted) and reports, per
client, the bytes of its TRAIN replies (up, client -> server) and of the server's TRAIN messages
(down), plus the number of messages. SecAgg+ has four exchanges per client and round (setup,
share keys, masked vector, unmask); plain FedAvg one.

Usage::

    PYTHONPATH=. .venv/bin/python experiments/federated_bytes.py              # 3 and 5 clients, r=8
    PYTHONPATH=. .venv/bin/python experiments/federated_bytes.py --quick      # 3 clients

Writes ``<out-dir>/federated_bytes.json`` and ``.md`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

AGENTS = ("test-generator", "coverage-analyzer", "code-reviewer", "flaky-test-hunter", "security-scanner")


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    clients: list[int] = field(default_factory=lambda: [3, 5])
    lora_r: int = 8
    seed: int = 0
    out_dir: str = "experiments/results"
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--clients", nargs="+", type=int, default=d.clients)
    p.add_argument("--lora-r", type=int, default=d.lora_r)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--quick", action="store_true")
    a = Args(**vars(p.parse_args(argv)))
    if a.quick:
        a.clients = [3]
        if a.out_dir == "experiments/results":
            a.out_dir = "runs/federated_bytes"
    return a


def measure(args: Args) -> dict[str, Any]:
    """One round per (clients, mode); bytes per client."""
    from router_rl.federated.bytes import bytes_per_client_round
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.config import FederatedConfig
    from router_rl.federated.runner import run_local_grid
    from router_rl.federated.tiny import build_tiny_base_model
    from router_rl.traces.simulate import AGENT_TYPES

    agents = [a for a in AGENTS if a in AGENT_TYPES] + [a for a in sorted(AGENT_TYPES) if a not in AGENTS]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fed-bytes-") as tmp:
        base = build_tiny_base_model(Path(tmp) / "base", seed=args.seed)
        for n in args.clients:
            for secure in (False, True):
                cfg = FederatedConfig(base_model_path=base, agent_types=tuple(agents[:n]), num_rounds=1, n_tasks=150,
                                      max_local_steps=2, max_examples_per_client=16, max_eval_examples_per_client=8,
                                      max_length=64, lora_r=args.lora_r, seed=args.seed, secure_aggregation=secure)
                clear_client_cache()
                res, grid = run_local_grid(cfg, Path(tmp) / f"out-{n}-{secure}")
                per = bytes_per_client_round(grid)
                n_params = int(sum(a.size for a in res.arrays.values()))
                ups = [v["up"] for (_, r), v in per.items() if r == "1"]
                downs = [v["down"] for (_, r), v in per.items() if r == "1"]
                msgs = [v["messages"] for (_, r), v in per.items() if r == "1"]
                rows.append({
                    "clients": n, "mode": "secagg+" if secure else "plain", "adapter_params": n_params,
                    "adapter_float32_bytes": 4 * n_params,
                    "up_bytes_mean": float(np.mean(ups)), "up_bytes_max": int(max(ups)),
                    "down_bytes_mean": float(np.mean(downs)), "messages_per_client": int(max(msgs)),
                })
    return {"args": asdict(args), "rows": rows}


def to_markdown(out: dict[str, Any]) -> str:
    """The table."""
    lines = ["| clients | mode | adapter params (float32 bytes) | up bytes / client / round "
             "| down bytes / client / round | messages / client / round |", "|---|---|---|---|---|---|"]
    for r in out["rows"]:
        lines.append(f"| {r['clients']} | {r['mode']} | {r['adapter_params']} ({r['adapter_float32_bytes']}) | "
                     f"{r['up_bytes_mean']:.0f} | {r['down_bytes_mean']:.0f} | {r['messages_per_client']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run and write JSON + Markdown."""
    args = parse_args(argv)
    out = measure(args)
    d = Path(args.out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "federated_bytes.json").write_text(json.dumps(out, indent=2))
    (d / "federated_bytes.md").write_text(to_markdown(out))
    print(to_markdown(out))


if __name__ == "__main__":
    main()

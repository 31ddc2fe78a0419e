"""Federated SFT on RouterBench trajectories: loss curves, personalised adapters, round wall time.

Three clients, one per RouterBench task category (ARC-Challenge, MBPP, Winogrande); each client's
trajectory store holds the 11 models' real responses with their 0/1 correctness labels, and only the
correct ones (quality >= 1) are trained on (loss on the response tokens). The base model is the tiny
random-init Llama the llama.cpp engine serves (``router_rl.engines.tiny``), so what is learnt is the
distribution of correct answers' tokens, not reasoning. Parts:

* ``curve``: held-out loss on correct responses per client and round (round 0 = before training);
* ``personal``: held-out loss per agent type of the global, personalised (global + P local steps)
  and local-only (R x S + P local steps, no federation) adapters (:mod:`router_rl.federated.personal`);
* ``walltime``: wall time per round for 3 / 8 / 20 clients, in the in-process loop (each round's
  time) and in Flower's simulation (Ray): each round's time inside one 3-round run (``round_seconds``
  of ``metrics.json``, so Ray's start-up and the model loads are left out; each simulation runs in a
  fresh process); a simulation that fails to start is retried, then recorded with its error.

Usage::

    ROUTER_RL_DATASETS=../shared/datasets .venv/bin/python experiments/federated_sft.py            # all parts
    ROUTER_RL_DATASETS=../shared/datasets .venv/bin/python experiments/federated_sft.py --parts curve personal

Writes ``<out-dir>/federated_sft.json`` and ``.md`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PARTS = ("curve", "personal", "walltime")
CATS = ("arc", "mbpp", "winogrande")


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    parts: list[str] = field(default_factory=lambda: list(PARTS))
    max_prompts: int = 80
    """RouterBench prompts per category (x 11 model responses, of which the correct ones are trained on)"""
    rounds: int = 5
    local_steps: int = 10
    """optimizer steps per client per round (S)"""
    personal_steps: int = 10
    """local steps after aggregation (P)"""
    lr: float = 2e-2
    max_length: int = 96
    max_eval: int = 64
    """held-out sequences per client"""
    walltime_clients: list[int] = field(default_factory=lambda: [3, 8, 20])
    walltime_prompts: int = 30
    """RouterBench prompts per client store in the wall-time part"""
    seed: int = 0
    work_dir: str = "runs/federated_sft"
    out_dir: str = "experiments/results"


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    p.add_argument("--walltime-clients", nargs="+", type=int, default=d.walltime_clients)
    for name in ("max_prompts", "rounds", "local_steps", "personal_steps", "max_length", "max_eval",
                 "walltime_prompts", "seed"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--work-dir", default=d.work_dir)
    p.add_argument("--out-dir", default=d.out_dir)
    ns = p.parse_args(argv)
    return Args(**{k.replace("-", "_"): v for k, v in vars(ns).items()})


def _cfg(args: Args, base: Path, stores: list[Path], names: tuple[str, ...], **kw: Any) -> Any:
    from router_rl.federated.config import FederatedConfig

    values: dict[str, Any] = dict(
        base_model_path=base, agent_types=names, data_source="trajectories",
        trajectory_dirs=tuple(str(s) for s in stores), num_rounds=args.rounds, max_local_steps=args.local_steps,
        lr=args.lr, max_length=args.max_length, batch_size=8, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
        max_eval_examples_per_client=args.max_eval, seed=args.seed,
    )
    values.update(kw)
    return FederatedConfig.create("experiments/federated_sft.py", **values)


def _simulate(cfg_json: str, out_dir: str, conn: Any) -> None:
    """Child process: one Flower simulation of ``cfg_json``; sends ``("ok", (seconds, round seconds))`` or an error.

    Ray is shut down before the answer is sent and the process exits at once afterwards (a failed
    Ray start can leave threads that would keep it alive).
    """
    import os

    from router_rl.federated.config import FederatedConfig
    from router_rl.federated.simulation import run_flower_simulation

    try:
        t0 = time.perf_counter()
        res = run_flower_simulation(FederatedConfig.model_validate_json(cfg_json), out_dir)
        answer: tuple[str, Any] = ("ok", (time.perf_counter() - t0, list(res.history.round_seconds().values())))
    except Exception as exc:
        answer = ("error", f"{type(exc).__name__}: {exc}")
    try:
        import ray

        ray.shutdown()
    finally:
        conn.send(answer)
        conn.close()
        os._exit(0)


def _simulation_in_child(
    cfg_json: str, out_dir: str, *, attempts: int = 3, timeout_s: float = 1800.0,
) -> tuple[float, list[float]]:
    """Wall time of one Flower simulation and of each of its rounds, run by :func:`_simulate` in a fresh process.

    One Ray session per process: a second ``run_simulation`` in the process that ran the first
    times out while Ray starts again, so every measured run gets a fresh interpreter; a failed
    start is retried (``attempts`` tries, 30 s apart: Ray's raylet must register within 30 s,
    which a loaded machine misses).

    Raises:
        RuntimeError: every attempt failed (the last error in the message).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    last = ""
    for attempt in range(1, attempts + 1):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_simulate, args=(cfg_json, out_dir, child))
        proc.start()
        child.close()
        status, value = ("error", f"no answer within {timeout_s:g} s")
        if parent.poll(timeout_s):
            try:
                status, value = parent.recv()
            except EOFError:
                status, value = ("error", f"the child exited with code {proc.exitcode} without an answer")
        proc.join(30.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if status == "ok":
            return float(value[0]), [float(v) for v in value[1]]
        last = str(value)
        print(f"walltime: Flower simulation attempt {attempt}/{attempts} failed: {last}", flush=True)
        time.sleep(30.0)
    raise RuntimeError(f"Flower simulation in a child process failed {attempts} times; last: {last}")


def main(args: Args) -> dict[str, Any]:
    """Run the selected parts; returns (and writes) the results."""
    from router_rl.engines.tiny import build_tiny_engine_model
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.trajectories import write_routerbench_store

    work = Path(args.work_dir)
    base = build_tiny_engine_model(work / "tiny", seed=args.seed).hf_dir
    out: dict[str, Any] = {"args": asdict(args), "stores": {}}
    stores = []
    for c in CATS:
        s = work / "stores" / c
        if not (s / "decisions").is_dir():
            rep = write_routerbench_store(s, c, max_prompts=args.max_prompts, seed=args.seed)
            out["stores"][c] = asdict(rep)
        stores.append(s)

    if "curve" in args.parts:
        from router_rl.federated.runner import run_inprocess

        clear_client_cache()
        cfg = _cfg(args, base, stores, CATS)
        t0 = time.perf_counter()
        res = run_inprocess(cfg, work / "curve")
        from router_rl.federated.client import get_client

        out["curve"] = {
            "wall_s": time.perf_counter() - t0,
            "rounds": [{"round": r, "eval_loss": res.history.eval_loss(r), "train_loss": log.get("train_loss"),
                        **{CATS[int(k)]: v["eval-loss"] for k, v in log["evaluate"].items()}}
                       for r, log in sorted(res.history.rounds.items())],
            "data": {c: get_client(cfg, i).partition.report for i, c in enumerate(CATS)},
        }
    if "personal" in args.parts:
        from router_rl.federated.personal import compare_personalisation

        clear_client_cache()
        cfg = _cfg(args, base, stores, CATS)
        pr = compare_personalisation(cfg, work / "personal", personal_steps=args.personal_steps)
        out["personal"] = {"rows": pr.rows, "steps": pr.steps}
    if "walltime" in args.parts:
        import os

        from router_rl.federated.runner import run_inprocess
        rows = []
        for n in args.walltime_clients:
            names = tuple(f"node-{k:02d}" for k in range(n))
            wstores = []
            for k in range(n):
                s = work / "wall-stores" / names[k]
                if not (s / "decisions").is_dir():
                    write_routerbench_store(s, CATS[k % 3], max_prompts=args.walltime_prompts, seed=args.seed + k)
                wstores.append(s)
            row: dict[str, Any] = {"clients": n, "load_avg_1m": os.getloadavg()[0]}
            # in-process loop: wall time of each round (train every client + aggregate + evaluate)
            clear_client_cache()
            cfg = _cfg(args, base, wstores, names, num_rounds=3, max_eval_examples_per_client=16)
            stamps: list[float] = []

            def stamp(_r: int, _log: dict, stamps: list[float] = stamps) -> None:
                stamps.append(time.perf_counter())

            run_inprocess(cfg, work / f"wall-inproc-{n}", on_round=stamp)
            row["inprocess_round_s"] = [b - a for a, b in itertools.pairwise(stamps)]
            # Flower simulation (Ray): each round's wall time inside one run (metrics.json "round_seconds",
            # from round r-1's evaluation to round r's), so Ray's start-up and the model loads are left out
            try:
                cfg = _cfg(args, base, wstores, names, num_rounds=3, max_eval_examples_per_client=16)
                total, per_round = _simulation_in_child(cfg.model_dump_json(), str(work / f"wall-{n}"))
                row.update(simulation_total_s=total, simulation_round_s=per_round)
            except RuntimeError as exc:  # recorded, not hidden: Ray may not start on an overloaded machine
                row["flower_error"] = f"{type(exc).__name__}: {exc}"[:400]
            rows.append(row)
        out["walltime"] = rows
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.out_dir) / "federated_sft.json").write_text(json.dumps(out, indent=2, default=str))
    (Path(args.out_dir) / "federated_sft.md").write_text(render(out))
    return out


def render(out: dict[str, Any]) -> str:
    """The results as markdown tables."""
    lines = ["# federated_sft", ""]
    if "curve" in out:
        lines += ["| round | " + " | ".join(CATS) + " | all (token-weighted) |", "|---" * (len(CATS) + 2) + "|"]
        for r in out["curve"]["rounds"]:
            lines.append(f"| {r['round']} | " + " | ".join(f"{r[c]:.3f}" for c in CATS) + f" | {r['eval_loss']:.3f} |")
        lines.append("")
    if "personal" in out:
        lines += ["| agent type | initial | global | personalised | local-only |", "|---|---|---|---|---|"]
        for r in out["personal"]["rows"]:
            lines.append(f"| {r['agent_type']} | {r['initial']:.3f} | {r['global']:.3f} | {r['personalised']:.3f} | "
                         f"{r['local_only']:.3f} |")
        lines.append("")
    if "walltime" in out:
        lines += ["| clients | in-process s/round (rounds 1 / 2 / 3) | Flower simulation s/round (rounds 1 / 2 / 3) "
                  "| simulation total s (Ray start-up included) | load 1m |", "|---|---|---|---|---|"]
        for r in out["walltime"]:
            ip = " / ".join(f"{x:.1f}" for x in r["inprocess_round_s"])
            if "simulation_round_s" in r:
                fl = " / ".join(f"{x:.1f}" for x in r["simulation_round_s"]) + f" | {r['simulation_total_s']:.0f}"
            else:
                fl = f"failed: {r['flower_error'][:60]} | -"
            lines.append(f"| {r['clients']} | {ip} | {fl} | {r['load_avg_1m']:.1f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    res = main(parse_args())
    print(render(res))

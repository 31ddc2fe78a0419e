"""Serving latency: the Ray Serve endpoint next to the HTTP floor, and the in-process serving path.

Part ``endpoint`` (default). One policy artifact (LightGBM on the simulated fleet, or
``--policy DIR``) served twice on 127.0.0.1 in the same run:

* ``floor``: plain uvicorn + FastAPI (:mod:`router_rl.serve.floor`), one process, the same
  ``PolicyEngine`` and protocol: the cheapest honest HTTP endpoint;
* ``ray``: the Ray Serve application (:func:`router_rl.serve.app.build_app`, one replica), once
  per ``--batch-sizes`` value (``max_batch_size`` through ``user_config``; 1 = no batching).

Both are called through the router's own client (:class:`router_rl.serve.client.RemotePolicyClient`,
one keep-alive pool) with one-record requests as the router sends them (prompt, agent type, router
state). Timed: ``single`` (one caller, sequential), ``--concurrency`` callers at once (one
``/route`` call per record), and the same callers through the router's coalescing client
(``N coalesced``: :class:`~router_rl.router.policy_client.HTTPPolicyClient` with
``--coalesce-max-batch`` / ``--coalesce-in-flight``, the records waiting sent together); printed:
p50 / p99 (ms), requests/s, and the ratio ray / floor. Rounds alternate floor and ray so a load
change on a shared machine hits both alike. ``--ray-env KEY=VALUE`` sets Ray Serve flags (e.g.
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``) before Ray starts.

Part ``inprocess``: what the one serving path adds to a stateful (PPO) learned decision,
in-process, one core:

* ``direct``: the baseline measured in the same run, the bare calls
  ``policy.action_distribution(policy.observe(encoder.transform_records([r]), state_vector(...)))``;
* ``state``: the router gathering its state (``PolicyStateTracker.snapshot``) and building the
  validated wire record (``task_record``);
* ``serving path``: ``state`` + ``InProcessPolicyClient.distribution`` (``PolicyEngine.evaluate``:
  encoder, state vector from the record's ``RouterState``, policy, output checks), awaited.

BLAS/OpenMP are pinned to one thread. ::

    .venv/bin/python bench/bench_serving.py [--requests 600] [--concurrency 16] [--batch-sizes 1,32]
    .venv/bin/python bench/bench_serving.py --part inprocess [--repeats 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# isort: off
from _timing import timeit  # first: pins the BLAS/OpenMP pools to one thread before numpy loads
import numpy as np
# isort: on

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           # the raylet waits longer for its dashboard agent (slow to import under load)
           "RAY_agent_register_timeout_ms": "300000", "RAY_raylet_start_wait_time_s": "120"}
PROMPTS = (
    "Write pytest unit tests for parse_date() covering leap years",
    "Review this diff for race conditions in the cache eviction\n@@ -1,3 +1,4 @@\n+lock.acquire()",
    "Refactor the payment service for the distributed consensus migration and a security audit",
    "Fix the flaky integration test of the login flow",
    "Summarise the failing tests in this CI log.",
)


def _pct(x: np.ndarray) -> str:
    return f"p50 {np.percentile(x, 50) * 1e6:8.1f} µs   p99 {np.percentile(x, 99) * 1e6:8.1f} µs"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_artifact(out: Path, n_tasks: int = 600, seed: int = 0) -> Path:
    """A LightGBM policy (with its encoder) on the simulated fleet, saved to ``out``."""
    from router_rl.features import FeatureEncoder
    from router_rl.policies import make_policy
    from router_rl.traces import simulate_fleet

    m = simulate_fleet(n_tasks, seed=seed).matrix()
    enc = FeatureEncoder().fit(m.tasks)
    pol = make_policy("lgbm", m.models)
    pol.fit(enc.transform(m.tasks), m, seed=seed)
    pol.attach_encoder(enc)
    return pol.save(out)


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 120.0) -> None:
    """Poll ``url`` until it answers below HTTP 500."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout_s}s")


@contextmanager
def floor_server(policy: Path) -> Iterator[str]:
    """The floor endpoint in its own process; yields its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                                    os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "router_rl.serve.floor", "--policy", str(policy),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def ray_serve(ray_env: dict[str, str], num_cpus: int = 2, address: str | None = None,
              attempts: int = 3) -> Iterator[int]:
    """Ray (local, or the cluster at ``address``) + Serve's HTTP proxy on a free port; yields the port.

    A local ``ray.init`` is tried up to ``attempts`` times: Ray gives its raylet a fixed 30 s to
    register, which a loaded 2-core machine can miss.
    """
    os.environ.update({**RAY_ENV, **ray_env})
    import ray
    from ray import serve

    for attempt in range(1, attempts + 1):
        try:
            if address is None:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
            break
        except Exception as e:
            print(f"ray.init attempt {attempt}/{attempts} failed: {type(e).__name__}: {e}", file=sys.stderr)
            ray.shutdown()
            if attempt == attempts:
                raise
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def deploy(policy: Path, *, max_batch_size: int, name: str = "policy", **options: Any) -> None:
    """(Re)deploy the policy app at ``/name``; the same code version makes a batch-size change a reconfigure."""
    from ray import serve

    from router_rl.serve.app import policy_app

    app = policy_app({"policy_path": str(policy), "max_batch_size": max_batch_size}, version="1", **options)
    serve.run(app, name=name, route_prefix=f"/{name}")


def router_records(n: int, seed: int = 0) -> list[Any]:
    """``n`` one-request wire records as the router sends them (prompt, agent type, router state)."""
    from router_rl.router.policy_client import task_record
    from router_rl.serve.protocol import RouterState

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        state = RouterState(budget_remaining_frac=float(rng.uniform()), elapsed_frac=float(rng.uniform()),
                            local_share=float(rng.uniform()),
                            breakers={"local": "closed", "anthropic": "closed", "openrouter": "closed"})
        out.append(task_record(PROMPTS[i % len(PROMPTS)], None, "test-generator", None, 1, state))
    return out


async def time_calls(url: str, records: list[Any], concurrency: int,
                     coalesce: tuple[int, int] | None = None) -> np.ndarray:
    """Seconds per decision (one record each) with ``concurrency`` callers over one client pool.

    ``coalesce`` = ``(max_batch, max_in_flight)``: the callers go through the router's coalescing
    client (:class:`router_rl.router.policy_client.HTTPPolicyClient`), which sends the records
    waiting together in one ``/route`` call; ``None``: one ``/route`` call per record.
    """
    from router_rl.router.policy_client import HTTPPolicyClient
    from router_rl.serve.client import RemotePolicyClient
    from router_rl.serve.protocol import RouteRequest

    client = RemotePolicyClient(url, timeout_s=30.0, max_connections=max(32, concurrency))
    reqs = [RouteRequest(records=[r]) for r in records]
    policy: HTTPPolicyClient | None = None
    if coalesce is not None:
        models = tuple((await client.health()).models)
        policy = HTTPPolicyClient(url, models, timeout_s=30.0, max_batch=coalesce[0], max_in_flight=coalesce[1])
    try:
        for r in reqs[: min(20, len(reqs))]:  # warm-up: connections, replica caches
            await (policy.distribution(r.records[0]) if policy is not None else client.route(r))
        out = np.empty(len(reqs))
        nxt = [0]

        async def caller() -> None:
            while nxt[0] < len(reqs):
                k = nxt[0]
                nxt[0] += 1
                t = time.perf_counter()
                if policy is not None:
                    await policy.distribution(reqs[k].records[0])
                else:
                    await client.route(reqs[k])
                out[k] = time.perf_counter() - t

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return out
    finally:
        await client.aclose()
        if policy is not None:
            await policy.close()


def endpoint(args: argparse.Namespace) -> None:
    """Part ``endpoint``: Ray Serve vs the floor, single and concurrent, in one run."""
    ray_env = dict(kv.split("=", 1) for kv in args.ray_env)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    co = (args.coalesce_max_batch, args.coalesce_in_flight)
    modes: list[tuple[str, int, tuple[int, int] | None]] = [
        ("single", 1, None), (f"{args.concurrency} concurrent", args.concurrency, None)]
    if args.coalesce_max_batch > 0:
        modes.append((f"{args.concurrency} coalesced", args.concurrency, co))
    with tempfile.TemporaryDirectory() as tmp:
        policy = args.policy or build_artifact(Path(tmp) / "lgbm")
        records = router_records(args.requests)
        figures: dict[tuple[str, str], list[np.ndarray]] = {}
        with floor_server(policy) as floor_url, ray_serve(ray_env, address=args.ray_address) as port:
            ray_url = f"http://127.0.0.1:{port}/policy"
            for b in batch_sizes:
                deploy(policy, max_batch_size=b)
                wait_http(f"{ray_url}/health")
                for _ in range(args.rounds):  # alternate, so a load change hits both alike
                    for label, url in (("floor", floor_url), (f"ray (max_batch_size={b})", ray_url)):
                        if label == "floor" and b != batch_sizes[0]:
                            continue  # the floor does not depend on the batch size: time it once per round
                        for mode, conc, co in modes:
                            lat = asyncio.run(time_calls(url, records, conc, co))
                            figures.setdefault((label, mode), []).append(lat)
    print(f"policy: {policy if args.policy else 'lgbm, simulated fleet (600 tasks)'}; {args.requests} one-record "
          f"requests per measurement x {args.rounds} rounds; ray env {ray_env or 'default'}")
    if args.coalesce_max_batch > 0:
        print(f"'{args.concurrency} coalesced': {args.concurrency} callers through the router's coalescing client "
              f"(max_batch {co[0]}, max_in_flight {co[1]}); latency per caller's decision")
    print(f"{'endpoint':28} {'callers':>14} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
          f"{'p50/floor':>10} {'p99/floor':>10}")
    for mode, _, _ in modes:
        f = np.concatenate(figures[("floor", mode)])
        f50, f99 = np.percentile(f, 50) * 1e3, np.percentile(f, 99) * 1e3
        for label in ["floor", *(f"ray (max_batch_size={b})" for b in batch_sizes)]:
            x = np.concatenate(figures[(label, mode)])
            p50, p99 = np.percentile(x, 50) * 1e3, np.percentile(x, 99) * 1e3
            conc = 1 if mode == "single" else args.concurrency
            rps = conc / float(np.mean(x))
            print(f"{label:28} {mode:>14} {p50:8.2f} {p99:8.2f} {rps:8.0f} {p50 / f50:10.2f} {p99 / f99:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("endpoint", "inprocess"), default="endpoint")
    ap.add_argument("--policy", type=Path, default=None, help="policy artifact (default: build a LightGBM one)")
    ap.add_argument("--requests", type=int, default=600, help="requests per measurement (endpoint part)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating floor / ray rounds (endpoint part)")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent callers (endpoint part)")
    ap.add_argument("--batch-sizes", default="1,32", help="max_batch_size values of the Ray deployment")
    ap.add_argument("--ray-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment of the Ray processes (Ray Serve flags), repeatable")
    ap.add_argument("--ray-address", default=None, help="Ray cluster to use (default: start a local Ray)")
    ap.add_argument("--coalesce-max-batch", type=int, default=64,
                    help="also time the concurrent callers through the coalescing client (0: skip)")
    ap.add_argument("--coalesce-in-flight", type=int, default=2, help="max_in_flight of the coalescing client")
    ap.add_argument("--repeats", type=int, default=2000, help="decisions timed (inprocess part)")
    args = ap.parse_args()
    if args.part == "inprocess":
        inprocess(args.repeats)
    else:
        endpoint(args)


def inprocess(repeats: int) -> None:
    """Part ``inprocess``: what the serving path adds to a stateful (PPO) decision, in-process."""

    import torch as th

    from router_rl.envs import BudgetedRouting, load_env_data, load_spec, make_from_spec
    from router_rl.envs.state import state_vector
    from router_rl.policies.ppo import PPOConfig, PPORouter
    from router_rl.policies.ppo.train import fit_lgbm_base
    from router_rl.router.breaker import BreakerConfig, CircuitBreaker
    from router_rl.router.budget import BudgetConfig, BudgetTracker
    from router_rl.router.policy_client import InProcessPolicyClient, task_record
    from router_rl.router.policy_state import PolicyStateTracker

    th.set_num_threads(1)
    spec = load_spec("sim-budgeted").with_overrides(data={"n_tasks": 600, "seed": 3}, horizon=40)
    data = load_env_data(spec)
    lgbm = fit_lgbm_base(data, rounds=20, seed=0)
    env = make_from_spec(spec, encoder=data.encoder, split="train")
    assert isinstance(env, BudgetedRouting)
    ppo = PPORouter.from_base(lgbm, config=PPOConfig(n_steps=128, batch_size=64, net_arch=(64, 64)))
    ppo.warm_start(env, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        client = InProcessPolicyClient.from_dir(ppo.save(Path(tmp) / "ppo"))
    policy, encoder = client.engine.policy, client.engine.encoder

    prompts = [str(p) for p in data.test.tasks["prompt"].to_list()[:64]]
    budget = BudgetTracker(BudgetConfig.model_validate({"global": {"daily_usd": 10.0}}))
    budget.record("a", 3.0)
    breakers = {p: CircuitBreaker(p, BreakerConfig()) for p in ("local", *policy.providers)}
    tracker = PolicyStateTracker(budget, breakers, {m: True for m in policy.models[:5]}, time.time)
    for m in policy.models:
        tracker.record_served(m)
    i = [0]

    def nxt() -> str:
        i[0] = (i[0] + 1) % len(prompts)
        return prompts[i[0]]

    def direct() -> object:
        s = tracker.snapshot()
        X = encoder.transform_records([{"prompt": nxt(), "agent_type": "test-generator", "n_messages": 1}])
        S = state_vector(budget_remaining_frac=s.budget_remaining_frac or 0.0, elapsed_frac=s.elapsed_frac,
                         local_share=s.local_share, breakers=s.breakers, providers=policy.providers)
        return policy.action_distribution(policy.observe(X, S))

    def state() -> object:
        return task_record(nxt(), None, "test-generator", None, 1, tracker.snapshot())

    async def serving(n: int) -> np.ndarray:
        out = np.empty(n)
        for k in range(-20, n):
            t = time.perf_counter()
            await client.distribution(task_record(nxt(), None, "test-generator", None, 1, tracker.snapshot()))
            if k >= 0:
                out[k] = time.perf_counter() - t
        return out

    # interleaved rounds, so a load change on a shared machine hits every variant alike (the prior
    # cache of PPORouter makes repeated prompts cheaper for every variant alike too)
    rounds, n = 10, max(1, repeats // 10)
    parts: dict[str, list[np.ndarray]] = {"d": [], "s": [], "p": []}
    for _ in range(rounds):
        parts["d"].append(timeit(direct, n))
        parts["s"].append(timeit(state, n))
        parts["p"].append(asyncio.run(serving(n)))
    d, s, p = (np.concatenate(parts[k]) for k in ("d", "s", "p"))
    print(f"PPO artifact: {len(policy.models)} models, obs {policy.obs_dim} columns, state {policy.state_fields}")
    print(f"direct (baseline)     {_pct(d)}")
    print(f"state + wire record   {_pct(s)}")
    print(f"serving path          {_pct(p)}")
    print(f"serving path - direct: p50 {(np.percentile(p, 50) - np.percentile(d, 50)) * 1e6:+.1f} µs")


if __name__ == "__main__":
    main()

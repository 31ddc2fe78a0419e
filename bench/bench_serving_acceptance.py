"""Acceptance of the Ray endpoint as the live router's learned policy: who decided, from the decision log.

Setup, all on 127.0.0.1:

* a replay backend (``router-rl replay-backend``, simulated fleet, latencies x ``--time-scale``)
  serving every model of the fleet: the local ones under provider ``local``, the two cloud ones
  under ``anthropic`` / ``openrouter``;
* the policy: a LightGBM artifact on the simulated fleet (or ``--policy DIR``) served by the Ray
  Serve application (:func:`router_rl.serve.app.build_app`, ``--replicas`` replicas,
  ``--max-batch-size``), Ray started by this process;
* the router (``router-rl router serve``, its own process) with ``strategy: learned``,
  ``learned.endpoint`` = the Ray endpoint, ``learned.timeout_s`` = ``--policy-timeout`` (the
  router's default 0.05 s), the decision log on, auth off.

``--clients`` clients call ``/v1/chat/completions`` (``router-rl/auto``) for ``--duration``
seconds. Then the decision log is read: the share of requests ``decided_by == "learned"`` (target
>= 99.9 %) and every other row with its labelled ``fallback_reason`` (``policy_timeout``...);
rows without a label are counted apart (target 0). Client failures are printed too.
``--endpoint floor`` serves the policy from the floor app instead (uvicorn + FastAPI, no Ray);
``--endpoint inprocess`` has no endpoint: the router loads the artifact itself
(``learned.policy_dir``) and decides on its own event loop (no Ray, no coalescing: ``--coalesce``
is ignored, one run).
``--coalesce thread,loop,off`` (the default) runs the router three times against the same
endpoint: its policy client coalescing concurrent calls on its own I/O thread (the default
``learned.coalesce``), coalescing on the router's event loop (``io_thread: false``), and one
``/route`` call per request (``enabled: false``); it prints each; the exit status judges the
first setting. ::

    .venv/bin/python bench/bench_serving_acceptance.py --clients 100 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

# isort: off
import _timing  # noqa: F401  (first: pins the BLAS/OpenMP pools to one thread before numpy loads)
from bench_serving import build_artifact, deploy, floor_server, free_port, ray_serve, wait_http
# isort: on
import httpx
import yaml

LOCAL = ("rnj-1:8b", "qwen2.5-coder:7b", "devstral-small-2:24b", "qwen2.5-coder:32b", "devstral-2:123b")
CLOUD = {"claude-sonnet-4.5": "anthropic", "openrouter/auto": "openrouter"}
PROMPTS = (
    "Write a unit test for the getter of the Account class.",
    "Explain why this assertion fails: assert total == 3",
    "Generate test data for a date parser with leap years.",
    "Review this diff for race conditions\n@@ -1,3 +1,4 @@\n+lock.acquire()",
    "Refactor the payment service for the distributed consensus migration and a security audit",
)


def router_config(backend_url: str, policy_url: str | None, timeout_s: float, log_dir: Path,
                  coalesce: dict[str, object] | None = None, policy_dir: Path | None = None) -> dict[str, object]:
    """The router: every fleet model on the replay backend, the Ray endpoint (or ``policy_dir`` in-process) as its
    learned policy."""
    learned: dict[str, object] = (
        {"policy_dir": str(policy_dir), "timeout_s": timeout_s, "sample": False} if policy_dir is not None else
        {"endpoint": policy_url, "timeout_s": timeout_s, "sample": False, "coalesce": coalesce or {"enabled": False}})
    return {
        "providers": [
            {"name": "local", "kind": "openai_compatible", "base_url": backend_url, "location": "local",
             "max_retries": 0, "timeout_s": 10.0, "max_connections": 256, "models": list(LOCAL)},
            *({"name": prov, "kind": "openai_compatible", "base_url": backend_url, "location": "cloud",
               "max_retries": 0, "timeout_s": 10.0, "max_connections": 256,
               "models": [{"model": m, "usd_per_m_input": 3.0, "usd_per_m_output": 15.0}]}
              for m, prov in CLOUD.items()),
        ],
        "tiers": {"simple": LOCAL[1], "moderate": LOCAL[1], "complex": LOCAL[3], "very_complex": LOCAL[4]},
        "strategy": "learned",
        "learned": learned,
        "breaker": {"consecutive_failures": 50, "reset_timeout_s": 5.0},
        "logging": {"decision_log_dir": str(log_dir), "batch_size": 1024},
        "server": {"auth": {"enabled": False, "admin_enabled": False}},
    }


async def drive(url: str, clients: int, duration_s: float) -> tuple[int, Counter[str]]:
    """``clients`` callers for ``duration_s``; returns (ok, failures by kind)."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    t_end = time.monotonic() + duration_s
    ok = [0]
    failed: Counter[str] = Counter()

    async def client(k: int, http: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < t_end:
            body = {"model": "router-rl/auto", "max_tokens": 128,
                    "messages": [{"role": "user", "content": PROMPTS[(k + i) % len(PROMPTS)]}]}
            i += 1
            try:
                r = await http.post(url, json=body, headers={"x-agent-id": f"bench-{k % 10}",
                                                             "x-agent-type": "test-generator"})
            except httpx.HTTPError as e:
                failed[type(e).__name__] += 1
                continue
            if r.status_code == 200:
                ok[0] += 1
            else:
                failed[f"HTTP {r.status_code}"] += 1

    async with httpx.AsyncClient(limits=limits, timeout=60.0) as http:
        await asyncio.gather(*(client(k, http) for k in range(clients)))
    return ok[0], failed


def main(argv: list[str] | None = None) -> int:
    """Run the acceptance and print its figures; exit 1 when the learned share is under the target."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--policy", type=Path, default=None, help="policy artifact (default: build a LightGBM one)")
    ap.add_argument("--policy-timeout", type=float, default=0.05, help="router learned.timeout_s (default 0.05)")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--time-scale", type=float, default=0.002, help="replay latency multiplier")
    ap.add_argument("--target", type=float, default=0.999, help="required learned share")
    ap.add_argument("--ray-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--ray-address", default=None, help="Ray cluster to use (default: start a local Ray)")
    ap.add_argument("--endpoint", choices=("ray", "floor", "inprocess"), default="ray",
                    help="the policy endpoint: the Ray Serve app, the floor (uvicorn + FastAPI, no Ray), or none: "
                         "inprocess (the router loads the artifact, learned.policy_dir)")
    ap.add_argument("--coalesce", default="thread,loop,off",
                    help="router learned.coalesce settings to run, in this order, against the same endpoint: "
                         "thread (coalescing on its I/O thread, the default), loop (on the router's loop), "
                         "off (one /route call per request); comma-separated")
    ap.add_argument("--coalesce-max-batch", type=int, default=64)
    ap.add_argument("--coalesce-in-flight", default="2",
                    help="max_in_flight value(s) of the coalescing settings, comma-separated (each is run)")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.coalesce.split(",") if s.strip()]
    if not names or any(s not in ("thread", "loop", "off") for s in names):
        ap.error(f"--coalesce: expected a comma-separated list of thread / loop / off, got {args.coalesce!r}")
    try:
        in_flights = [int(v) for v in args.coalesce_in_flight.split(",")]
    except ValueError:
        ap.error(f"--coalesce-in-flight: expected comma-separated integers, got {args.coalesce_in_flight!r}")
    settings = [(n, k) for n in names for k in (in_flights if n != "off" else [0])]
    if args.endpoint == "inprocess":
        settings = [("inprocess", 0)]

    from router_rl.traces.decision_log import read_decision_log

    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-acceptance-"))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    procs: list[subprocess.Popen[bytes]] = []
    policy = args.policy or build_artifact(tmp / "lgbm")
    results: list[tuple[tuple[str, int], int, Counter[str], Path]] = []
    try:
        with ExitStack() as stack:
            if args.endpoint == "ray":
                port = stack.enter_context(ray_serve(dict(kv.split("=", 1) for kv in args.ray_env),
                                                     num_cpus=max(2, args.replicas), address=args.ray_address))
                deploy(policy, max_batch_size=args.max_batch_size, num_replicas=args.replicas)
                policy_url: str | None = f"http://127.0.0.1:{port}/policy"
            elif args.endpoint == "floor":
                policy_url = stack.enter_context(floor_server(policy))
            else:
                policy_url = None
            if policy_url is not None:
                wait_http(f"{policy_url}/health")
            pb = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "router_rl", "replay-backend", "--port", str(pb), "--time-scale",
                 str(args.time_scale), "--seed", "0", "--n-tasks", "200"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{pb}/health", procs[0])
            for setting, in_flight in settings:
                coalesce = {"enabled": True, "max_batch": args.coalesce_max_batch,
                            "max_in_flight": in_flight, "io_thread": setting == "thread"} \
                    if setting != "off" else {"enabled": False}
                tag = f"{setting}_{in_flight}"
                log_dir = tmp / f"decision_log_coalesce_{tag}"
                cfg = router_config(f"http://127.0.0.1:{pb}", policy_url, args.policy_timeout, log_dir, coalesce,
                                    policy_dir=policy if args.endpoint == "inprocess" else None)
                (tmp / f"router_{tag}.yaml").write_text(yaml.safe_dump(cfg))
                pr = free_port()
                router = subprocess.Popen(
                    [sys.executable, "-m", "router_rl", "router", "serve", "--config",
                     str(tmp / f"router_{tag}.yaml"), "--port", str(pr)],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(router)
                wait_http(f"http://127.0.0.1:{pr}/health", router)
                ok, failed = asyncio.run(drive(f"http://127.0.0.1:{pr}/v1/chat/completions", args.clients,
                                               args.duration))
                router.send_signal(signal.SIGINT)  # the router flushes its decision log on shutdown
                router.wait(timeout=60)
                results.append(((setting, in_flight), ok, failed, log_dir))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    where = {"ray": f"Ray Serve, {args.replicas} replica(s), max_batch_size {args.max_batch_size}, ray env "
                    f"{args.ray_env or 'default'}",
             "floor": "the floor endpoint (no Ray)",
             "inprocess": "in-process (the router loads the artifact; no endpoint, no Ray)"}[args.endpoint]
    print(f"{args.clients} clients x {args.duration:g} s; policy timeout {args.policy_timeout * 1e3:g} ms; {where}; "
          f"load average 1/5/15 min: {'/'.join(f'{x:.2f}' for x in load0)} at start, "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())} at end")
    passed = True
    for (setting, in_flight), ok, failed, log_dir in results:
        df = read_decision_log(log_dir)
        n = df.height
        by = Counter(df["decided_by"].to_list())
        learned = by.get("learned", 0)
        reasons = Counter(r for d, r in zip(df["decided_by"].to_list(), df["fallback_reason"].to_list(),
                                            strict=True) if d != "learned")
        unlabelled = reasons.pop(None, 0)
        share = learned / n if n else 0.0
        what = (f"on (max_batch {args.coalesce_max_batch}, max_in_flight {in_flight}, "
                f"{'own I/O thread' if setting == 'thread' else 'router loop'})"
                if setting not in ("off", "inprocess") else "off (one /route call per request)")
        print("-- in-process policy (no coalescing)" if setting == "inprocess" else f"-- coalescing {what}")
        print(f"client requests: ok {ok}, failed {sum(failed.values())} {dict(failed) or ''}; "
              f"throughput {ok / args.duration:.1f} req/s")
        print(f"decision-log rows: {n}; decided_by: {dict(by)}")
        print(f"learned share: {share:.4%} (target >= {args.target:.1%}); fallbacks by reason: {dict(reasons)}; "
              f"fallbacks without a label: {unlabelled}")
        if (setting, in_flight) == settings[0]:
            passed = share >= args.target and unlabelled == 0
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

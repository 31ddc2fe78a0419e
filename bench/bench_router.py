"""Router benchmark: 100 concurrent clients through the live router, one backend killed mid-run.

Setup (all on 127.0.0.1, each server in its own process):

* two replay backends (``router-rl replay-backend``, simulated fleet, latencies x ``--time-scale``);
  the router sends SIMPLE/MODERATE work to ``rnj-1:8b`` on backend A and falls back to
  ``qwen2.5-coder:7b`` on backend B;
* the router (``router-rl router serve``) with auth off and the decision log on.

Phases, same client code and concurrency:

1. baseline: clients call backend B directly for ``--duration`` seconds;
2. router: clients call the router for ``--duration`` seconds; backend A is SIGKILLed half way.

Printed: failed client requests (target 0), throughput, client latency p50/p99 of both phases
and their ratio, and the router overhead (router time minus backend call time, from the
``x-router-overhead-ms`` header) p50 (target <= 1 ms) and p99 (target <= 5 ms) under the 100
clients, plus the same overhead from a short single-client phase (CPU contention excluded).

Usage::

    .venv/bin/python bench/bench_router.py --duration 30 --clients 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import yaml

PROMPTS = (
    "Write a unit test for the getter of the Account class.",
    "Explain why this assertion fails: assert total == 3",
    "Generate test data for a date parser with leap years.",
    "List edge cases for an email validator.",
    "Summarise the failing tests in this CI log.",
)
MODEL_A = "rnj-1:8b"
MODEL_B = "qwen2.5-coder:7b"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout_s}s")


@dataclass
class PhaseResult:
    """Client-side measurements of one phase."""

    name: str
    duration_s: float
    ok: int = 0
    failed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.ok / self.duration_s

    def pct(self, values: list[float], q: float) -> float:
        """Percentile ``q`` (NaN when empty)."""
        return float(np.percentile(values, q)) if values else float("nan")


async def _phase(
    name: str, url: str, model: str, *, clients: int, duration_s: float, on_half: object = None,
    progress: object = None,
) -> PhaseResult:
    res = PhaseResult(name, duration_s)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    t_end = time.monotonic() + duration_s
    half = time.monotonic() + duration_s / 2

    async def client(k: int, http: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < t_end:
            body = {"model": model, "messages": [{"role": "user", "content": PROMPTS[(k + i) % len(PROMPTS)]}],
                    "max_tokens": 256}
            i += 1
            t = time.perf_counter()
            try:
                r = await http.post(url, json=body, headers={"x-agent-id": f"bench-{k % 10}"})
            except httpx.HTTPError as e:
                res.failed += 1
                res.errors[type(e).__name__] = res.errors.get(type(e).__name__, 0) + 1
                continue
            dt = time.perf_counter() - t
            if r.status_code != 200:
                res.failed += 1
                key = f"HTTP {r.status_code}"
                res.errors[key] = res.errors.get(key, 0) + 1
                continue
            res.ok += 1
            res.latencies_s.append(dt)
            served = r.headers.get("x-router-model") or model
            res.served[served] = res.served.get(served, 0) + 1
            if "x-router-overhead-ms" in r.headers:
                res.overhead_ms.append(float(r.headers["x-router-overhead-ms"]))

    async def ticker() -> None:
        fired = False
        while time.monotonic() < t_end:
            await asyncio.sleep(0.2)
            if progress is not None:
                progress(min(1.0, 1 - (t_end - time.monotonic()) / duration_s))  # type: ignore[operator]
            if on_half is not None and not fired and time.monotonic() >= half:
                fired = True
                on_half()  # type: ignore[operator]

    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        await asyncio.gather(ticker(), *(client(k, http) for k in range(clients)))
    return res


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per phase (default 30)")
    ap.add_argument("--clients", type=int, default=100, help="concurrent clients (default 100)")
    ap.add_argument("--time-scale", type=float, default=0.005, help="replay latency multiplier (default 0.005)")
    ap.add_argument("--no-decision-log", action="store_true", help="run the router without its decision log")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if not 1 <= args.duration <= 600:
        ap.error("--duration must be in [1, 600] seconds")

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    py = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    try:
        pa, pb, pr = _free_port(), _free_port(), _free_port()
        for port in (pa, pb):
            procs.append(subprocess.Popen(
                [py, "-m", "router_rl", "replay-backend", "--port", str(port), "--time-scale", str(args.time_scale),
                 "--seed", "0", "--n-tasks", "200"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        backend_a, backend_b = procs
        cfg = {
            "providers": [
                {"name": "local-a", "kind": "openai_compatible", "base_url": f"http://127.0.0.1:{pa}",
                 "location": "local", "max_retries": 0, "timeout_s": 10, "max_connections": 256,
                 "models": [MODEL_A]},
                {"name": "local-b", "kind": "openai_compatible", "base_url": f"http://127.0.0.1:{pb}",
                 "location": "local", "max_retries": 0, "timeout_s": 10, "max_connections": 256,
                 "models": [MODEL_B]},
            ],
            "tiers": {"simple": MODEL_A, "moderate": MODEL_A, "complex": MODEL_B, "very_complex": MODEL_B},
            "breaker": {"consecutive_failures": 5, "reset_timeout_s": 5.0},
            "logging": {"decision_log_dir": None if args.no_decision_log else str(tmp / "decision_log"),
                        "batch_size": 1024},
            "server": {"auth": {"enabled": False}},
        }
        (tmp / "router.yaml").write_text(yaml.safe_dump(cfg))
        procs.append(subprocess.Popen(
            [py, "-m", "router_rl", "router", "serve", "--config", str(tmp / "router.yaml"), "--port", str(pr)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        ))
        router = procs[2]
        for port, p in ((pa, backend_a), (pb, backend_b)):
            _wait_http(f"http://127.0.0.1:{port}/health", p)
        _wait_http(f"http://127.0.0.1:{pr}/health", router)

        def kill_a() -> None:
            backend_a.send_signal(signal.SIGKILL)
            console.print(f"[yellow]t={args.duration / 2:.0f}s: backend A (port {pa}) SIGKILLed[/]")

        with Progress(console=console, transient=True) as prog:
            t1 = prog.add_task("baseline: direct to backend B", total=1.0)
            base = asyncio.run(_phase(
                "direct", f"http://127.0.0.1:{pb}/v1/chat/completions", MODEL_B, clients=args.clients,
                duration_s=args.duration, progress=lambda f: prog.update(t1, completed=f),
            ))
            t2 = prog.add_task("router (backend A killed half way)", total=1.0)
            routed = asyncio.run(_phase(
                "router", f"http://127.0.0.1:{pr}/v1/chat/completions", "router-rl/auto", clients=args.clients,
                duration_s=args.duration, on_half=kill_a, progress=lambda f: prog.update(t2, completed=f),
            ))
            t3 = prog.add_task("router, 1 client (uncontended overhead)", total=1.0)
            single = asyncio.run(_phase(
                "router-1", f"http://127.0.0.1:{pr}/v1/chat/completions", "router-rl/auto", clients=1,
                duration_s=min(5.0, args.duration), progress=lambda f: prog.update(t3, completed=f),
            ))
        health = httpx.get(f"http://127.0.0.1:{pr}/health", timeout=5).json()
        metrics = httpx.get(f"http://127.0.0.1:{pr}/metrics", timeout=5).text
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    fallbacks = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("router_rl_fallbacks_total{"))
    table = Table(title=f"bench_router: {args.clients} clients x {args.duration:g}s per phase")
    table.add_column("figure")
    table.add_column("direct (baseline)", justify="right")
    table.add_column("via router", justify="right")
    table.add_column("router / direct", justify="right")
    table.add_row("failed client requests", str(base.failed), str(routed.failed), "")
    table.add_row("ok requests", str(base.ok), str(routed.ok), "")
    table.add_row("throughput (req/s)", f"{base.throughput:.1f}", f"{routed.throughput:.1f}",
                  f"{routed.throughput / base.throughput:.3f}" if base.throughput else "n/a")
    for q in (50, 99):
        b, r = base.pct(base.latencies_s, q) * 1000, routed.pct(routed.latencies_s, q) * 1000
        table.add_row(f"client latency p{q} (ms)", f"{b:.2f}", f"{r:.2f}", f"{r / b:.3f}")
    table.add_row("router overhead p50 (ms, target <= 1)", "", f"{routed.pct(routed.overhead_ms, 50):.3f}", "")
    table.add_row("router overhead p99 (ms, target <= 5)", "", f"{routed.pct(routed.overhead_ms, 99):.3f}", "")
    table.add_row("router overhead p50 / p99 (ms), 1 client", "",
                  f"{single.pct(single.overhead_ms, 50):.3f} / {single.pct(single.overhead_ms, 99):.3f}", "")
    console.print(table)
    console.print(f"served by: {routed.served}; client errors: {routed.errors or 'none'}; "
                  f"router fallbacks: {fallbacks:.0f}; breakers at end: {health.get('breakers')}")
    figures = {
        "clients": args.clients,
        "duration_s": args.duration,
        "failed_direct": base.failed,
        "failed_router": routed.failed,
        "throughput_direct": base.throughput,
        "throughput_router": routed.throughput,
        "throughput_ratio": routed.throughput / base.throughput if base.throughput else None,
        "latency_p50_ms_direct": base.pct(base.latencies_s, 50) * 1000,
        "latency_p50_ms_router": routed.pct(routed.latencies_s, 50) * 1000,
        "latency_p99_ms_direct": base.pct(base.latencies_s, 99) * 1000,
        "latency_p99_ms_router": routed.pct(routed.latencies_s, 99) * 1000,
        "overhead_p50_ms": routed.pct(routed.overhead_ms, 50),
        "overhead_p99_ms": routed.pct(routed.overhead_ms, 99),
        "overhead_p50_ms_1_client": single.pct(single.overhead_ms, 50),
        "overhead_p99_ms_1_client": single.pct(single.overhead_ms, 99),
        "failed_router_1_client": single.failed,
        "served": routed.served,
        "fallbacks": fallbacks,
    }
    print(json.dumps(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if routed.failed == 0 and single.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

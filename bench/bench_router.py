"""Router benchmark: 100 concurrent clients through the live router, one backend SIGKILLed, one stalled.

Setup (all on 127.0.0.1, each server in its own process):

* replay backends (``router-rl replay-backend``, simulated fleet): A serves ``rnj-1:8b``, B
  ``qwen2.5-coder:7b``, C ``devstral-small-2:24b`` (latencies x ``--time-scale``), and Z, a
  zero-latency backend (``--time-scale 0``) for the added-latency comparison;
* C is *stalled*: a fault rule makes it accept every request and never answer (60 s);
* the router (``router-rl router serve``) with auth off, the decision log on, ``hedge_after_s``
  (``--hedge-after``): SIMPLE work goes to C (stalled), MODERATE to A (SIGKILLed half way),
  the rest to B; the fallback order is B, A, C.

Phases, same client code (`--load-client`: aiohttp by default, httpx as before 2026-12-02):

1. baseline: ``--clients`` clients call backend B directly for ``--duration`` seconds;
2. router: ``--clients`` clients call the router for ``--duration`` seconds; A is SIGKILLed half way;
3. true added latency, same run: direct to Z vs through the router to Z's model (explicit
   model, so the router screens, decides, logs and relays but never fails over), at 1 client and
   at ``--clients`` clients, ``--zero-duration`` seconds each. The router's added latency is
   (router - direct) client latency; the ``x-router-overhead-ms`` header (time inside the
   routing engine minus provider calls; it leaves out HTTP parsing, JSON and the extra hop) is
   printed next to it, and so are the CPU milliseconds per request of the router and backend Z
   processes during the router-to-Z phases (Linux ``/proc``).

Printed: failed client requests (target 0), throughput, client latency p50/p95/p99 of the
phases and their ratio, the true added latency and the header's figure, who served, hedges and
fallbacks.

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
from typing import Any

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
MODEL_C = "devstral-small-2:24b"  # its backend stalls
MODEL_Z = "qwen2.5-coder:32b"  # zero-latency backend


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
    progress: object = None, load_client: str = "aiohttp",
) -> PhaseResult:
    res = PhaseResult(name, duration_s)
    t_end = time.monotonic() + duration_s
    half = time.monotonic() + duration_s / 2

    def record(status: int, headers: Any, dt: float) -> None:
        if status != 200:
            res.failed += 1
            key = f"HTTP {status}"
            res.errors[key] = res.errors.get(key, 0) + 1
            return
        res.ok += 1
        res.latencies_s.append(dt)
        served = headers.get("x-router-model") or model
        res.served[served] = res.served.get(served, 0) + 1
        if "x-router-overhead-ms" in headers:
            res.overhead_ms.append(float(headers["x-router-overhead-ms"]))

    def failed(e: Exception) -> None:
        res.failed += 1
        res.errors[type(e).__name__] = res.errors.get(type(e).__name__, 0) + 1

    def body(k: int, i: int) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": PROMPTS[(k + i) % len(PROMPTS)]}],
                "max_tokens": 256}

    async def httpx_client(k: int, http: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < t_end:
            b = body(k, i)
            i += 1
            t = time.perf_counter()
            try:
                r = await http.post(url, json=b, headers={"x-agent-id": f"bench-{k % 10}"})
            except httpx.HTTPError as e:
                failed(e)
                continue
            record(r.status_code, r.headers, time.perf_counter() - t)

    async def aiohttp_client(k: int, http: Any) -> None:
        import aiohttp

        i = 0
        while time.monotonic() < t_end:
            b = body(k, i)
            i += 1
            t = time.perf_counter()
            try:
                async with http.post(url, json=b, headers={"x-agent-id": f"bench-{k % 10}"}) as r:
                    await r.read()
                    status, headers = r.status, r.headers
            except (TimeoutError, aiohttp.ClientError) as e:
                failed(e)
                continue
            record(status, headers, time.perf_counter() - t)

    async def ticker() -> None:
        fired = False
        while time.monotonic() < t_end:
            await asyncio.sleep(0.2)
            if progress is not None:
                progress(min(1.0, 1 - (t_end - time.monotonic()) / duration_s))  # type: ignore[operator]
            if on_half is not None and not fired and time.monotonic() >= half:
                fired = True
                on_half()  # type: ignore[operator]

    if load_client == "httpx":
        # the pool retires idle connections (2 s) before any server closes them (uvicorn replay backends: 5 s)
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
            await asyncio.gather(ticker(), *(httpx_client(k, http) for k in range(clients)))
        return res
    import aiohttp

    conn = aiohttp.TCPConnector(limit=clients, keepalive_timeout=2.0)  # idle expiry below the servers' 5 s
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30.0)) as http:
        await asyncio.gather(ticker(), *(aiohttp_client(k, http) for k in range(clients)))
    return res


def _spawn_backend(py: str, env: dict[str, str], port: int, time_scale: float,
                   faults: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [py, "-m", "router_rl", "replay-backend", "--port", str(port), "--time-scale", str(time_scale),
           "--seed", "0", "--n-tasks", "200"]
    if faults is not None:
        cmd += ["--faults", str(faults)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(res: PhaseResult, q: float) -> float:
    return res.pct(res.latencies_s, q) * 1000


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--engine", "llamacpp"]:  # the real-engine mode lives in bench_engine.py
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_engine", Path(__file__).with_name("bench_engine.py"))
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.main(argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of phases 1 and 2 (default 30)")
    ap.add_argument("--clients", type=int, default=100, help="concurrent clients (default 100)")
    ap.add_argument("--time-scale", type=float, default=0.005, help="replay latency multiplier (default 0.005)")
    ap.add_argument("--zero-duration", type=float, default=5.0, help="seconds of each added-latency phase")
    ap.add_argument("--hedge-after", type=float, default=0.5, help="router fallback.hedge_after_s (default 0.5)")
    ap.add_argument("--attempt-timeout", type=float, default=4.0,
                    help="router fallback.latency_threshold_s: local attempt / first-token deadline (default 4)")
    ap.add_argument("--no-decision-log", action="store_true", help="run the router without its decision log")
    ap.add_argument("--load-client", choices=("aiohttp", "httpx"), default="aiohttp",
                    help="the bench's own clients, every phase alike (default aiohttp: the cheaper load generator, "
                         "so the shared cores go to the servers; httpx: as before 2026-12-02)")
    ap.add_argument("--upstream-client", choices=("aiohttp", "httpx"), default="aiohttp",
                    help="router upstream_client: the providers' connection pool (default aiohttp, the router's "
                         "default; httpx: httpx's own pool, as before 2026-12-02)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if not 1 <= args.duration <= 600:
        ap.error("--duration must be in [1, 600] seconds")
    if not 1 <= args.zero_duration <= 600:
        ap.error("--zero-duration must be in [1, 600] seconds")

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    load0 = list(os.getloadavg())
    py = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    stall = tmp / "stall.json"
    stall.write_text(json.dumps([{"kind": "timeout", "model": MODEL_C, "delay_s": 60}]))
    try:
        pa, pb, pc, pz, pr = (_free_port() for _ in range(5))
        backend_a = _spawn_backend(py, env, pa, args.time_scale)
        backend_b = _spawn_backend(py, env, pb, args.time_scale)
        backend_c = _spawn_backend(py, env, pc, args.time_scale, stall)
        backend_z = _spawn_backend(py, env, pz, 0.0)
        procs += [backend_a, backend_b, backend_c, backend_z]

        def provider(name: str, port: int, model: str) -> dict[str, object]:
            return {"name": name, "kind": "openai_compatible", "base_url": f"http://127.0.0.1:{port}",
                    "location": "local", "max_retries": 0, "timeout_s": 10, "max_connections": 256,
                    "models": [model]}

        cfg = {
            "providers": [provider("local-a", pa, MODEL_A), provider("local-b", pb, MODEL_B),
                          provider("local-c", pc, MODEL_C), provider("local-z", pz, MODEL_Z)],
            "tiers": {"simple": MODEL_C, "moderate": MODEL_A, "complex": MODEL_B, "very_complex": MODEL_B},
            "quality_order": [MODEL_B, MODEL_A, MODEL_C, MODEL_Z],
            "breaker": {"consecutive_failures": 5, "reset_timeout_s": 5.0},
            "fallback": {"hedge_after_s": args.hedge_after, "latency_threshold_s": args.attempt_timeout},
            "logging": {"decision_log_dir": None if args.no_decision_log else str(tmp / "decision_log"),
                        "batch_size": 1024},
            "server": {"auth": {"enabled": False, "admin_enabled": False}},
            "upstream_client": args.upstream_client,
        }
        (tmp / "router.yaml").write_text(yaml.safe_dump(cfg))
        router = subprocess.Popen(
            [py, "-m", "router_rl", "router", "serve", "--config", str(tmp / "router.yaml"), "--port", str(pr)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        procs.append(router)
        for port, p in ((pa, backend_a), (pb, backend_b), (pc, backend_c), (pz, backend_z)):
            _wait_http(f"http://127.0.0.1:{port}/health", p)
        _wait_http(f"http://127.0.0.1:{pr}/health", router)

        def kill_a() -> None:
            backend_a.send_signal(signal.SIGKILL)
            console.print(f"[yellow]t={args.duration / 2:.0f}s: backend A (port {pa}) SIGKILLed[/]")

        chat = "/v1/chat/completions"
        with Progress(console=console, transient=True) as prog:
            def phase(title: str, url: str, model: str, clients: int, duration: float,
                      on_half: object = None) -> PhaseResult:
                task = prog.add_task(title, total=1.0)
                return asyncio.run(_phase(title, url, model, clients=clients, duration_s=duration, on_half=on_half,
                                          progress=lambda f: prog.update(task, completed=f),
                                          load_client=args.load_client))

            base = phase("direct to backend B", f"http://127.0.0.1:{pb}{chat}", MODEL_B, args.clients, args.duration)
            routed = phase("router (A SIGKILLed half way, C stalled)", f"http://127.0.0.1:{pr}{chat}",
                           "router-rl/auto", args.clients, args.duration, kill_a)
            zero: dict[str, PhaseResult] = {}
            cpu: dict[str, float] = {}
            for n in (1, args.clients):
                zero[f"direct-{n}"] = phase(f"direct to zero-latency Z, {n} client(s)", f"http://127.0.0.1:{pz}{chat}",
                                            MODEL_Z, n, args.zero_duration)
                c_router, c_z = _cpu_s(router.pid), _cpu_s(backend_z.pid)
                zero[f"router-{n}"] = phase(f"router to Z, {n} client(s)", f"http://127.0.0.1:{pr}{chat}",
                                            MODEL_Z, n, args.zero_duration)
                served_n = max(1, zero[f"router-{n}"].ok)
                cpu[f"router_cpu_ms_per_request_{n}"] = (_cpu_s(router.pid) - c_router) / served_n * 1000
                cpu[f"backend_cpu_ms_per_request_{n}"] = (_cpu_s(backend_z.pid) - c_z) / served_n * 1000
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

    def metric_sum(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))

    fallbacks = metric_sum("router_rl_fallbacks_total{")
    hedges = metric_sum("router_rl_hedged_attempts_total{")
    by_reason: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("router_rl_fallbacks_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            by_reason[reason] = by_reason.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    rows = None
    if not args.no_decision_log:
        from router_rl.traces.decision_log import read_decision_log

        rows = read_decision_log(tmp / "decision_log")
    table = Table(title=f"bench_router: {args.clients} clients x {args.duration:g}s (A SIGKILLed at half time, "
                        f"C stalled, hedge after {args.hedge_after:g}s)")
    table.add_column("figure")
    table.add_column("direct (baseline)", justify="right")
    table.add_column("via router", justify="right")
    table.add_column("router / direct", justify="right")
    table.add_row("failed client requests", str(base.failed), str(routed.failed), "")
    table.add_row("ok requests", str(base.ok), str(routed.ok), "")
    table.add_row("throughput (req/s)", f"{base.throughput:.1f}", f"{routed.throughput:.1f}",
                  f"{routed.throughput / base.throughput:.3f}" if base.throughput else "n/a")
    for q in (50, 95, 99):
        b, r = _ms(base, q), _ms(routed, q)
        table.add_row(f"client latency p{q} (ms)", f"{b:.2f}", f"{r:.2f}", f"{r / b:.3f}")
    added: dict[str, float] = {}
    for n in (1, args.clients):
        d, r = zero[f"direct-{n}"], zero[f"router-{n}"]
        table.add_row(f"zero-latency backend, {n} client(s): failed", str(d.failed), str(r.failed), "")
        for q in (50, 99):
            added[f"added_p{q}_ms_{n}"] = _ms(r, q) - _ms(d, q)
            table.add_row(f"  client latency p{q} (ms)", f"{_ms(d, q):.2f}", f"{_ms(r, q):.2f}",
                          f"+{added[f'added_p{q}_ms_{n}']:.2f} ms")
        added[f"header_p50_ms_{n}"] = r.pct(r.overhead_ms, 50)
        table.add_row("  x-router-overhead-ms p50 (header)", "", f"{r.pct(r.overhead_ms, 50):.3f}",
                      f"x{added[f'added_p50_ms_{n}'] / max(r.pct(r.overhead_ms, 50), 1e-9):.1f} = true / header")
        table.add_row("  CPU ms / request: backend Z, router", f"{cpu[f'backend_cpu_ms_per_request_{n}']:.2f}",
                      f"{cpu[f'router_cpu_ms_per_request_{n}']:.2f}", "")
    console.print(table)
    console.print(f"upstream_client: {args.upstream_client}; load client: {args.load_client}; load average 1/5/15 min: "
                  f"{'/'.join(f'{x:.2f}' for x in load0)} at start, "
                  f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())} at end")
    n_rows = rows.height if rows is not None else None
    console.print(f"served by (router phase): {routed.served}; client errors: {routed.errors or 'none'}; "
                  f"router fallbacks: {fallbacks:.0f} {by_reason}; hedged attempts: {hedges:.0f}; "
                  f"decision-log rows: {n_rows}; "
                  f"breakers at end: {health.get('breakers')}")
    all_router = [routed, zero["router-1"], zero[f"router-{args.clients}"]]
    figures = {
        "clients": args.clients,
        "duration_s": args.duration,
        "zero_duration_s": args.zero_duration,
        "hedge_after_s": args.hedge_after,
        "attempt_timeout_s": args.attempt_timeout,
        "upstream_client": args.upstream_client,
        "load_client": args.load_client,
        "load_avg_start": load0,
        "load_avg_end": list(os.getloadavg()),
        "failed_direct": base.failed,
        "failed_router": routed.failed,
        "failed_router_zero": [r.failed for r in all_router[1:]],
        "errors_router": routed.errors,
        "throughput_direct": base.throughput,
        "throughput_router": routed.throughput,
        **{f"latency_p{q}_ms_{k}": _ms(v, q) for q in (50, 95, 99) for k, v in (("direct", base), ("router", routed))},
        **added,
        **cpu,
        "served": routed.served,
        "fallbacks": fallbacks,
        "fallbacks_by_reason": by_reason,
        "hedged_attempts": hedges,
        "decision_log_rows": n_rows,
        "client_requests_to_router": sum(r.ok + r.failed for r in all_router),
    }
    print(json.dumps(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(r.failed == 0 for r in all_router) else 1


if __name__ == "__main__":
    raise SystemExit(main())

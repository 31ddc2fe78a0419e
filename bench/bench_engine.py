"""Router overhead over a real llama.cpp engine: direct calls vs the same calls through the router.

One run builds the tiny offline model (router_rl.engines), starts ``python -m llama_cpp.server`` on a
loopback port and the router's HTTP server in front of it, then sends the same non-streaming chat
requests (greedy, ``max_tokens`` tokens) directly to the engine and through the router, at 1 and at
16 concurrent clients. It prints p50 / p99 latency of both and their difference (the router's true
added latency: HTTP parsing, screening, decision, the extra hop, logging), all measured in this run.

    python bench/bench_engine.py [--requests 200] [--max-tokens 8]

Also reachable as ``python bench/bench_router.py --engine llamacpp``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Args:
    """Command-line settings."""

    requests: int = 200
    max_tokens: int = 8
    concurrency: tuple[int, ...] = (1, 16)
    seed: int = 0


def parse_args(argv: list[str] | None = None) -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=Args.requests, help="requests per phase")
    p.add_argument("--max-tokens", type=int, default=Args.max_tokens)
    p.add_argument("--concurrency", type=int, nargs="+", default=list(Args.concurrency))
    p.add_argument("--seed", type=int, default=Args.seed)
    a = p.parse_args(argv)
    return Args(requests=a.requests, max_tokens=a.max_tokens, concurrency=tuple(a.concurrency), seed=a.seed)


async def _phase(url: str, headers: dict[str, str], n: int, conc: int, max_tokens: int) -> np.ndarray:
    import httpx

    lat: list[float] = []
    sem = asyncio.Semaphore(conc)
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=headers) as c:

        async def one(i: int) -> None:
            body = {"model": "tiny", "max_tokens": max_tokens, "temperature": 0.0,
                    "messages": [{"role": "user", "content": f"Write pytest tests for parse_date() #{i % 7}"}]}
            async with sem:
                t = time.perf_counter()
                r = await c.post(url, json=body)
                r.raise_for_status()
                lat.append(time.perf_counter() - t)

        await asyncio.gather(*(one(i) for i in range(n)))
    return np.asarray(lat)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from router_rl.engines.llamacpp import EngineModel, LlamaCppServer
    from router_rl.engines.tiny import build_tiny_engine_model
    from router_rl.router.config import parse_config
    from router_rl.router.engine import HybridRouter
    from router_rl.router.server import RouterServer, build_server_app

    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    model = build_tiny_engine_model(tmp / "model", seed=args.seed)
    token = "bench-token"
    os.environ["ROUTER_RL_API_TOKENS"] = token
    os.environ["ROUTER_RL_ADMIN_TOKENS"] = token + "-admin"
    with LlamaCppServer([EngineModel("tiny", model.gguf, n_ctx=model.context_length)]) as eng:
        cfg = parse_config({
            "providers": [{"name": "llamacpp", "kind": "openai_compatible", "base_url": eng.base_url,
                           "location": "local", "gpu_usd_per_hour": 1.0, "max_retries": 0, "timeout_s": 60,
                           "models": [{"model": "tiny", "context_window": model.context_length}]}],
            "tiers": {"simple": "tiny", "moderate": "tiny", "complex": "tiny", "very_complex": "tiny"},
            "fallback": {"emergency_cloud": False, "latency_threshold_s": 60},
            "logging": {"decision_log_dir": str(tmp / "log"), "flush_interval_s": 1.0},
        })
        router = HybridRouter.from_config(cfg)
        with RouterServer(build_server_app(router)) as srv:
            print(f"# bench_engine {time.strftime('%Y-%m-%d %H:%M')} UTC; load average {os.getloadavg()[0]:.1f}; "
                  f"{args.requests} requests per phase, max_tokens={args.max_tokens}, llama.cpp tiny model")
            print(f"{'clients':>7} {'direct p50':>11} {'direct p99':>11} {'router p50':>11} {'router p99':>11} "
                  f"{'added p50':>10} {'added p99':>10}  (ms)")
            for conc in args.concurrency:
                phases = {}
                for name, url, hdr in (("direct", f"{eng.base_url}/chat/completions", {}),
                                       ("router", f"{srv.base_url}/v1/chat/completions",
                                        {"authorization": f"Bearer {token}"})):
                    asyncio.run(_phase(url, hdr, min(20, args.requests), conc, args.max_tokens))  # warm-up
                    phases[name] = asyncio.run(_phase(url, hdr, args.requests, conc, args.max_tokens)) * 1000
                d, r = phases["direct"], phases["router"]
                print(f"{conc:>7} {np.percentile(d, 50):>11.2f} {np.percentile(d, 99):>11.2f} "
                      f"{np.percentile(r, 50):>11.2f} {np.percentile(r, 99):>11.2f} "
                      f"{np.percentile(r, 50) - np.percentile(d, 50):>+10.2f} "
                      f"{np.percentile(r, 99) - np.percentile(d, 99):>+10.2f}")


if __name__ == "__main__":
    main()

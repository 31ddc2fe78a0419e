"""The HTTP floor: the same decision as the Ray Serve deployment, served by plain uvicorn + FastAPI.

``bench/bench_serving.py`` measures the Ray endpoint next to this one in the same run; the ratio
between them is what Ray Serve adds over the cheapest honest HTTP endpoint (one process, one
:class:`~router_rl.serve.engine.PolicyEngine`, the same protocol). No Ray is imported. Run::

    python -m router_rl.serve.floor --policy DIR --port 8001
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from router_rl.serve.protocol import HealthResponse, RouteRequest, RouteResponse


def make_floor_app(policy_path: str | Path) -> Any:
    """A FastAPI app with the deployment's ``POST /route`` and ``GET /health`` over one engine."""
    from fastapi import FastAPI, HTTPException

    from router_rl.serve.engine import PolicyEngine

    engine = PolicyEngine(policy_path)
    api = FastAPI(title="router-rl policy (floor)")

    @api.post("/route", response_model=RouteResponse)
    async def route(request: RouteRequest) -> RouteResponse:  # async, as the deployment (no thread hop)
        try:
            return engine.route(request)
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from e

    @api.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        return HealthResponse(ok=True, policy_version=engine.version, models=list(engine.models),
                              state=engine.state_spec)

    return api


def main(argv: list[str] | None = None) -> None:
    """Serve ``--policy`` on ``--host``:``--port`` until interrupted."""
    ap = argparse.ArgumentParser(description="router-rl policy endpoint without Ray (the HTTP floor)")
    ap.add_argument("--policy", type=Path, required=True, help="policy artifact folder")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args(argv)
    import uvicorn

    uvicorn.run(make_floor_app(args.policy), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()

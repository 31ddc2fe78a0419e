"""The loop's servers on 127.0.0.1: two replay backends (local and cloud models) and the router.

:class:`LoopServers` starts them, hands out the URLs and the bearer token, and stops exactly
what it started (in reverse order) when its ``with`` block ends, also on an error. The router is
an in-process :class:`~router_rl.router.server.RouterServer` (uvicorn in a thread) built from the
config :func:`router_config` writes: every model of the world behind one of the two backends,
the rule router (``balanced``, tiers derived from the catalog as the ``rules`` policy does) or a
learned policy, exploration on every strategy request, the decision log and feedback in the run
folder, the world's encoder as the log encoder.

Recorded errors of the matrix are replayed as answers of quality 0 (``replay_errors=False``), not
as HTTP errors: a failed call is then an outcome of the chosen model, so the truth of choosing a
model is exactly its matrix cell (no fallback chain to reproduce).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from router_rl.loop.world import LoopWorld
    from router_rl.replay.server import ReplayBackend, ReplayBackendServer
    from router_rl.router.server import RouterServer

#: Environment variables the loop's router reads its tokens and the cloud key from (set per run).
TOKENS_ENV = "ROUTER_RL_LOOP_TOKENS"
CLOUD_KEY_ENV = "ROUTER_RL_LOOP_CLOUD_KEY"


def rule_tiers(world: LoopWorld) -> dict[str, str]:
    """The ``balanced`` tiers: cheapest local for simple / moderate, priciest local for complex,
    best-quality cloud model for very complex (the ``rules`` policy's defaults)."""
    m = world.matrix
    local = m.is_local()
    cost = m.cost.mean(axis=0)
    qual = m.quality.mean(axis=0)
    li, ci = np.flatnonzero(local), np.flatnonzero(~local)
    small = m.models[int(li[np.argmin(cost[li])])]
    large = m.models[int(li[np.argmax(cost[li])])]
    cloud = m.models[int(ci[np.argmax(qual[ci])])]
    return {"simple": small, "moderate": small, "complex": large, "very_complex": cloud}


def router_config(
    world: LoopWorld,
    *,
    local_url: str,
    cloud_url: str,
    root: Path,
    epsilon: float,
    seed: int,
    registry: Path | None = None,
    rollback: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The router config (a dict for :func:`router_rl.router.config.parse_config`).

    Args:
        world: The world (models, catalog, encoder saved at ``root / "encoder.json"``).
        local_url / cloud_url: Base URLs of the two replay backends.
        root: Run folder: ``decisions/``, ``feedback/``, ``encoder.json``.
        epsilon: Exploration share on every strategy request.
        seed: The router's sampling seed.
        registry: A policy registry folder whose live version the router serves (strategy
            ``learned``, hot swaps through ``POST /admin/policy``); None = the ``balanced`` rules.
        rollback: ``learned.rollback`` settings (automatic rollback from the feedback windows).
        extra: Top-level entries merged over the result (e.g. the live registry settings).
    """
    cat = world.catalog
    local = [m for m in world.models if cat[m].location == "local"]
    cloud = [m for m in world.models if cat[m].location == "cloud"]
    cfg: dict[str, Any] = {
        "providers": [
            {"name": "local", "kind": "openai_compatible", "base_url": local_url, "location": "local",
             "max_retries": 0, "timeout_s": 30.0,
             "models": [{"model": m, "gpu_usd_per_hour": cat[m].gpu_usd_per_hour,
                         **({"tokens_per_s": cat[m].tokens_per_s} if cat[m].tokens_per_s else {})} for m in local]},
            {"name": "cloud", "kind": "openai_compatible", "base_url": cloud_url, "location": "cloud",
             "api_key_env": CLOUD_KEY_ENV, "max_retries": 0, "timeout_s": 30.0,
             "models": [{"model": m, "usd_per_m_input": cat[m].usd_per_m_input,
                         "usd_per_m_output": cat[m].usd_per_m_output} for m in cloud]},
        ],
        "tiers": rule_tiers(world),
        "strategy": "learned" if registry is not None else "balanced",
        "exploration": {"default": {"epsilon": epsilon}} if epsilon > 0 else {},
        "features": {"encoder_path": str(root / "encoder.json")},
        "logging": {"decision_log_dir": str(root / "decisions"), "flush_interval_s": 0.2},
        "feedback": {"enabled": True, "dir": str(root / "feedback")},
        "fallback": {"emergency_cloud": False},
        "server": {"auth": {"tokens_env": TOKENS_ENV, "admin_tokens_env": TOKENS_ENV}},
        "seed": seed,
    }
    if registry is not None:
        cfg["learned"] = {"registry": str(registry), "sample": True, "timeout_s": 5.0,
                          **({"rollback": rollback} if rollback else {})}
    for k, v in (extra or {}).items():
        cfg[k] = v
    return cfg


class LoopServers:
    """Replay backends + router on 127.0.0.1 for one loop run (a context manager).

    Args:
        world: The world to replay.
        root: Run folder (decision log, feedback, encoder, router configs).
        epsilon: Exploration share.
        seed: Seed of the router's sampling and the backends' fault draws.
        time_scale: Replay latency multiplier (0 = answer at once).
        registry: Policy registry the router serves (None: the ``balanced`` rules).
        rollback: The router's ``learned.rollback`` settings.
    """

    def __init__(self, world: LoopWorld, root: Path, *, epsilon: float, seed: int, time_scale: float = 0.0,
                 registry: Path | None = None, rollback: dict[str, Any] | None = None) -> None:
        self.world = world
        self.root = Path(root)
        self.epsilon = epsilon
        self.seed = seed
        self.time_scale = time_scale
        self.token = "loop-" + secrets.token_hex(16)
        self._cloud_key = "sk-loop-" + secrets.token_hex(16)
        self._env_before: dict[str, str | None] = {}
        self.local: ReplayBackendServer | None = None
        self.cloud: ReplayBackendServer | None = None
        self.router: RouterServer | None = None
        self.router_starts = 0
        self._registry: Path | None = registry
        self._rollback: dict[str, Any] | None = rollback

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> LoopServers:
        try:
            self.start(self._registry, self._rollback)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _backend(self, models: list[str], api_key: str | None) -> ReplayBackend:
        from router_rl.replay.server import ReplayBackend

        m = self.world.matrix.select_models(models)
        return ReplayBackend(m, time_scale=self.time_scale, seed=self.seed, api_key=api_key, replay_errors=False)

    def start(self, registry: Path | None = None, rollback: dict[str, Any] | None = None) -> None:
        """Start both backends and the router (the registry's live version, or the ``balanced`` rules)."""
        from router_rl.replay.server import ReplayBackendServer

        self.root.mkdir(parents=True, exist_ok=True)
        self.world.encoder.save(self.root / "encoder.json")
        for k, v in ((TOKENS_ENV, self.token), (CLOUD_KEY_ENV, self._cloud_key)):
            self._env_before.setdefault(k, os.environ.get(k))
            os.environ[k] = v
        cat = self.world.catalog
        local = [m for m in self.world.models if cat[m].location == "local"]
        cloud = [m for m in self.world.models if cat[m].location == "cloud"]
        self.local = ReplayBackendServer(self._backend(local, None)).start()
        self.cloud = ReplayBackendServer(self._backend(cloud, self._cloud_key)).start()
        self._registry, self._rollback = registry, rollback
        self.start_router()

    def start_router(self) -> None:
        """(Re)start the router on the same decision log and feedback folders."""
        import yaml

        from router_rl.router.config import parse_config
        from router_rl.router.engine import HybridRouter
        from router_rl.router.server import RouterServer, build_server_app

        assert self.local is not None and self.cloud is not None
        self.stop_router()
        cfg = router_config(self.world, local_url=self.local.base_url, cloud_url=self.cloud.base_url,
                            root=self.root, epsilon=self.epsilon, seed=self.seed, registry=self._registry,
                            rollback=self._rollback)
        self.router_starts += 1
        (self.root / f"router-{self.router_starts:02d}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        router = HybridRouter.from_config(parse_config(cfg))
        self.router = RouterServer(build_server_app(router))
        self.router.start()

    def stop_router(self) -> None:
        """Stop the router (flushes its decision log)."""
        if self.router is not None:
            self.router.stop()
            self.router = None

    def stop(self) -> None:
        """Stop everything this object started and restore the environment."""
        self.stop_router()
        for srv in (self.cloud, self.local):
            if srv is not None:
                srv.stop()
        self.cloud = self.local = None
        for k, v in self._env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._env_before.clear()

    # --- addresses -----------------------------------------------------------------------------------
    @property
    def router_url(self) -> str:
        """The router's base URL (``http://127.0.0.1:<port>``)."""
        if self.router is None:
            raise RuntimeError("LoopServers: the router is not running")
        return self.router.base_url

    def backend_of(self, model: str) -> ReplayBackendServer:
        """The backend server serving ``model``."""
        srv = self.local if self.world.catalog[model].location == "local" else self.cloud
        if srv is None:
            raise RuntimeError("LoopServers: the backends are not running")
        return srv

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call the router's admin API (``GET /admin/state``, ``POST /admin/policy``, ...); raise on non-200."""
        import httpx

        r = httpx.request(method, self.router_url + path, json=body, timeout=60,
                          headers={"authorization": f"Bearer {self.token}"})
        if r.status_code != 200:
            raise RuntimeError(f"router {method} {path}: {r.status_code} {r.text[:300]}")
        out: dict[str, Any] = r.json()
        return out

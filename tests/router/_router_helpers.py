"""Shared constants and helpers of the router tests (a unique module name: ``conftest`` is ambiguous)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from router_rl.replay.server import ReplayBackendServer
from router_rl.traces.catalog import ModelCatalog, ModelSpec

LOCAL_MODELS = ("small-local", "big-local")
CLOUD_MODELS = ("cloud-large",)
CLOUD_KEY_ENV = "ROUTER_RL_TEST_CLOUD_KEY"
CLOUD_KEY = "sk-test-SUPERSECRET-0123456789abcdef"
API_TOKEN = "tok-client-4f9a8b7c6d5e"
ADMIN_TOKEN = "tok-admin-1a2b3c4d5e6f"

SIMPLE_PROMPT = "Write a unit test for the getter."
#: scores VERY_COMPLEX with the fleet's complexity heuristic (keywords + code + length)
HARD_PROMPT = (
    "Review the architecture and refactor for concurrency: find the race condition and deadlock, "
    "check the distributed consensus, plan the migration and a security audit.\n```python\nx = 1\n```\n"
    + "context line\n" * 200
)
#: scores COMPLEX (two keyword groups, short)
COMPLEX_PROMPT = "Find the race condition in this distributed cache."
SENSITIVE_PROMPT = "Why does login fail? config: AWS key AKIAIOSFODNN7EXAMPLE and password = \"hunter2hunter2\""


def make_frame(models: tuple[str, ...], n_tasks: int = 20) -> pl.DataFrame:
    rows = []
    for t in range(n_tasks):
        for j, m in enumerate(models):
            rows.append(
                {
                    "task_id": f"t{t}",
                    "model": m,
                    "quality": 0.5 + 0.1 * j,
                    "cost_usd": 0.001,
                    "latency_s": 0.2,
                    "input_tokens": 40,
                    "output_tokens": 12,
                    "prompt": f"task {t}",
                }
            )
    return pl.DataFrame(rows)


def save_random_policy(directory: Path, models: tuple[str, ...], weights: list[float]) -> Path:
    """A RandomPolicy artifact with a FeatureEncoder fitted on two tiny tasks, saved to ``directory``."""
    from router_rl.features import FeatureEncoder
    from router_rl.policies.baselines import RandomPolicy

    tasks = pl.DataFrame({"task_id": ["a", "b"], "prompt": ["x", "find the race"], "agent_type": ["gen", "explorer"],
                          "category": ["unit", "bug"]})
    RandomPolicy(models, weights=weights).attach_encoder(FeatureEncoder().fit(tasks)).save(directory)
    return directory


def make_catalog(models: tuple[str, ...], provider: str, location: str) -> ModelCatalog:
    return ModelCatalog([ModelSpec(m, provider, location) for m in models])


def router_config(local_url: str, cloud_url: str, **overrides: Any) -> dict[str, Any]:
    """A router config dict over the two backends (deep-merged ``overrides``)."""
    cfg: dict[str, Any] = {
        "providers": [
            {
                "name": "local",
                "kind": "openai_compatible",
                "base_url": local_url,
                "location": "local",
                "gpu_usd_per_hour": 1.0,
                "max_retries": 0,
                "timeout_s": 5.0,
                "models": [
                    {"model": "small-local", "tokens_per_s": 100.0},
                    {"model": "big-local", "tokens_per_s": 30.0},
                ],
            },
            {
                "name": "cloud",
                "kind": "openai_compatible",
                "base_url": cloud_url,
                "location": "cloud",
                "api_key_env": CLOUD_KEY_ENV,
                "max_retries": 0,
                "timeout_s": 5.0,
                "models": [{"model": "cloud-large", "usd_per_m_input": 3.0, "usd_per_m_output": 15.0}],
            },
        ],
        "tiers": {"simple": "small-local", "moderate": "small-local", "complex": "big-local",
                  "very_complex": "cloud-large"},
        "breaker": {"consecutive_failures": 3, "window": 10, "min_calls": 5, "reset_timeout_s": 30.0},
        "fallback": {"latency_threshold_s": 2.0},
    }
    return _merge(cfg, overrides)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def by_model(srv: ReplayBackendServer) -> dict[str, int]:
    """Requests the backend received, by model."""
    return dict(srv.backend.stats()["by_model"])

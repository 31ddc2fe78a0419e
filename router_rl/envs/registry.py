"""Gymnasium registration of every spec in ``envs/`` and the :func:`make` entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

from router_rl.envs.spec import EnvSpec, list_spec_files, load_spec

ENTRY_POINT = "router_rl.envs.registry:make_from_spec"


def _build(spec: EnvSpec, encoder: Any | None = None) -> gym.Env:
    from router_rl.envs.bandit import RoutingBandit
    from router_rl.envs.budgeted import BudgetedRouting
    from router_rl.envs.data import load_env_data
    from router_rl.envs.outage import fit_llmperf_rates

    data = load_env_data(spec, encoder=encoder)
    tables = data.tables(spec.split.name)
    if spec.kind == "bandit":
        return RoutingBandit.from_tables(tables, horizon=spec.horizon, episode=spec.episode, obs_clip=spec.obs_clip)
    fitted = None
    if spec.outage.enabled and spec.outage.source == "llmperf":
        from router_rl.core.paths import require_datasets_dir

        fitted = fit_llmperf_rates(require_datasets_dir(spec.outage.llmperf_path))
    assert spec.budget is not None
    day_mix = None
    if spec.day_mix is not None:
        from router_rl.envs.tables import DayMix

        day_mix = DayMix.from_tasks(data.split(spec.split.name).tasks, spec.day_mix.column,
                                    spec.day_mix.concentration, source=spec.name)
    return BudgetedRouting(
        tables,
        spec.budget,
        outage=spec.outage,
        fallback=spec.fallback,
        horizon=spec.horizon,
        episode=spec.episode,
        obs_clip=spec.obs_clip,
        fitted_rates=fitted,
        day_mix=day_mix,
    )


def make_from_spec(spec: EnvSpec | str | Path, encoder: Any | None = None, **overrides: Any) -> gym.Env:
    """Gymnasium entry point: build the environment of ``spec`` (a spec, path or name).

    Keyword overrides replace spec fields (``split="test"``, ``horizon=64``,
    ``reward={"cost_weight": 0.5}``); ``encoder=`` reuses an already fitted encoder.
    """
    if not isinstance(spec, EnvSpec):
        spec = load_spec(spec)
    if overrides:
        spec = spec.with_overrides(**overrides)
    return _build(spec, encoder)


def make(spec_path_or_name: EnvSpec | str | Path, **overrides: Any) -> gym.Env:
    """Build an environment from a spec file path, a spec name or a Gymnasium id.

    Unlike ``gymnasium.make`` this returns the bare environment (no wrappers).

    Example:
        ``make("sim-bandit", split="test")``
    """
    return make_from_spec(spec_path_or_name, **overrides)


def register_envs(directory: Path | None = None) -> list[str]:
    """Register every spec file of ``directory`` (default ``envs/``) as ``router_rl/<name>-v<k>``.

    Only the spec files are read (no data is loaded). Registering again is a no-op for ids
    already registered. Returns the ids.
    """
    ids: list[str] = []
    for path in list_spec_files(directory):
        spec = load_spec(path)
        env_id = spec.env_id
        ids.append(env_id)
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=ENTRY_POINT,
            kwargs={"spec": str(path)},
            disable_env_checker=False,
        )
    return ids

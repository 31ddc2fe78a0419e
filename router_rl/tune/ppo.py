"""Ray Tune search over :class:`~router_rl.policies.ppo.config.PPOConfig` (the PPO refinement).

One LightGBM base (fitted once on the train split with the base seed, as :func:`train_ppo`
does) is shared by every trial through Ray's object store. Each trial warm-starts a
:class:`~router_rl.policies.ppo.PPORouter` from it with its own seed, trains on train-split days in
``rungs`` equal chunks of whole PPO rollouts, and after each chunk reports the mean day reward
(``val_reward``, the env spec's reward) of greedy decisions on ``val_days`` days of the
**validation** split, the same days for every trial (common random numbers); test days are never
touched. ASHA stops trials that fall behind at a chunk.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from router_rl.core.errors import ConfigError
from router_rl.tune.runner import TuneOutcome, TuneSettings, run_trials
from router_rl.tune.space import Dimension, SearchSpaceError, parse_space, sample_trials

if TYPE_CHECKING:
    from router_rl.envs.spec import EnvSpec
    from router_rl.policies.base import RoutingPolicy

#: Metrics a PPO search can rank by (validation days; reward and quality maximised).
PPO_METRICS = ("val_reward", "val_quality")

#: The default search (``router-rl tune ppo`` without ``--space``).
DEFAULT_PPO_SPACE = (
    "learning_rate=loguniform:0.0001:0.003",
    "ent_coef=uniform:0.0:0.02",
    "clip_range=uniform:0.1:0.3",
    "prior_temperature=loguniform:0.005:0.1",
    "budget_jitter=uniform:0.0:0.7",
)

#: Seed offset of the validation days (apart from the held-out test days of ``train_ppo``).
VAL_SEED_OFFSET = 2_000_000


def ppo_fields() -> tuple[str, ...]:
    """Searchable fields: every :class:`PPOConfig` field."""
    from router_rl.policies.ppo.config import PPOConfig

    return tuple(PPOConfig.model_fields)


def parse_ppo_space(items: list[str] | tuple[str, ...]) -> dict[str, Dimension]:
    """Parse ``--space`` items for PPO (``DEFAULT_PPO_SPACE`` when empty)."""
    return parse_space(list(items) or list(DEFAULT_PPO_SPACE), fields=ppo_fields())


def rollout_chunks(config: Any, rungs: int) -> list[int]:
    """Timesteps per rung: whole rollouts (``n_steps · n_envs``), ``total_timesteps`` rounded up.

    Raises:
        SearchSpaceError: fewer rollouts than rungs.
    """
    per = int(config.n_steps) * int(config.n_envs)
    rollouts = math.ceil(int(config.total_timesteps) / per)
    if rollouts < rungs:
        raise SearchSpaceError(f"total_timesteps: {config.total_timesteps} steps are {rollouts} rollout(s) of {per}, "
                               f"fewer than the {rungs} rungs; raise the timesteps or lower the rungs")
    base, extra = divmod(rollouts, rungs)
    return [(base + (1 if k < extra else 0)) * per for k in range(rungs)]


def ppo_trainable(
    config: dict[str, Any],
    *,
    spec: EnvSpec,
    base: RoutingPolicy,
    rungs: int,
    val_days: int,
    val_seed: int,
) -> None:
    """One trial (run by Ray Tune): PPO in ``rungs`` chunks, each followed by the validation days."""
    from ray import tune

    from router_rl.envs import load_env_data, make_from_spec
    from router_rl.envs.budgeted import evaluate_days
    from router_rl.policies.ppo import PPOConfig, PPORouter

    trial = config["trial"]
    cfg = PPOConfig.from_dict(trial["config"])
    data = load_env_data(spec, encoder=base.encoder)
    router = PPORouter.from_base(base, config=cfg)
    router.warm_start(functools.partial(make_from_spec, spec, encoder=data.encoder, split="train"),
                      seed=int(trial["seed"]))
    val_env = make_from_spec(spec, encoder=data.encoder, split="val")
    for k, steps in enumerate(rollout_chunks(cfg, rungs)):
        router.learn(steps)
        m = evaluate_days(val_env, lambda o: router.action_distribution(o).argmax(1), episodes=val_days, seed=val_seed)
        tune.report({f"val_{key}": float(v) for key, v in m.items()}
                    | {"rung": k + 1, "timesteps": int(router.model.num_timesteps), "trial_index": int(trial["index"])})


def tune_ppo(
    spec: EnvSpec,
    *,
    space: dict[str, Dimension],
    fixed: dict[str, Any] | None = None,
    metric: str = "val_reward",
    lgbm_rounds: int = 60,
    val_days: int = 16,
    settings: TuneSettings | None = None,
) -> TuneOutcome:
    """Search PPO settings on Ray Tune (ASHA over timestep chunks), scored on validation days.

    Args:
        spec: A ``budgeted`` env spec with a validation split (overrides applied).
        space: Searched fields (:func:`parse_ppo_space`).
        fixed: Settings every trial shares (e.g. ``total_timesteps``).
        metric: One of :data:`PPO_METRICS` (maximised).
        lgbm_rounds: Boosting rounds of the shared LightGBM base.
        val_days: Validation days per report.
        settings: Trials, seed, rungs, Ray address, ...

    Raises:
        SearchSpaceError: A bad space or fixed setting (named), too few rollouts for the rungs.
        ConfigError: Not a budgeted spec, no validation split, a bad metric / val_days.
        TuneRunError: Ray could not start, or no trial finished.
    """
    from router_rl.envs import load_env_data
    from router_rl.policies.ppo import PPOConfig
    from router_rl.policies.ppo.train import fit_lgbm_base

    st = settings or TuneSettings()
    if metric not in PPO_METRICS:
        raise ConfigError("metric", f"expected one of {list(PPO_METRICS)}, got {metric!r}")
    if spec.kind != "budgeted":
        raise ConfigError("env", f"PPO needs a 'budgeted' env spec, got kind {spec.kind!r} ({spec.name})")
    if val_days < 1:
        raise ConfigError("val_days", f"expected >= 1, got {val_days}")
    fx = {k: v for k, v in (fixed or {}).items() if k not in space}
    trials = sample_trials(space, n_trials=st.trials, base_seed=st.base_seed, fixed=fx, config_cls=PPOConfig)
    for t in trials:
        rollout_chunks(PPOConfig.from_dict(t.config), st.rungs)
    data = load_env_data(spec)
    if data.val is None:
        raise ConfigError("split.val_fraction", f"{spec.name} has no validation tasks; tuning never scores on test")
    base = fit_lgbm_base(data, rounds=lgbm_rounds, seed=st.base_seed)
    out = run_trials(
        ppo_trainable, trials, metric=f"{metric}", mode="max", settings=st,
        payload={"spec": spec, "base": base, "rungs": st.rungs, "val_days": val_days,
                 "val_seed": VAL_SEED_OFFSET + st.base_seed},
    )
    out.extra.update({"fixed": fx, "lgbm_rounds": lgbm_rounds, "val_days": val_days, "env": spec.name,
                      "val_tasks": data.val.n_tasks})
    return out

"""``train_ppo``: the whole PPO pipeline in one function (the CLI, experiments and notebooks call it).

Steps: load the env spec's data (with the base's encoder when a base is given), fit a LightGBM
base (:func:`fit_lgbm_base`) unless one is given, optionally calibrate the base's λ on the
validation split, warm-start and train :class:`PPORouter` on the spec's ``train`` split, and
compare base and PPO on held-out (``test`` split) days. Every step is seeded by ``seed``.
Environments and LightGBM are imported inside the functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.policies.base import PolicyLoadError, RoutingPolicy
from router_rl.policies.ppo.config import PPOConfig
from router_rl.policies.ppo.router import PPORouter

if TYPE_CHECKING:
    from router_rl.envs.data import EnvData
    from router_rl.envs.spec import EnvSpec

#: Boosting rounds of the LightGBM base :func:`train_ppo` fits when no base is given.
DEFAULT_LGBM_ROUNDS = 60
#: Held-out days :func:`train_ppo` evaluates by default.
DEFAULT_EVAL_DAYS = 32
#: Seed offset of the held-out days (so they never coincide with training days).
HELDOUT_SEED_OFFSET = 1_000_000


@dataclass
class PPOTrainResult:
    """What :func:`train_ppo` produced.

    Attributes:
        router: The trained PPO router (``metadata`` holds ``env_spec`` and, when evaluated,
            ``heldout``).
        base: The base policy it was warm-started from (fitted here or given).
        spec: The env spec it trained on.
        data: The env data (splits, encoder).
        heldout: ``{"base": metrics, "ppo": metrics}`` over the held-out days
            (:data:`router_rl.envs.budgeted.DAY_METRICS`), or ``None`` when ``eval_days=0``.
        eval_days: Held-out days evaluated.
    """

    router: PPORouter
    base: RoutingPolicy
    spec: EnvSpec
    data: EnvData
    heldout: dict[str, dict[str, float]] | None = None
    eval_days: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def fit_lgbm_base(data: EnvData, *, rounds: int = DEFAULT_LGBM_ROUNDS, seed: int) -> RoutingPolicy:
    """The LightGBM base of the PPO pipeline: fitted on the train split, encoder attached."""
    from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy

    base = LGBMPolicy(data.train.models, config=LGBMConfig(num_boost_round=rounds, cv_folds=2))
    base.fit(data.features("train"), data.train, seed=seed)
    base.attach_encoder(data.encoder)
    return base


def check_base(base: RoutingPolicy) -> None:
    """Refuse a base PPO cannot warm-start from.

    Raises:
        PolicyLoadError: ``base`` is itself a PPO router or carries no feature encoder.
    """
    if base.kind == "ppo":
        raise PolicyLoadError("a PPO artifact cannot be the base; give its base policy instead (its 'base' folder)")
    if base.encoder is None:
        raise PolicyLoadError("the base policy carries no feature encoder (attach_encoder before saving it)")


def train_ppo(
    spec: EnvSpec,
    *,
    config: PPOConfig | None = None,
    base: RoutingPolicy | None = None,
    data: EnvData | None = None,
    target: str | None = None,
    lgbm_rounds: int = DEFAULT_LGBM_ROUNDS,
    eval_days: int = DEFAULT_EVAL_DAYS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> PPOTrainResult:
    """Train a PPO router warm-started from a base policy on a budgeted env spec.

    Args:
        spec: A ``budgeted`` env spec (overrides already applied).
        config: PPO hyper-parameters (default :class:`PPOConfig`).
        base: Warm-start policy; ``None`` = fit LightGBM on the train split
            (:func:`fit_lgbm_base`). A given base is not modified unless ``target`` is set.
        data: The spec's data if already loaded (must use the base's encoder when a base is given).
        target: Calibrate the base's λ on the validation split first (``budget=USD``,
            ``quality=0.95``, ``local=0.8``; see ``UtilityPolicy.calibrate``).
        lgbm_rounds: Boosting rounds of the fitted LightGBM base.
        eval_days: Held-out days to compare base and PPO on (0 = skip).
        seed: Seed of LightGBM, PPO and the held-out days.
        progress: Called with a short description before each step.

    Returns:
        A :class:`PPOTrainResult`.

    Raises:
        ConfigError: Not a budgeted spec, ``eval_days < 0``, a bad ``target`` or a base/config
            mismatch (the setting is named).
        PolicyLoadError: An unusable base (a PPO artifact, no encoder, other models than the data).
    """
    from router_rl.envs import BudgetedRouting, load_env_data, make_from_spec
    from router_rl.envs.budgeted import evaluate_days

    say = progress or (lambda _msg: None)
    cfg = config or PPOConfig()
    if spec.kind != "budgeted":
        raise ConfigError("env", f"PPO needs a 'budgeted' env spec, got kind {spec.kind!r} ({spec.name})")
    if eval_days < 0:
        raise ConfigError("eval_days", f"expected >= 0, got {eval_days}")
    say(f"loading {spec.name}")
    if base is not None:
        check_base(base)
        if data is None:
            data = load_env_data(spec, encoder=base.encoder)
        base.check_models(data.train.models, what=f"env {spec.name}")
    else:
        if data is None:
            data = load_env_data(spec)
        say(f"training LightGBM on {data.train.n_tasks} train tasks")
        base = fit_lgbm_base(data, rounds=lgbm_rounds, seed=seed)
    if target is not None:
        if not hasattr(base, "calibrate") or data.val is None:
            raise ConfigError("target", "needs a calibratable base and a validation split")
        say(f"calibrating the base to {target} on validation")
        base.calibrate(data.features("val"), data.val, target)
    say(f"PPO: {cfg.total_timesteps} steps on {spec.name} [train]")
    router = PPORouter.from_base(base, config=cfg)
    router.fit_env(functools.partial(make_from_spec, spec, encoder=data.encoder, split="train"), seed=seed)
    router.metadata["env_spec"] = spec.name
    result = PPOTrainResult(router=router, base=base, spec=spec, data=data, eval_days=eval_days)
    if eval_days > 0:
        say(f"evaluating on {eval_days} held-out days")
        test_env = make_from_spec(spec, encoder=data.encoder, split="test")
        if not isinstance(test_env, BudgetedRouting):  # the spec kind was checked above
            raise ConfigError("env", f"{spec.name} did not build a BudgetedRouting env")
        fd = router.feature_dim
        days = {"seed": HELDOUT_SEED_OFFSET + seed, "episodes": eval_days}
        b = base
        result.heldout = {
            "base": evaluate_days(test_env, lambda o: b.action_distribution(o[:, :fd]).argmax(1), **days),
            "ppo": evaluate_days(test_env, lambda o: router.action_distribution(o).argmax(1), **days),
        }
        result.extra["horizon"] = test_env.horizon
        router.metadata["heldout"] = result.heldout | {"days": eval_days, "env": spec.name}
    return result


@dataclass
class LogPPOResult:
    """What :func:`train_ppo_on_log` produced.

    Attributes:
        router: The trained PPO router (``metadata["log_replay"]`` holds the replay estimates).
        base: The base policy it was warm-started from.
        replay: ``{"base": ReplayResult, "ppo": ReplayResult}``: rejection-sampling replay estimates
            of the greedy decisions of both on the (training) log: in-sample, a sanity check, not
            a held-out evaluation.
        n_rows: Rows of the log.
        n_labeled: Rows replayed (the unlabelled ones are excluded and counted).
    """

    router: PPORouter
    base: RoutingPolicy
    replay: dict[str, Any]
    n_rows: int
    n_labeled: int


def _ips_reward_env(env: Any, clip: float) -> Any:
    """``env`` (a :class:`~router_rl.envs.replay.LoggedReplay`) whose matched rewards are ``r · min(1/p, clip)``.

    Replay's reward is 0 for an action other than the logged one, so the expected reward of an
    action ``a`` is ``π₀(a|x) · r(x, a)``: learning on it favours what the logging policy did.
    Weighting the matched reward by ``1 / π₀(a|x)`` makes it ``r(x, a)`` (inverse propensity
    scoring; the clip bounds its variance).
    """
    import gymnasium as gym

    props = env.propensities
    w = np.ones(env.logged_actions.shape[0]) if props is None else np.minimum(1.0 / props, clip)

    class _IPSReward(gym.Wrapper):
        def step(self, action: Any) -> Any:
            obs, reward, term, trunc, info = self.env.step(action)
            if info.get("matched"):
                reward = float(reward) * float(w[int(info["event"])])
            return obs, reward, term, trunc, info

    return _IPSReward(env)


def train_ppo_on_log(
    data: Any,
    *,
    base: RoutingPolicy,
    reward: Any,
    config: PPOConfig | None = None,
    ips_clip: float = 10.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> LogPPOResult:
    """Train a PPO router on a real decision log (:class:`~router_rl.envs.replay.LoggedReplay`).

    The environment replays the log's labelled rows in order (one episode = one pass); a step
    whose action is the logged one earns the row's reward (``reward`` of its label, cost and
    latency) times ``min(1 / propensity, ips_clip)``, any other action 0. Observations are the
    logged feature vectors (no router state: the router's budget state is not in the log).

    Args:
        data: The joined log (:class:`router_rl.logs.data.LoggedData`); its encoder fingerprint
            must be the base's.
        base: Warm-start policy (e.g. learned from the same log with
            :func:`router_rl.policies.offpolicy.fit_from_log`), with its encoder.
        reward: :class:`~router_rl.envs.spec.RewardSpec`; ``cost_ref_usd="auto"`` resolves to the
            highest mean logged cost of a model (over the rows that chose it).
        config: PPO hyper-parameters.
        ips_clip: Upper bound of the inverse-propensity weight of the matched reward.
        seed: Seed of PPO.
        progress: Called with a short description before each step.

    Raises:
        PolicyLoadError: an unusable base, or its encoder is not the one of the log's features.
        ValueError: nothing to replay.
    """
    from router_rl.envs.replay import LoggedReplay, replay_evaluate

    say = progress or (lambda _msg: None)
    cfg = config or PPOConfig()
    check_base(base)
    base.check_models(data.models, what="log")
    fp = base.metadata.get("encoder_fingerprint")
    if data.encoder_fingerprint is None or fp != data.encoder_fingerprint:
        raise PolicyLoadError(
            f"the base policy was trained with encoder {fp}, but the log's features come from encoder "
            f"{data.encoder_fingerprint}"
        )
    if reward.cost_ref_usd == "auto":
        lab = np.isfinite(data.quality) & np.isfinite(data.cost_usd)
        means = [float(data.cost_usd[lab & (data.actions == j)].mean()) for j in range(len(data.models))
                 if (lab & (data.actions == j)).any()]
        reward = reward.replace(cost_ref_usd=max(max(means, default=0.0), 1e-12))
    X = np.asarray(data.X)
    clip_obs = max(10.0, float(np.abs(X).max()) if X.size else 10.0)  # the base must see unclipped features

    def make_env() -> Any:
        env = LoggedReplay.from_logged(data, reward, unlabeled="drop", obs_clip=clip_obs)
        return _ips_reward_env(env, ips_clip)

    probe = LoggedReplay.from_logged(data, reward, unlabeled="drop", obs_clip=clip_obs)
    say(f"PPO: {cfg.total_timesteps} steps on {probe.X.shape[0]} logged decisions")
    router = PPORouter.from_base(base, config=cfg)
    router.fit_env(make_env, seed=seed)
    rewards, logged, props = probe.rewards, probe.logged_actions, probe.propensities
    replay = {
        "base": replay_evaluate(rewards, logged, base.action_distribution(probe.X).argmax(1), props),
        "ppo": replay_evaluate(rewards, logged, router.action_distribution(probe.X).argmax(1), props),
    }
    router.metadata["log_replay"] = {k: v._asdict() for k, v in replay.items()} | {
        "rows": int(data.n), "labeled": int(probe.X.shape[0]), "ips_clip": ips_clip,
        "reward": reward.to_dict(), "encoder_fingerprint": data.encoder_fingerprint,
    }
    return LogPPOResult(router=router, base=base, replay=replay, n_rows=int(data.n), n_labeled=int(probe.X.shape[0]))

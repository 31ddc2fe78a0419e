"""PPO refinement of a base routing policy (normally the LightGBM router) on ``BudgetedRouting``.

Design (see ``docs/ppo.md``): *a frozen prior plus a learned budget price and residual*. For the
task part of each observation the base policy gives a score ``z_j`` per model (its utility
``q̂_j − λ₀·ĉ_j`` for a quality-predicting base, else ``log max(p_j, floor)``) and a normalised
expected cost ``ĉ_j``; both are prepended to the environment observation. The
stable-baselines3 actor outputs

    logits_j = β · (z_j − δ(s) · ĉ_j) + W · h(observation) + b,

where ``δ(s)`` is a scalar *budget price* computed from the router state ``s`` only (remaining
budget, elapsed time, local share, breakers) and ``β = 1 / prior_temperature``. The price head's
output layer and the residual ``W, b`` are initialised to exactly zero, so before any PPO update
the router takes exactly the base policy's argmax decision. PPO then learns a state-dependent
price (budget pacing: the effective λ becomes ``λ₀ + δ(s)``) and a residual (provider outages).
The critic is an ordinary MLP on the same input.

Observation layout (``BudgetedRouting``): ``[task features (feature_dim) | state (state_dim)]``;
the state part is built by the live router with :func:`state_vector`.

torch, gymnasium and stable-baselines3 are imported lazily: importing this module is cheap, so
the policy registry can import it eagerly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.policies.base import PolicyLoadError, RoutingPolicy, register_policy

if TYPE_CHECKING:
    import gymnasium as gym
    from stable_baselines3 import PPO

__all__ = [
    "BREAKER_STATES",
    "STATE_FIELDS",
    "PPOConfig",
    "PPORouter",
    "state_vector",
]

#: Scalar state fields of a BudgetedRouting observation, in order, after the task features; the
#: per-provider circuit-breaker states follow them (one per provider, in the env's provider order).
STATE_FIELDS: tuple[str, ...] = ("budget_remaining_frac", "elapsed_frac", "local_share")

SB3_FILE = "ppo.zip"
BASE_DIR = "base"
_PRIOR_CACHE_MAX = 1_000_000

#: Layout of the PPO artifact (``policy.json`` → ``state.ppo_format``). 2: the network input is
#: ``[prior score (m) | normalised cost (m) | env observation]`` and the actor has a budget-price
#: head. Version 1 artifacts (log-prior only, no version field) must be retrained.
PPO_FORMAT = 2
PRIOR_KINDS: tuple[str, ...] = ("auto", "utility", "log_prob")
#: Margin (utility units) by which the base's chosen model leads the runner-up in the utility
#: prior, so the warm-started argmax is the base's even for ties and escalated rows.
_ARGMAX_MARGIN = 1e-4


BREAKER_STATES: dict[str, float] = {"closed": 0.0, "half_open": 0.5, "open": 1.0}


def state_vector(
    *,
    budget_remaining_frac: float,
    elapsed_frac: float,
    local_share: float,
    breakers: Mapping[str, float | str] | Sequence[float | str] = (),
    providers: Sequence[str] | None = None,
) -> np.ndarray:
    """Build the state part of an observation, as the live router must do before each decision.

    Same quantities and encoding as ``BudgetedRouting``:

    * ``budget_remaining_frac``: unspent budget of the current budget window / window budget, in
      [0, 1] (the router's budget manager knows both).
    * ``elapsed_frac``: requests (or time) elapsed in the window / window length, in [0, 1].
    * ``local_share``: share of this window's served requests answered by local models (0 before
      the first one).
    * ``breakers``: circuit-breaker state per provider subject to outages: ``0`` / ``"closed"``
      (healthy), ``0.5`` / ``"half_open"``, ``1`` / ``"open"`` (down), in the provider order the
      policy was trained with (``PPORouter.providers``).

    Args:
        budget_remaining_frac: Remaining budget fraction.
        elapsed_frac: Elapsed fraction of the budget window.
        local_share: Fraction of requests served locally so far.
        breakers: A mapping provider -> state (then ``providers`` gives the order) or a sequence
            already in training order.
        providers: Provider order; required when ``breakers`` is a mapping.

    Returns:
        ``(len(STATE_FIELDS) + n_providers,)`` float32 vector.

    Raises:
        ValueError: a value outside [0, 1], an unknown breaker state or a provider missing from
            the mapping.
    """
    scalars = {
        "budget_remaining_frac": budget_remaining_frac,
        "elapsed_frac": elapsed_frac,
        "local_share": local_share,
    }
    if isinstance(breakers, Mapping):
        if providers is None:
            raise ValueError("state_vector: providers (the training order) is required with a breakers mapping")
        missing = [p for p in providers if p not in breakers]
        if missing:
            raise ValueError(f"state_vector: breakers lacks providers {missing}")
        raw = [breakers[p] for p in providers]
        names = [f"breakers[{p!r}]" for p in providers]
    else:
        raw = list(breakers)
        names = [f"breakers[{i}]" for i in range(len(raw))]
    health: list[float] = []
    for name, v in zip(names, raw, strict=True):
        if isinstance(v, str):
            if v not in BREAKER_STATES:
                raise ValueError(f"state_vector: {name}: expected one of {sorted(BREAKER_STATES)}, got {v!r}")
            health.append(BREAKER_STATES[v])
        else:
            health.append(float(v))
    for name, x in [*scalars.items(), *zip(names, health, strict=True)]:
        if not (math.isfinite(float(x)) and 0.0 <= float(x) <= 1.0):
            raise ValueError(f"state_vector: {name}: expected a number in [0, 1], got {x!r}")
    return np.asarray([float(scalars[k]) for k in STATE_FIELDS] + health, dtype=np.float32)


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of the PPO refinement (validated on construction).

    Attributes:
        total_timesteps: Environment steps of :meth:`PPORouter.fit`.
        n_steps: Rollout length per environment before each update.
        batch_size: Minibatch size (must divide ``n_steps * n_envs``).
        n_epochs: Optimisation epochs per rollout.
        learning_rate: Adam learning rate.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        clip_range: PPO clipping parameter.
        ent_coef: Entropy bonus coefficient.
        vf_coef: Value loss coefficient.
        max_grad_norm: Gradient clipping.
        net_arch: Hidden layer sizes of the residual actor and of the critic.
        prior_floor: Probability floor of the base policy inside the log-prior (``prior="log_prob"``);
            lower = closer to the base distribution but slower to move away from it.
        n_envs: Parallel (in-process) environments.
        prior: ``"utility"``: the prior score is the base's utility ``q̂ − λ₀·ĉ`` (needs a
            quality-predicting base such as LightGBM); ``"log_prob"``: ``log max(p, floor)`` of
            any base; ``"auto"``: utility when the base supports it.
        prior_temperature: τ of the utility prior: logits = (utility − δ·ĉ) / τ (in quality
            units; smaller = closer to the deterministic base policy, less exploration).
        learn_temperature: Learn the prior's inverse temperature β (a single scalar, starting at
            ``1 / prior_temperature``), so sharpening the base policy does not have to go through
            the price (which it would otherwise bias: the base's favourite models tend to be the
            expensive ones).
        budget_price: Learn the state-dependent budget price ``δ(s)`` (zero-initialised).
        budget_jitter: Training days start with a fraction ``U(0, budget_jitter)`` of the budget
            already spent (``BudgetedRouting.reset(options={"spent_frac": ...})``), so the
            remaining budget varies independently of the time of day and the critic can learn
            what a dollar left is worth (0 = off; evaluation days always start fresh).
        normalize_reward: Scale training rewards by a running estimate of the discounted
            return's standard deviation (SB3 ``VecNormalize``, rewards only). Day returns are
            O(100); unscaled, the critic's gradient dominates the shared gradient clipping and
            starves the actor (training only: the saved policy is unaffected).
        price_arch: Hidden layer sizes of the price network (input: the router state only).
    """

    total_timesteps: int = 20_000
    n_steps: int = 256
    batch_size: int = 64
    n_epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)
    prior_floor: float = 1e-2
    n_envs: int = 1
    prior: str = "auto"
    prior_temperature: float = 0.02
    learn_temperature: bool = True
    budget_price: bool = True
    budget_jitter: float = 0.5
    normalize_reward: bool = True
    price_arch: tuple[int, ...] = (32,)

    def __post_init__(self) -> None:
        positive_ints = ("total_timesteps", "n_steps", "batch_size", "n_epochs", "n_envs")
        for name in positive_ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"PPOConfig.{name}", f"expected a positive integer, got {v!r}")
        if (self.n_steps * self.n_envs) % self.batch_size:
            raise ConfigError(
                "PPOConfig.batch_size",
                f"must divide n_steps * n_envs = {self.n_steps * self.n_envs}, got {self.batch_size}",
            )
        for name in ("learning_rate", "clip_range", "max_grad_norm"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(f"PPOConfig.{name}", f"expected a finite number > 0, got {v!r}")
        for name in ("gamma", "gae_lambda"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 <= v <= 1.0):
                raise ConfigError(f"PPOConfig.{name}", f"expected a number in [0, 1], got {v!r}")
        for name in ("ent_coef", "vf_coef"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"PPOConfig.{name}", f"expected a finite number >= 0, got {v!r}")
        if not (0.0 < self.prior_floor < 1.0):
            raise ConfigError("PPOConfig.prior_floor", f"expected a number in (0, 1), got {self.prior_floor!r}")
        arch = tuple(self.net_arch)
        if not arch or any(not isinstance(h, int) or h <= 0 for h in arch):
            raise ConfigError(
                "PPOConfig.net_arch", f"expected a non-empty list of positive ints, got {self.net_arch!r}"
            )
        object.__setattr__(self, "net_arch", arch)
        if self.prior not in PRIOR_KINDS:
            raise ConfigError("PPOConfig.prior", f"expected one of {list(PRIOR_KINDS)}, got {self.prior!r}")
        t = self.prior_temperature
        if not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
            raise ConfigError("PPOConfig.prior_temperature", f"expected a finite number > 0, got {t!r}")
        if not (isinstance(self.budget_jitter, int | float) and 0.0 <= self.budget_jitter < 1.0):
            raise ConfigError("PPOConfig.budget_jitter", f"expected a number in [0, 1), got {self.budget_jitter!r}")
        for name in ("budget_price", "learn_temperature", "normalize_reward"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"PPOConfig.{name}", f"expected true or false, got {getattr(self, name)!r}")
        parch = tuple(self.price_arch)
        if any(not isinstance(h, int) or isinstance(h, bool) or h <= 0 for h in parch):
            raise ConfigError(
                "PPOConfig.price_arch", f"expected a list of positive ints (may be empty), got {self.price_arch!r}"
            )
        object.__setattr__(self, "price_arch", parch)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse: ``PPOConfig(**d)``)."""
        d = asdict(self)
        d["net_arch"] = list(self.net_arch)
        d["price_arch"] = list(self.price_arch)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PPOConfig:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError("PPOConfig", f"unknown setting(s) {unknown}; known: {sorted(known)}")
        kw = dict(d)
        for name in ("net_arch", "price_arch"):
            if name in kw:
                kw[name] = tuple(kw[name])
        return cls(**kw)


# --- lazily built torch / gymnasium classes ------------------------------------------------------


@cache
def _residual_policy_class() -> type:
    """The SB3 ``ActorCriticPolicy`` with a frozen prior, a budget price and a residual (built once)."""
    import torch as th
    from stable_baselines3.common.policies import ActorCriticPolicy
    from torch import nn

    def mlp(in_dim: int, arch: Sequence[int], activation_fn: type[nn.Module]) -> tuple[nn.Sequential, int]:
        layers: list[nn.Module] = []
        last = in_dim
        for h in arch:
            layers += [nn.Linear(last, h), activation_fn()]
            last = h
        return nn.Sequential(*layers), last

    class PriorMlpExtractor(nn.Module):
        """Actor latent = ``[prior score | cost | MLP(input) | price MLP(state)]``; critic latent = ``MLP(input)``.

        The input is ``[prior score (n_prior) | normalised cost (n_prior) | env observation]``;
        the price MLP only sees the env's state columns (``input[:, state_start:]``).
        """

        def __init__(
            self,
            feature_dim: int,
            n_prior: int,
            net_arch: Sequence[int],
            activation_fn: type[nn.Module],
            *,
            state_start: int,
            price_arch: Sequence[int] | None,
        ):
            super().__init__()
            self.n_prior = n_prior
            self.state_start = state_start
            self.policy_net, hidden_pi = mlp(feature_dim, net_arch, activation_fn)
            self.value_net, hidden_vf = mlp(feature_dim, net_arch, activation_fn)
            self.price_net: nn.Module | None = None
            hidden_price = 0
            if price_arch is not None:
                self.price_net, hidden_price = mlp(feature_dim - state_start, price_arch, activation_fn)
            self.hidden_pi, self.hidden_price = hidden_pi, hidden_price
            self.latent_dim_pi = 2 * n_prior + hidden_pi + hidden_price
            self.latent_dim_vf = hidden_vf

        def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
            return self.forward_actor(features), self.forward_critic(features)

        def forward_actor(self, features: th.Tensor) -> th.Tensor:
            parts = [features[:, : 2 * self.n_prior], self.policy_net(features)]
            if self.price_net is not None:
                parts.append(self.price_net(features[:, self.state_start :]))
            return th.cat(parts, dim=1)

        def forward_critic(self, features: th.Tensor) -> th.Tensor:
            return self.value_net(features)

    class PriceResidualHead(nn.Module):
        """``logits = β·(prior − δ·cost) + Linear(hidden)``, ``δ = Linear(price hidden)``, both zero-initialised.

        ``β`` starts at ``prior_scale``; with ``learn_scale`` it is learned (as ``log β``), so PPO
        can sharpen or soften the whole prior without going through the price or the residual.
        """

        def __init__(self, n_prior: int, hidden_pi: int, hidden_price: int, prior_scale: float, learn_scale: bool):
            super().__init__()
            self.n_prior = n_prior
            self.hidden_pi = hidden_pi
            self.log_scale = nn.Parameter(th.tensor(math.log(prior_scale), dtype=th.float32), requires_grad=learn_scale)
            self.residual = nn.Linear(hidden_pi, n_prior)
            nn.init.zeros_(self.residual.weight)
            nn.init.zeros_(self.residual.bias)
            self.price: nn.Linear | None = None
            if hidden_price > 0:
                self.price = nn.Linear(hidden_price, 1)
                nn.init.zeros_(self.price.weight)
                nn.init.zeros_(self.price.bias)

        def budget_price(self, latent: th.Tensor) -> th.Tensor:
            """``(n, 1)`` price δ (zeros without a price head)."""
            if self.price is None:
                return th.zeros((latent.shape[0], 1), dtype=latent.dtype)
            return self.price(latent[:, 2 * self.n_prior + self.hidden_pi :])

        def forward(self, latent: th.Tensor) -> th.Tensor:
            m = self.n_prior
            prior, cost = latent[:, :m], latent[:, m : 2 * m]
            h = latent[:, 2 * m : 2 * m + self.hidden_pi]
            score = prior if self.price is None else prior - self.budget_price(latent) * cost
            return th.exp(self.log_scale) * score + self.residual(h)

    class ResidualPriorPolicy(ActorCriticPolicy):
        """Actor-critic whose logits are a fixed prior, a learned budget price on the cost and a residual.

        The first ``2 · action_space.n`` input columns must hold the prior score and the
        normalised cost of every model. Extra keyword arguments (saved with the SB3 model):
        ``state_start`` (first state column of the input), ``price_arch`` (hidden sizes of the
        price network, ``None`` = no price head), ``prior_scale`` (initial β) and
        ``learn_prior_scale`` (learn β).
        """

        def __init__(
            self,
            *args: Any,
            state_start: int,
            price_arch: Sequence[int] | None = None,
            prior_scale: float = 1.0,
            learn_prior_scale: bool = False,
            **kwargs: Any,
        ) -> None:
            self.state_start = int(state_start)
            self.price_arch = None if price_arch is None else [int(h) for h in price_arch]
            self.prior_scale = float(prior_scale)
            self.learn_prior_scale = bool(learn_prior_scale)
            super().__init__(*args, **kwargs)

        def _get_constructor_parameters(self) -> dict[str, Any]:
            data = super()._get_constructor_parameters()
            data.update(
                state_start=self.state_start,
                price_arch=self.price_arch,
                prior_scale=self.prior_scale,
                learn_prior_scale=self.learn_prior_scale,
            )
            return data

        def _build_mlp_extractor(self) -> None:
            arch = self.net_arch
            pi = list(arch.get("pi", [])) if isinstance(arch, dict) else list(arch)
            self.mlp_extractor = PriorMlpExtractor(  # type: ignore[assignment]
                self.features_dim,
                int(self.action_space.n),  # type: ignore[attr-defined]
                pi,
                self.activation_fn,
                state_start=self.state_start,
                price_arch=self.price_arch,
            )

        def _build(self, lr_schedule: Any) -> None:
            super()._build(lr_schedule)
            n = int(self.action_space.n)  # type: ignore[attr-defined]
            ext = self.mlp_extractor
            self.action_net = PriceResidualHead(
                n, ext.hidden_pi, ext.hidden_price, self.prior_scale, self.learn_prior_scale  # type: ignore[arg-type]
            )
            # the optimizer must see the new head's parameters (and not the replaced ones)
            self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
                self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
            )

    ResidualPriorPolicy.__module__ = __name__
    ResidualPriorPolicy.__qualname__ = "ResidualPriorPolicy"
    return ResidualPriorPolicy


def _is_utility_base(base: RoutingPolicy) -> bool:
    """Whether ``base`` predicts quality and cost (so the utility prior applies)."""
    from router_rl.policies.utility import UtilityPolicy

    return isinstance(base, UtilityPolicy)


def _constant(env: gym.Env) -> Callable[[], gym.Env]:
    return lambda: env


def __getattr__(name: str) -> Any:
    """Module attribute hook so pickled references to ``ResidualPriorPolicy`` resolve lazily."""
    if name == "ResidualPriorPolicy":
        return _residual_policy_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _prior_wrapper_class() -> type:
    import gymnasium as gym

    class PriorObservation(gym.ObservationWrapper):
        """Prepends the base policy's prior score and normalised cost ``(2 · n_models,)`` to every observation."""

        def __init__(self, env: gym.Env, router: PPORouter):
            super().__init__(env)
            space = env.observation_space
            if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
                raise ValueError(f"PPORouter: expected a 1-D Box observation space, got {space}")
            if space.shape[0] != router.obs_dim:
                raise ValueError(
                    f"PPORouter: env observations have {space.shape[0]} columns, the router expects "
                    f"{router.obs_dim} (feature_dim={router.feature_dim} + state_dim={router.state_dim})"
                )
            n_act = getattr(env.action_space, "n", None)
            if n_act != router.n_models:
                raise ValueError(f"PPORouter: env has {n_act} actions but the router has {router.n_models} models")
            self._router = router
            m = router.n_models
            lo = np.concatenate([np.full(2 * m, -np.inf), space.low])
            hi = np.concatenate([np.full(2 * m, np.inf), space.high])
            self.observation_space = gym.spaces.Box(lo.astype(np.float32), hi.astype(np.float32), dtype=np.float32)

        def observation(self, observation: np.ndarray) -> np.ndarray:
            obs = np.asarray(observation, dtype=np.float32).reshape(1, -1)
            return self._router.augment(obs)[0]

    return PriorObservation


@cache
def _jitter_wrapper_class() -> type:
    import gymnasium as gym

    class BudgetJitter(gym.Wrapper):
        """Starts each day with ``U(0, high)`` of the budget spent (own seeded generator, no env draws)."""

        def __init__(self, env: gym.Env, high: float, seed: int):
            super().__init__(env)
            self._high = float(high)
            self._rng = np.random.default_rng(seed)

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
            opts = dict(options or {})
            opts.setdefault("spent_frac", float(self._rng.uniform(0.0, self._high)))
            return self.env.reset(seed=seed, options=opts)

    return BudgetJitter


# --- the policy ----------------------------------------------------------------------------------


@register_policy
class PPORouter(RoutingPolicy):
    """PPO-refined router: a base policy's decisions plus a learned, state-aware residual.

    ``X`` everywhere is a ``BudgetedRouting`` observation: ``feature_dim`` task-feature columns
    (what the base policy sees) followed by ``state_dim`` state columns (see :func:`state_vector`).

    Args:
        models: Candidate model ids (must equal ``base.models``).
        base: The warm-start policy (normally the fitted LightGBM router). Its
            ``action_distribution`` is called on the task-feature part of ``X``.
        feature_dim: Number of task-feature columns at the start of each observation (default:
            taken from the env at :meth:`warm_start`, else the base policy's ``n_features``).
        state_dim: Number of state columns after them (default: taken from the env).
        config: PPO hyper-parameters.
        providers: Provider order of the breaker columns (default: the env's ``providers``).
        metadata: Free-form info saved with the artifact.
    """

    kind: ClassVar[str] = "ppo"

    def __init__(
        self,
        models: Sequence[str],
        *,
        base: RoutingPolicy | None = None,
        feature_dim: int | None = None,
        state_dim: int | None = None,
        config: PPOConfig | None = None,
        providers: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, metadata=metadata)
        self.config = config or PPOConfig()
        self.providers: tuple[str, ...] = tuple(providers or ())
        self.base: RoutingPolicy | None = None
        self.feature_dim: int | None = None
        self.state_dim: int | None = None
        self._model: PPO | None = None
        self._prior_cache: dict[bytes, np.ndarray] = {}
        self._trained_timesteps = 0
        #: Per-model cost used by the price head for bases without ``predict_cost`` (normalised
        #: so its maximum is 1; set from the env's cost tables at :meth:`warm_start`).
        self.model_cost: np.ndarray | None = None
        if base is not None:
            self.set_base(base)
        self._set_dims(feature_dim, state_dim)

    @classmethod
    def from_base(cls, base: RoutingPolicy, **kwargs: Any) -> PPORouter:
        """A PPO router warm-started from ``base`` (same models); ``kwargs`` as for the constructor."""
        return cls(base.models, base=base, **kwargs)

    def set_base(self, base: RoutingPolicy) -> None:
        """Use ``base`` as the prior (its encoder and catalog travel with this router's artifact)."""
        base.check_models(self.models, what="PPO router")
        if self.config.prior == "utility" and not _is_utility_base(base):
            raise ConfigError(
                "PPOConfig.prior",
                f"'utility' needs a quality-predicting base policy (LightGBM, kNN, MLP, MF), got {base.kind!r}; "
                "use 'log_prob' or 'auto'",
            )
        self.base = base
        self.encoder = base.encoder
        self.catalog = base.catalog
        self._prior_cache = {}
        if "encoder_fingerprint" in base.metadata:
            self.metadata["encoder_fingerprint"] = base.metadata["encoder_fingerprint"]

    def _set_dims(self, feature_dim: int | None, state_dim: int | None) -> None:
        if feature_dim is None and self.base is not None:
            feature_dim = self.base.n_features
        if feature_dim is not None:
            if int(feature_dim) <= 0:
                raise ValueError(f"PPORouter: feature_dim must be > 0, got {feature_dim}")
            if self.feature_dim is not None and self.feature_dim != int(feature_dim):
                raise ValueError(f"PPORouter: feature_dim {feature_dim} differs from the configured {self.feature_dim}")
            self.feature_dim = int(feature_dim)
        if state_dim is not None:
            if int(state_dim) < 0:
                raise ValueError(f"PPORouter: state_dim must be >= 0, got {state_dim}")
            if self.state_dim is not None and self.state_dim != int(state_dim):
                raise ValueError(f"PPORouter: state_dim {state_dim} differs from the configured {self.state_dim}")
            self.state_dim = int(state_dim)

    # --- shapes ------------------------------------------------------------------------------
    def _base(self) -> RoutingPolicy:
        if self.base is None:
            raise RuntimeError("PPORouter: no base policy; pass base= or call set_base(policy)")
        return self.base

    def _dims(self) -> tuple[int, int]:
        if self.feature_dim is None or self.state_dim is None:
            raise RuntimeError(
                "PPORouter: observation layout unknown; pass feature_dim=/state_dim= or call warm_start(env, ...)"
            )
        return self.feature_dim, self.state_dim

    @property
    def obs_dim(self) -> int:
        """Columns of an env observation (task features + state)."""
        f, s = self._dims()
        return f + s

    @property
    def model(self) -> PPO:
        """The stable-baselines3 PPO model (after :meth:`warm_start` / :meth:`fit_env` / load)."""
        if self._model is None:
            raise RuntimeError("PPORouter: no PPO model yet; call warm_start(env, seed=...) or fit_env(...) first")
        return self._model

    def _check_obs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        f, s = self._dims()
        if X.ndim != 2 or X.shape[1] != f + s:
            raise ValueError(
                f"PPORouter: expected observations of shape (n, {f + s}) = task features ({f}) + state ({s}), "
                f"got {X.shape}"
            )
        if not np.isfinite(X).all():
            r, c = np.argwhere(~np.isfinite(X))[0]
            raise ValueError(f"PPORouter: observation row {r}, column {c}: expected a finite number, got {X[r, c]}")
        return X

    # --- prior -------------------------------------------------------------------------------
    @property
    def prior_kind(self) -> str:
        """The prior in use: ``"utility"`` or ``"log_prob"`` (``config.prior`` with ``"auto"`` resolved)."""
        if self.config.prior != "auto":
            return self.config.prior
        return "utility" if _is_utility_base(self._base()) else "log_prob"

    @property
    def prior_scale(self) -> float:
        """β: ``1 / prior_temperature`` for the utility prior, 1 for the log-prior."""
        return 1.0 / self.config.prior_temperature if self.prior_kind == "utility" else 1.0

    def _prior_rows(self, F: np.ndarray) -> np.ndarray:
        """``[prior score | normalised cost]`` ``(n, 2m)`` for checked float32 task features (uncached)."""
        base = self._base()
        m = self.n_models
        if self.prior_kind == "utility":
            d = base.decide(F)  # type: ignore[attr-defined]
            z = np.asarray(d.utility, dtype=np.float64).copy()
            ok = np.isfinite(z)
            lo = np.where(ok, z, np.inf).min(axis=1, keepdims=True)
            z = np.where(ok, z, lo - 1.0)  # blocked models: one quality unit below the worst allowed one
            # the base's choice (escalation / ties included) leads the runner-up by a margin
            a = np.asarray(d.probs).argmax(axis=1)
            rows = np.arange(z.shape[0])
            other = np.where(np.arange(m)[None, :] == a[:, None], -np.inf, z).max(axis=1)
            z[rows, a] = np.maximum(z[rows, a], other + _ARGMAX_MARGIN)
            ref = float(base.cost_mean[base.reference_index]) or 1.0  # type: ignore[attr-defined]
            c = np.asarray(base.predict_cost(F), dtype=np.float64) / ref  # type: ignore[attr-defined]
        else:
            p = np.asarray(base.action_distribution(F), dtype=np.float64)
            if p.shape != (F.shape[0], m):
                raise ValueError(
                    f"PPORouter: base policy {base.version} returned shape {p.shape}, expected {(F.shape[0], m)}"
                )
            z = np.log(np.maximum(p, self.config.prior_floor))
            mc = self.model_cost if self.model_cost is not None else np.zeros(m)
            c = np.broadcast_to(mc, (F.shape[0], m))
        return np.concatenate([z, c], axis=1).astype(np.float32)

    def prior_inputs(self, task_features: np.ndarray) -> np.ndarray:
        """``[prior score (m) | normalised cost (m)]`` for ``(n, feature_dim)`` task features.

        The prior score is the base's utility ``q̂ − λ₀·ĉ − μ·l̂`` (``prior="utility"``; blocked
        models one unit below the worst allowed one, the base's choice at least a tiny margin
        ahead) or ``log max(p_base, floor)``; the cost is ``ĉ = predicted cost / reference
        model's mean cost`` (utility) or :attr:`model_cost`. Cached per distinct row.
        """
        F = np.ascontiguousarray(task_features, dtype=np.float32)
        out = np.empty((F.shape[0], 2 * self.n_models), dtype=np.float32)
        todo: list[int] = []
        for i in range(F.shape[0]):
            hit = self._prior_cache.get(F[i].tobytes())
            if hit is None:
                todo.append(i)
            else:
                out[i] = hit
        if todo:
            rows = self._prior_rows(F[todo])
            for k, i in enumerate(todo):
                out[i] = rows[k]
                if len(self._prior_cache) < _PRIOR_CACHE_MAX:
                    self._prior_cache[F[i].tobytes()] = rows[k]
        return out

    def augment(self, X: np.ndarray) -> np.ndarray:
        """``[prior score | normalised cost | X]``: the actor-critic input for env observations ``X``."""
        X = self._check_obs(X)
        f, _ = self._dims()
        return np.concatenate([self.prior_inputs(X[:, :f]), X], axis=1)

    def observe(self, task_features: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Env-layout observations from task features ``(n, feature_dim)`` and the router state.

        Args:
            task_features: Encoded features of the requests (the shared FeatureEncoder).
            state: ``(state_dim,)`` shared by all rows (e.g. from :func:`state_vector`) or
                ``(n, state_dim)``.
        """
        f, s = self._dims()
        F = np.asarray(task_features, dtype=np.float32)
        if F.ndim != 2 or F.shape[1] != f:
            raise ValueError(f"PPORouter.observe: expected task features (n, {f}), got {F.shape}")
        S = np.asarray(state, dtype=np.float32)
        if S.ndim == 1:
            S = np.broadcast_to(S, (F.shape[0], S.shape[0]))
        if S.shape != (F.shape[0], s):
            raise ValueError(f"PPORouter.observe: expected state ({s},) or (n, {s}), got {S.shape}")
        return np.concatenate([F, S], axis=1)

    # --- training ----------------------------------------------------------------------------
    def wrap_env(self, env: gym.Env) -> gym.Env:
        """Wrap a BudgetedRouting env so its observations carry the base policy's log-prior."""
        return _prior_wrapper_class()(env, self)

    def _adopt_env_layout(self, env: gym.Env) -> None:
        shape = getattr(env.observation_space, "shape", None)
        if not shape or len(shape) != 1:
            raise ValueError(f"PPORouter: expected a 1-D Box observation space, got {env.observation_space}")
        inner = env.unwrapped
        fdim = getattr(inner, "feature_dim", None)
        if fdim is None:
            fdim = self.feature_dim if self.feature_dim is not None else self._base().n_features
        if fdim is None:
            raise ValueError("PPORouter: cannot tell the task-feature width; pass feature_dim=")
        self._set_dims(int(fdim), int(shape[0]) - int(fdim))
        providers = getattr(inner, "providers", None)
        if providers and not self.providers:
            self.providers = tuple(str(p) for p in providers)
        tables = getattr(inner, "tables", None)
        if self.prior_kind == "log_prob" and self.model_cost is None and tables is not None:
            mc = np.asarray(tables.cost, dtype=np.float64).mean(axis=0)
            self.model_cost = mc / (float(mc.max()) or 1.0)
            self._prior_cache = {}

    def warm_start(self, env: gym.Env | Callable[[], gym.Env], *, seed: int) -> PPORouter:
        """Build the PPO model; its initial policy takes the base policy's decisions.

        Args:
            env: A BudgetedRouting env, or a zero-argument factory (needed when ``n_envs > 1``).
            seed: Seed of torch, numpy, the action space and the env resets.
        """
        import torch as th
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv

        self._base()
        th.set_num_threads(1)
        cfg = self.config
        if hasattr(env, "step"):
            if cfg.n_envs != 1:
                raise ConfigError("PPOConfig.n_envs", "n_envs > 1 needs an env factory, not an env instance")
            envs: list[gym.Env] = [env]  # type: ignore[list-item]
        else:
            envs = [env() for _ in range(cfg.n_envs)]
        self._adopt_env_layout(envs[0])
        if cfg.budget_jitter > 0:
            jitter = _jitter_wrapper_class()
            envs = [jitter(e, cfg.budget_jitter, seed=[seed, k]) for k, e in enumerate(envs)]
        factories = [_constant(self.wrap_env(e)) for e in envs]
        vec: Any = DummyVecEnv(factories)
        if cfg.normalize_reward:
            from stable_baselines3.common.vec_env import VecNormalize

            vec = VecNormalize(vec, norm_obs=False, norm_reward=True, gamma=cfg.gamma)
        self._model = PPO(
            _residual_policy_class(),
            vec,
            learning_rate=cfg.learning_rate,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            max_grad_norm=cfg.max_grad_norm,
            policy_kwargs=self._policy_kwargs(),
            seed=seed,
            device="cpu",
            verbose=0,
        )
        self._trained_timesteps = 0
        self.metadata["seed"] = seed
        return self

    def _policy_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        f, _ = self._dims()
        return {
            "net_arch": list(cfg.net_arch),
            "state_start": 2 * self.n_models + f,
            "price_arch": list(cfg.price_arch) if cfg.budget_price else None,
            "prior_scale": self.prior_scale,
            "learn_prior_scale": cfg.learn_temperature,
        }

    def learn(self, total_timesteps: int | None = None, *, progress: bool = False) -> PPORouter:
        """Run PPO for ``total_timesteps`` (default: ``config.total_timesteps``) env steps."""
        import torch as th

        th.set_num_threads(1)
        steps = self.config.total_timesteps if total_timesteps is None else int(total_timesteps)
        if steps <= 0:
            raise ValueError(f"PPORouter.learn: total_timesteps must be > 0, got {steps}")
        self.model.learn(total_timesteps=steps, progress_bar=progress, reset_num_timesteps=self._trained_timesteps == 0)
        self._trained_timesteps += steps
        self.metadata["timesteps"] = self._trained_timesteps
        return self

    def fit_env(
        self,
        env: gym.Env | Callable[[], gym.Env],
        *,
        seed: int,
        total_timesteps: int | None = None,
        progress: bool = False,
    ) -> PPORouter:
        """:meth:`warm_start` then :meth:`learn` (deterministic for a fixed ``seed``)."""
        return self.warm_start(env, seed=seed).learn(total_timesteps, progress=progress)

    def _fit(self, X: np.ndarray, matrix: Any, rng: np.random.Generator) -> None:
        raise NotImplementedError(
            "PPORouter learns from a BudgetedRouting environment, not a fixed matrix: fit the base policy on the "
            "matrix, then call PPORouter.from_base(base).fit_env(env_or_factory, seed=...)"
        )

    # --- inference ---------------------------------------------------------------------------
    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """Probabilities over models for env observations ``X`` ``(n, feature_dim + state_dim)``."""
        import torch as th

        A = self.augment(X)
        policy = self.model.policy
        policy.set_training_mode(False)
        with th.no_grad():
            logits = policy.action_net(policy.mlp_extractor.forward_actor(th.as_tensor(A)))
            p = th.softmax(logits.double(), dim=1).numpy()
        return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float64)

    def budget_price(self, X: np.ndarray) -> np.ndarray:
        """The learned budget price ``δ(s)`` ``(n,)`` for env observations ``X`` (0 at the warm start).

        The effective cost weight of the utility prior is ``λ₀ + δ(s)``: positive = spend less
        than the base policy would, negative = spend more. Zeros when ``budget_price`` is off.
        """
        import torch as th

        A = self.augment(X)
        policy = self.model.policy
        policy.set_training_mode(False)
        with th.no_grad():
            latent = policy.mlp_extractor.forward_actor(th.as_tensor(A))
            delta = policy.action_net.budget_price(latent)  # type: ignore[operator]
        return np.asarray(delta.numpy()[:, 0], dtype=np.float64)

    def fresh_state(self) -> np.ndarray:
        """State of a fresh budget window: full budget, nothing elapsed, no local share, every breaker closed."""
        _, s = self._dims()
        n_prov = s - len(STATE_FIELDS)
        if n_prov < 0:
            raise RuntimeError(f"PPORouter: state_dim {s} is smaller than the {len(STATE_FIELDS)} scalar fields")
        return state_vector(
            budget_remaining_frac=1.0, elapsed_frac=0.0, local_share=0.0, breakers=[0.0] * n_prov
        )

    def base_actions(self, X: np.ndarray) -> np.ndarray:
        """The base policy's argmax decisions for env observations ``X``."""
        X = self._check_obs(X)
        f, _ = self._dims()
        return np.asarray(self._base().action_distribution(X[:, :f])).argmax(axis=1)

    def parameters_vector(self) -> np.ndarray:
        """All actor-critic parameters as one flat float array (for reproducibility checks)."""
        return np.asarray(self.model.policy.parameters_to_vector())

    # --- persistence -------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> dict[str, Any]:
        base = self._base()
        f, s = self._dims()
        self.model.save(directory / SB3_FILE)
        base.save(directory / BASE_DIR)
        return {
            "ppo_format": PPO_FORMAT,
            "prior": self.prior_kind,
            "model_cost": None if self.model_cost is None else self.model_cost.tolist(),
            "feature_dim": f,
            "state_dim": s,
            "state_fields": [*STATE_FIELDS, *(f"breaker:{p}" for p in self.providers)],
            "providers": list(self.providers),
            "config": self.config.to_dict(),
            "timesteps": self._trained_timesteps,
            "base_kind": base.kind,
            "base_version": base.version,
        }

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        from stable_baselines3 import PPO

        meta_path = directory / "policy.json"
        fmt = state.get("ppo_format", 1)
        if fmt != PPO_FORMAT:
            raise PolicyLoadError(
                f"{meta_path}: PPO artifact layout {fmt!r}, this version reads layout {PPO_FORMAT} "
                "(network input [prior score | cost | observation] with a budget-price head); retrain it "
                "with `router-rl train-ppo` or PPORouter.fit_env"
            )
        for key in ("feature_dim", "state_dim", "config"):
            if key not in state:
                raise PolicyLoadError(f"{meta_path}: state lacks {key!r}")
        zip_path = directory / SB3_FILE
        if not zip_path.is_file():
            raise PolicyLoadError(f"{directory}: missing {SB3_FILE}")
        try:
            self.config = PPOConfig.from_dict(state["config"])
        except (ConfigError, TypeError) as e:
            raise PolicyLoadError(f"{meta_path}: state.config: {e}") from e
        self.providers = tuple(state.get("providers") or ())
        mc = state.get("model_cost")
        self.model_cost = None if mc is None else np.asarray(mc, dtype=np.float64)
        if self.model_cost is not None and self.model_cost.shape != (self.n_models,):
            raise PolicyLoadError(
                f"{meta_path}: state.model_cost has shape {self.model_cost.shape}, expected ({self.n_models},)"
            )
        self.base = None
        self.feature_dim = self.state_dim = None
        self._model = None
        self._prior_cache = {}
        try:
            self.set_base(RoutingPolicy.load(directory / BASE_DIR))
        except ConfigError as e:
            raise PolicyLoadError(f"{meta_path}: base policy does not fit the PPO config: {e}") from e
        if "prior" in state and state["prior"] != self.prior_kind:
            raise PolicyLoadError(
                f"{meta_path}: trained with the {state['prior']!r} prior but the base gives {self.prior_kind!r}"
            )
        self.feature_dim, self.state_dim = int(state["feature_dim"]), int(state["state_dim"])
        self._trained_timesteps = int(state.get("timesteps", 0))
        self._model = PPO.load(zip_path, device="cpu", custom_objects={"policy_class": _residual_policy_class()})
        shape = self._model.observation_space.shape
        n_in = int(shape[0]) if shape else -1
        if n_in != 2 * self.n_models + self.obs_dim:
            raise PolicyLoadError(
                f"{zip_path}: network input has {n_in} columns, expected {2 * self.n_models + self.obs_dim}"
            )

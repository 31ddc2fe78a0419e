"""PPO refinement of a base routing policy (normally the LightGBM router) on ``BudgetedRouting``.

Design (see ``docs/ppo.md``): *residual logits on a frozen prior*. The base policy's
probabilities for the task part of each observation become a log-prior ``log max(p, floor)``
that is prepended to the environment observation. The stable-baselines3 actor outputs

    logits = log-prior + W · h(observation) + b,      W = 0, b = 0 at initialisation,

so before any PPO update the router takes exactly the base policy's argmax decision (and a
distribution that only differs where the base gives a model less than ``floor``). PPO then learns
a state-dependent correction (budget pacing, provider outages) on top of it. The critic is an
ordinary MLP on the same input.

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
        prior_floor: Probability floor of the base policy inside the log-prior; lower = closer to
            the base distribution but slower to move away from it.
        n_envs: Parallel (in-process) environments.
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse: ``PPOConfig(**d)``)."""
        d = asdict(self)
        d["net_arch"] = list(self.net_arch)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PPOConfig:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError("PPOConfig", f"unknown setting(s) {unknown}; known: {sorted(known)}")
        kw = dict(d)
        if "net_arch" in kw:
            kw["net_arch"] = tuple(kw["net_arch"])
        return cls(**kw)


# --- lazily built torch / gymnasium classes ------------------------------------------------------


@cache
def _residual_policy_class() -> type:
    """The SB3 ``ActorCriticPolicy`` with a zero-initialised residual on a log-prior (built once)."""
    import torch as th
    from stable_baselines3.common.policies import ActorCriticPolicy
    from torch import nn

    class PriorMlpExtractor(nn.Module):
        """Actor latent = ``[log-prior | MLP(obs)]``; critic latent = ``MLP(obs)``."""

        def __init__(self, feature_dim: int, n_prior: int, net_arch: Sequence[int], activation_fn: type[nn.Module]):
            super().__init__()
            self.n_prior = n_prior

            def mlp() -> tuple[nn.Sequential, int]:
                layers: list[nn.Module] = []
                last = feature_dim
                for h in net_arch:
                    layers += [nn.Linear(last, h), activation_fn()]
                    last = h
                return nn.Sequential(*layers), last

            self.policy_net, hidden_pi = mlp()
            self.value_net, hidden_vf = mlp()
            self.latent_dim_pi = n_prior + hidden_pi
            self.latent_dim_vf = hidden_vf

        def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
            return self.forward_actor(features), self.forward_critic(features)

        def forward_actor(self, features: th.Tensor) -> th.Tensor:
            return th.cat([features[:, : self.n_prior], self.policy_net(features)], dim=1)

        def forward_critic(self, features: th.Tensor) -> th.Tensor:
            return self.value_net(features)

    class ResidualHead(nn.Module):
        """``logits = prior + Linear(hidden)``, the linear layer initialised to exactly zero."""

        def __init__(self, n_prior: int, hidden: int):
            super().__init__()
            self.n_prior = n_prior
            self.residual = nn.Linear(hidden, n_prior)
            nn.init.zeros_(self.residual.weight)
            nn.init.zeros_(self.residual.bias)

        def forward(self, latent: th.Tensor) -> th.Tensor:
            return latent[:, : self.n_prior] + self.residual(latent[:, self.n_prior :])

    class ResidualPriorPolicy(ActorCriticPolicy):
        """Actor-critic whose actor logits are a fixed log-prior plus a learned, zero-initialised residual.

        The first ``action_space.n`` observation columns must hold the log-prior.
        """

        def _build_mlp_extractor(self) -> None:
            arch = self.net_arch
            pi = list(arch.get("pi", [])) if isinstance(arch, dict) else list(arch)
            self.mlp_extractor = PriorMlpExtractor(  # type: ignore[assignment]
                self.features_dim, int(self.action_space.n), pi, self.activation_fn  # type: ignore[attr-defined]
            )

        def _build(self, lr_schedule: Any) -> None:
            super()._build(lr_schedule)
            n = int(self.action_space.n)  # type: ignore[attr-defined]
            self.action_net = ResidualHead(n, self.mlp_extractor.latent_dim_pi - n)
            # the optimizer must see the new head's parameters (and not the replaced ones)
            self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
                self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
            )

    ResidualPriorPolicy.__module__ = __name__
    ResidualPriorPolicy.__qualname__ = "ResidualPriorPolicy"
    return ResidualPriorPolicy


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
        """Prepends ``prior_fn(task features)`` (log-prior, ``(n_models,)``) to every observation."""

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
            lo = np.concatenate([np.full(router.n_models, math.log(router.config.prior_floor)), space.low])
            hi = np.concatenate([np.zeros(router.n_models), space.high])
            self.observation_space = gym.spaces.Box(lo.astype(np.float32), hi.astype(np.float32), dtype=np.float32)

        def observation(self, observation: np.ndarray) -> np.ndarray:
            obs = np.asarray(observation, dtype=np.float32).reshape(1, -1)
            return self._router.augment(obs)[0]

    return PriorObservation


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
    def log_prior(self, task_features: np.ndarray) -> np.ndarray:
        """``log max(p_base, floor)`` for ``(n, feature_dim)`` task features (cached per distinct row)."""
        base = self._base()
        F = np.ascontiguousarray(task_features, dtype=np.float32)
        out = np.empty((F.shape[0], self.n_models), dtype=np.float32)
        todo: list[int] = []
        for i in range(F.shape[0]):
            hit = self._prior_cache.get(F[i].tobytes())
            if hit is None:
                todo.append(i)
            else:
                out[i] = hit
        if todo:
            p = np.asarray(base.action_distribution(F[todo]), dtype=np.float64)
            if p.shape != (len(todo), self.n_models):
                raise ValueError(
                    f"PPORouter: base policy {base.version} returned shape {p.shape}, "
                    f"expected {(len(todo), self.n_models)}"
                )
            lp = np.log(np.maximum(p, self.config.prior_floor)).astype(np.float32)
            for k, i in enumerate(todo):
                out[i] = lp[k]
                if len(self._prior_cache) < _PRIOR_CACHE_MAX:
                    self._prior_cache[F[i].tobytes()] = lp[k]
        return out

    def augment(self, X: np.ndarray) -> np.ndarray:
        """``[log-prior | X]``: the actor-critic input for env observations ``X``."""
        X = self._check_obs(X)
        f, _ = self._dims()
        return np.concatenate([self.log_prior(X[:, :f]), X], axis=1)

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
        factories = [_constant(self.wrap_env(e)) for e in envs]
        vec = DummyVecEnv(factories)
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
            policy_kwargs={"net_arch": list(cfg.net_arch)},
            seed=seed,
            device="cpu",
            verbose=0,
        )
        self._trained_timesteps = 0
        self.metadata["seed"] = seed
        return self

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
        self.base = None
        self.feature_dim = self.state_dim = None
        self._model = None
        self._prior_cache = {}
        self.set_base(RoutingPolicy.load(directory / BASE_DIR))
        self.feature_dim, self.state_dim = int(state["feature_dim"]), int(state["state_dim"])
        self._trained_timesteps = int(state.get("timesteps", 0))
        self._model = PPO.load(zip_path, device="cpu", custom_objects={"policy_class": _residual_policy_class()})
        shape = self._model.observation_space.shape
        n_in = int(shape[0]) if shape else -1
        if n_in != self.n_models + self.obs_dim:
            raise PolicyLoadError(
                f"{zip_path}: network input has {n_in} columns, expected {self.n_models + self.obs_dim}"
            )

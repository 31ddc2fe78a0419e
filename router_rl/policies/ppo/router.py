"""``PPORouter``: a base routing policy's decisions plus a learned, state-aware budget price and residual.

(Slightly over 500 lines on purpose: one class, :class:`PPORouter`, whose prior, training,
inference and persistence methods share its observation layout.)

Design (see ``docs/ppo.md``): *a frozen prior plus a learned budget price and residual*. For the
task part of each observation the base policy gives a score ``z_j`` per model (its utility
``q̂_j − λ₀·ĉ_j`` for a quality-predicting base, else ``log max(p_j, floor)``) and a normalised
expected cost ``ĉ_j``; both are prepended to the environment observation. The
stable-baselines3 actor (:mod:`router_rl.policies.ppo.networks`) outputs

    logits_j = β · (z_j − δ(s) · ĉ_j) + W · h(observation) + b,

where ``δ(s)`` is a scalar *budget price* computed from the router state ``s`` only and
``β = 1 / prior_temperature``. The price head's output layer and the residual are initialised to
exactly zero, so before any PPO update the router takes exactly the base policy's argmax decision.

Observation layout: ``[task features (feature_dim) | state (state_dim)]``, the state part as
:func:`router_rl.envs.state.state_vector` builds it. torch, gymnasium and
stable-baselines3 are imported inside the methods that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.policies.base import PolicyLoadError, RoutingPolicy, register_policy
from router_rl.policies.ppo.config import PPOConfig

if TYPE_CHECKING:
    import gymnasium as gym
    from stable_baselines3 import PPO

SB3_FILE = "ppo.zip"
BASE_DIR = "base"
_PRIOR_CACHE_MAX = 1_000_000

#: Layout of the PPO artifact (``policy.json`` → ``state.ppo_format``). 2: the network input is
#: ``[prior score (m) | normalised cost (m) | env observation]`` and the actor has a budget-price
#: head. Version 1 artifacts (log-prior only, no version field) must be retrained.
PPO_FORMAT = 2
#: Margin (utility units) by which the base's chosen model leads the runner-up in the utility
#: prior, so the warm-started argmax is the base's even for ties and escalated rows.
_ARGMAX_MARGIN = 1e-4


def _is_utility_base(base: RoutingPolicy) -> bool:
    """Whether ``base`` predicts quality and cost (so the utility prior applies)."""
    from router_rl.policies.utility import UtilityPolicy

    return isinstance(base, UtilityPolicy)


def _constant(env: gym.Env) -> Callable[[], gym.Env]:
    return lambda: env


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
    refuses: ClassVar[Mapping[str, str]] = {
        "fit": "PPORouter learns from a BudgetedRouting environment, not a fixed matrix: fit the base policy on "
        "the matrix, then call PPORouter.from_base(base).fit_env(env_or_factory, seed=...) or "
        "router_rl.policies.ppo.train_ppo(spec, base=base)",
    }

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
        from router_rl.policies.ppo.wrappers import PriorObservation

        return PriorObservation(env, self)

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

        from router_rl.policies.ppo.networks import ResidualPriorPolicy

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
            from router_rl.policies.ppo.wrappers import BudgetJitter

            envs = [BudgetJitter(e, cfg.budget_jitter, seed=[seed, k]) for k, e in enumerate(envs)]
        factories = [_constant(self.wrap_env(e)) for e in envs]
        vec: Any = DummyVecEnv(factories)
        if cfg.normalize_reward:
            from stable_baselines3.common.vec_env import VecNormalize

            vec = VecNormalize(vec, norm_obs=False, norm_reward=True, gamma=cfg.gamma)
        self._model = PPO(
            ResidualPriorPolicy,
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

    @property
    def state_fields(self) -> tuple[str, ...]:
        """Names of the state columns, in order: :data:`~router_rl.envs.state.STATE_FIELDS`, then
        ``breaker:<provider>`` per provider.

        A policy exposing ``state_fields`` tells the serving engine (``router_rl.serve.engine``)
        that its observations are ``observe(task_features, state)``: the router must send its
        state with every request.

        Raises:
            RuntimeError: the layout is unknown, or the breaker columns have no provider names.
        """
        from router_rl.envs.state import STATE_FIELDS

        _, s = self._dims()
        n_prov = s - len(STATE_FIELDS)
        if n_prov != len(self.providers):
            raise RuntimeError(
                f"PPORouter: state_dim {s} = {len(STATE_FIELDS)} scalar fields + {n_prov} breaker columns, "
                f"but {len(self.providers)} provider names are known ({list(self.providers)})"
            )
        return (*STATE_FIELDS, *(f"breaker:{p}" for p in self.providers))

    def fresh_state(self) -> np.ndarray:
        """State of a fresh budget window: full budget, nothing elapsed, no local share, every breaker closed."""
        from router_rl.envs.state import STATE_FIELDS, state_vector

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
        from router_rl.envs.state import STATE_FIELDS

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

        from router_rl.policies.ppo.networks import ResidualPriorPolicy

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
        self._model = PPO.load(zip_path, device="cpu", custom_objects={"policy_class": ResidualPriorPolicy})
        shape = self._model.observation_space.shape
        n_in = int(shape[0]) if shape else -1
        if n_in != 2 * self.n_models + self.obs_dim:
            raise PolicyLoadError(
                f"{zip_path}: network input has {n_in} columns, expected {2 * self.n_models + self.obs_dim}"
            )

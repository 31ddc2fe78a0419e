"""``PPOConfig``: hyper-parameters of the PPO refinement (strict, validated on construction)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from router_rl.core.config import NonNegativeFloat, PositiveFloat, PositiveInt, PositiveIntTuple, StrictConfig

#: Accepted values of ``PPOConfig.prior``.
PriorKind = Literal["auto", "utility", "log_prob"]
PRIOR_KINDS: tuple[str, ...] = get_args(PriorKind)


class PPOConfig(StrictConfig):
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

    total_timesteps: PositiveInt = 20_000
    n_steps: PositiveInt = 256
    batch_size: PositiveInt = 64
    n_epochs: PositiveInt = 4
    learning_rate: PositiveFloat = 3e-4
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.99
    gae_lambda: Annotated[float, Field(ge=0, le=1)] = 0.95
    clip_range: PositiveFloat = 0.2
    ent_coef: NonNegativeFloat = 0.0
    vf_coef: NonNegativeFloat = 0.5
    max_grad_norm: PositiveFloat = 0.5
    net_arch: Annotated[PositiveIntTuple, Field(min_length=1)] = (64, 64)
    prior_floor: Annotated[float, Field(gt=0, lt=1)] = 1e-2
    n_envs: PositiveInt = 1
    prior: PriorKind = "auto"
    prior_temperature: PositiveFloat = 0.02
    learn_temperature: bool = True
    budget_price: bool = True
    budget_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.5
    normalize_reward: bool = True
    price_arch: PositiveIntTuple = (32,)

    @model_validator(mode="after")
    def _batch_divides_rollout(self) -> PPOConfig:
        if (self.n_steps * self.n_envs) % self.batch_size:
            raise ValueError(
                f"batch_size: must divide n_steps * n_envs = {self.n_steps * self.n_envs}, got {self.batch_size}"
            )
        return self

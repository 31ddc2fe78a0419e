"""The torch side of the PPO router: an SB3 ``ActorCriticPolicy`` with a frozen prior.

``logits = β·(prior − δ(s)·cost) + W·h(input) + b`` (see ``docs/ppo.md``). This module imports
torch and stable-baselines3 at the top, so only code that trains or runs the network imports it
(:class:`~router_rl.policies.ppo.router.PPORouter` does, inside its methods).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

__all__ = ["PriceResidualHead", "PriorMlpExtractor", "ResidualPriorPolicy", "mlp"]


def mlp(in_dim: int, arch: Sequence[int], activation_fn: type[nn.Module]) -> tuple[nn.Sequential, int]:
    """``Linear + activation`` layers of sizes ``arch``; returns the stack and its output width."""
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

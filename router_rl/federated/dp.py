"""Differential privacy for federated LoRA: Flower's client-side fixed clipping + seeded Gaussian noise.

Each client clips its update (new adapter - global adapter) to L2 norm ``C`` (Flower's
``fixedclipping_mod`` / ``compute_clip_model_update``); the server averages the clipped updates
with uniform weights and adds Gaussian noise of std ``z * C / n`` (Flower's
``DifferentialPrivacyClientSideFixedClipping``, ``n`` = sampled clients, ``z`` = noise multiplier)
drawn from a generator seeded by the run's seed. With SecAgg+ the noise is added to the securely
aggregated mean, so the server still never holds an individual update.

Privacy budget: client-level ``(epsilon, delta)`` under add/remove-one-client, computed exactly for
the composition of the rounds' Gaussian releases via Gaussian differential privacy (Dong, Roth &
Su 2019): round ``t`` with effective multiplier ``z_t`` is ``1/z_t``-GDP, ``T`` rounds compose to
``mu = sqrt(sum_t 1/z_t^2)``, and ``delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)``.
No amplification by client sampling is claimed (conservative for ``fraction_train < 1``). A round
where ``m < n`` sampled clients reply has ``z_t = z * m / n`` (the noise was sized for ``n``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, Strategy

from router_rl.federated.config import FederatedConfig


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gdp_delta(epsilon: float, mu: float) -> float:
    """``delta`` of a ``mu``-GDP mechanism at ``epsilon`` (exact for the Gaussian mechanism)."""
    if mu <= 0:
        return 0.0
    a = _phi(-epsilon / mu + mu / 2.0)
    b = _phi(-epsilon / mu - mu / 2.0)
    return max(0.0, a - (math.exp(epsilon) * b if b > 0 else 0.0))


def gdp_epsilon(mu: float, delta: float, *, tol: float = 1e-10) -> float:
    """Smallest ``epsilon`` with ``gdp_delta(epsilon, mu) <= delta`` (bisection)."""
    if not 0 < delta < 1:
        raise ValueError(f"gdp_epsilon: delta must be in (0, 1), got {delta}")
    if mu <= 0 or gdp_delta(0.0, mu) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while gdp_delta(hi, mu) > delta:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"gdp_epsilon: epsilon exceeds 1e6 for mu={mu}")
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        if gdp_delta(mid, mu) > delta:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class PrivacyReport:
    """Client-level privacy spent by a run (all values as configured / composed)."""

    noise_multiplier: float
    clipping_norm: float
    num_sampled_clients: int
    noise_stddev: float
    rounds: int
    effective_multipliers: tuple[float, ...]
    mu: float
    delta: float
    epsilon: float
    accounting: str = "gaussian-dp composition, add/remove-one client, no sampling amplification"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["effective_multipliers"] = list(self.effective_multipliers)
        return d


def privacy_report(cfg: FederatedConfig, num_sampled: int, replied_per_round: Sequence[int]) -> PrivacyReport:
    """The ``(epsilon, delta)`` of ``len(replied_per_round)`` releases of the configured mechanism.

    Args:
        cfg: Run config (``dp_noise_multiplier``, ``dp_clipping_norm``, ``dp_delta``).
        num_sampled: Clients sampled per round (the noise is sized for them).
        replied_per_round: Clients whose update entered each round's aggregate.
    """
    z = cfg.dp_noise_multiplier
    eff = tuple(z * m / num_sampled for m in replied_per_round)
    if any(e <= 0 for e in eff):
        raise ValueError(f"privacy_report: a round had no contributing client ({list(replied_per_round)})")
    mu = math.sqrt(sum(1.0 / e**2 for e in eff))
    return PrivacyReport(
        noise_multiplier=z, clipping_norm=cfg.dp_clipping_norm, num_sampled_clients=num_sampled,
        noise_stddev=z * cfg.dp_clipping_norm / num_sampled, rounds=len(eff), effective_multipliers=eff,
        mu=mu, delta=cfg.dp_delta, epsilon=gdp_epsilon(mu, cfg.dp_delta),
    )


def num_sampled_train(cfg: FederatedConfig) -> int:
    """Clients sampled per training round (``ceil(fraction_train * n)``, at least 1)."""
    return max(1, math.ceil(cfg.fraction_train * cfg.num_clients - 1e-9))


class SeededClientSideFixedClipping(DifferentialPrivacyClientSideFixedClipping):
    """Flower's client-side fixed clipping wrapper with noise from a seeded generator.

    Flower draws the noise from the global ``np.random``; this subclass draws the same
    ``N(0, (z C / n)^2)`` from ``np.random.default_rng([seed, 22])`` and records, per round, how
    many clients contributed (for :func:`privacy_report`).

    Args:
        strategy: The LoRA strategy to wrap.
        cfg: Run config (``dp_*`` fields, ``seed``).
    """

    def __init__(self, strategy: Strategy, cfg: FederatedConfig) -> None:
        super().__init__(strategy, noise_multiplier=cfg.dp_noise_multiplier, clipping_norm=cfg.dp_clipping_norm,
                         num_sampled_clients=num_sampled_train(cfg))
        self.cfg = cfg
        self._rng = np.random.default_rng([cfg.seed, 22])
        self.replied: list[int] = []

    def _add_noise_to_aggregated_arrays(self, aggregated_arrays: ArrayRecord) -> ArrayRecord:
        from flwr.supercore.differential_privacy import compute_stdv

        std = compute_stdv(self.noise_multiplier, self.clipping_norm, self.num_sampled_clients)
        out = {}
        for k, v in aggregated_arrays.items():
            a = v.numpy()
            out[k] = Array(np.asarray(a + self._rng.normal(0.0, std, a.shape).astype(a.dtype)))
        return ArrayRecord(out)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate (clipped updates), add the noise and record the round's contributors."""
        reps = list(replies)
        bad = [m.metadata.src_node_id for m in reps if m.has_error()]
        if bad:
            raise RuntimeError(f"round {server_round}: client node(s) {bad} failed")
        arrays, metrics = super().aggregate_train(server_round, reps)
        if arrays is None:
            raise RuntimeError(f"round {server_round}: DP aggregation returned no arrays")
        self.replied.append(len(reps))
        return arrays, metrics

    def report(self) -> PrivacyReport:
        """Privacy spent so far."""
        return privacy_report(self.cfg, self.num_sampled_clients, self.replied)

"""Exploration applied on top of a policy's action distribution (the logging policy's randomness).

One function decides the exact probabilities a request is sampled with, for the live router and
for simulated logs alike, so the logged propensities are the true sampling probabilities:

1. tempering: ``p_i ∝ p_i ** (1 / temperature)`` over the allowed models (``temperature > 1``
   flattens the distribution, ``< 1`` sharpens it; ``None`` leaves it as it is);
2. epsilon mixing: ``(1 - epsilon) * p + epsilon * uniform(allowed)``.

Models outside ``allowed`` (privacy-forced local, budget masks, open breakers) keep probability
0 whatever the settings: exploration never sends a request where a promise forbids it.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from router_rl.core.config import StrictConfig, UnitFloat


class ExplorationConfig(StrictConfig):
    """How much a logging policy explores.

    Attributes:
        epsilon: Share of probability mass spread uniformly over the allowed models, in [0, 1).
        temperature: Softmax-style tempering of the policy's probabilities (``None``: none).
    """

    epsilon: UnitFloat = 0.0
    temperature: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _below_one(self) -> ExplorationConfig:
        if self.epsilon >= 1.0:
            raise ValueError("epsilon: expected < 1 (epsilon 1 ignores the policy entirely)")
        return self

    @property
    def active(self) -> bool:
        """Whether it changes any distribution."""
        return self.epsilon > 0 or (self.temperature is not None and self.temperature != 1.0)

    def to_log(self) -> dict[str, float]:
        """The settings as logged in the decision log's ``exploration`` column."""
        out = {"epsilon": float(self.epsilon)}
        if self.temperature is not None:
            out["temperature"] = float(self.temperature)
        return out


def explore(probs: np.ndarray, config: ExplorationConfig, allowed: np.ndarray | None = None) -> np.ndarray:
    """The distribution actually sampled from, for one row (1-D) or a batch (2-D, rows).

    Args:
        probs: The policy's probabilities (each row sums to 1; zeros allowed).
        config: The exploration settings.
        allowed: Boolean mask of the models that may be chosen (same shape as ``probs`` or
            broadcastable); ``None`` = every model. Each row needs one allowed model.

    Returns:
        Float64 probabilities, each row summing to 1, zero outside ``allowed``.

    Raises:
        ValueError: a row with no allowed model, or probabilities that are negative / not finite.
    """
    p = np.asarray(probs, dtype=np.float64)
    one = p.ndim == 1
    p2 = np.atleast_2d(p)
    if not np.all(np.isfinite(p2)) or np.any(p2 < 0):
        raise ValueError("explore: probabilities must be finite and >= 0")
    mask = np.ones_like(p2, dtype=bool) if allowed is None else np.broadcast_to(np.atleast_2d(allowed), p2.shape)
    n_allowed = mask.sum(axis=1)
    if np.any(n_allowed == 0):
        raise ValueError(f"explore: row {int(np.argmax(n_allowed == 0))} has no allowed model")
    q = np.where(mask, p2, 0.0)
    if config.temperature is not None and config.temperature != 1.0:
        with np.errstate(divide="ignore"):
            logq = np.where(q > 0, np.log(np.where(q > 0, q, 1.0)) / config.temperature, -np.inf)
        top = logq.max(axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        q = np.where(q > 0, np.exp(logq - top), 0.0)
    total = q.sum(axis=1, keepdims=True)
    uniform = mask / n_allowed[:, None]
    # a row whose policy mass lies entirely outside ``allowed`` is uniform over the allowed models
    q = np.where(total > 0, q / np.where(total > 0, total, 1.0), uniform)
    if config.epsilon > 0:
        q = (1.0 - config.epsilon) * q + config.epsilon * uniform
    q = q / q.sum(axis=1, keepdims=True)
    return q[0] if one else q


def explored(base_probs: np.ndarray, chosen: np.ndarray | int) -> np.ndarray | bool:
    """Whether the chosen model is not the base policy's top choice (the ``explored`` flag)."""
    b = np.asarray(base_probs, dtype=np.float64)
    if b.ndim == 1:
        return bool(int(chosen) != int(np.argmax(b)))
    return np.asarray(chosen) != np.argmax(b, axis=1)

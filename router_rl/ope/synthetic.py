"""Synthetic logged bandit feedback with a known true policy value (tests, benchmarks).

Each row has a latent context; the expected reward of action ``a`` is a logistic function of
it, the logging policy is a softmax over a noisy copy of the expected rewards (stochastic, full
support), the target policy a sharper softmax. Rewards are Bernoulli draws, the reward model is
the truth plus Gaussian noise, and the true target value is ``mean_i sum_a pi(a|x_i) q(x_i, a)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router_rl.core.seeding import SeedLike, as_generator
from router_rl.ope.validation import OPEInputError


@dataclass(frozen=True)
class SyntheticLogs:
    """Simulated logs; arrays follow :class:`router_rl.ope.estimators.LoggedFeedback`.

    Attributes:
        rewards: ``(n,)`` observed 0/1 rewards.
        actions: ``(n,)`` logged actions.
        propensities: ``(n,)`` logging probabilities of the logged actions.
        logging: ``(n, k)`` logging distribution.
        target: ``(n, k)`` target distribution.
        expected_reward: ``(n, k)`` true expected rewards.
        reward_hat: ``(n, k)`` noisy reward-model predictions.
        true_value: Expected value of the target policy on these contexts.
    """

    rewards: np.ndarray
    actions: np.ndarray
    propensities: np.ndarray
    logging: np.ndarray
    target: np.ndarray
    expected_reward: np.ndarray
    reward_hat: np.ndarray
    true_value: float


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class SyntheticBandit:
    """A fixed bandit problem: contexts, policies and expected rewards (logs are drawn from it).

    Attributes:
        logging: ``(n, k)`` logging distribution.
        target: ``(n, k)`` target distribution.
        expected_reward: ``(n, k)`` true expected rewards.
        reward_hat: ``(n, k)`` noisy reward-model predictions.
        true_value: Value of the target policy on these contexts.
    """

    logging: np.ndarray
    target: np.ndarray
    expected_reward: np.ndarray
    reward_hat: np.ndarray
    true_value: float

    def sample_logs(self, rng: SeedLike) -> SyntheticLogs:
        """Draw one logged action and a Bernoulli reward per context from the logging policy."""
        gen = as_generator(rng)
        n, k = self.logging.shape
        u = gen.random((n, 1)).astype(self.logging.dtype)
        actions = np.minimum((self.logging.cumsum(axis=1) < u).sum(axis=1), k - 1).astype(np.int64)
        rows = np.arange(n)
        return SyntheticLogs(
            rewards=(gen.random(n) < self.expected_reward[rows, actions]).astype(np.float64),
            actions=actions,
            propensities=self.logging[rows, actions].astype(np.float64),
            logging=self.logging,
            target=self.target,
            expected_reward=self.expected_reward,
            reward_hat=self.reward_hat,
            true_value=self.true_value,
        )


def make_bandit(
    n: int,
    n_actions: int,
    rng: SeedLike,
    *,
    logging_temperature: float = 0.5,
    target_temperature: float = 0.15,
    reward_model_noise: float = 0.05,
    dtype: type[np.floating] = np.float64,
) -> SyntheticBandit:
    """A bandit problem of ``n`` contexts and ``n_actions`` actions.

    Args:
        n: Number of contexts (>= 1).
        n_actions: Number of actions (>= 2).
        rng: Seed or generator.
        logging_temperature: Softmax temperature of the logging policy (higher = more uniform).
        target_temperature: Softmax temperature of the target policy.
        reward_model_noise: Standard deviation of the reward model's error.
        dtype: Float dtype of the matrices (float32 halves memory for 1M x 10 benchmarks).
    """
    if n < 1:
        raise OPEInputError("n", f"expected >= 1, got {n}")
    if n_actions < 2:
        raise OPEInputError("n_actions", f"expected >= 2, got {n_actions}")
    if logging_temperature <= 0 or target_temperature <= 0:
        raise OPEInputError("temperature", "logging_temperature and target_temperature must be > 0")
    gen = as_generator(rng)
    ctx = gen.normal(size=(n, 1)).astype(dtype)
    slope = np.linspace(-1.5, 1.5, n_actions, dtype=dtype)[None, :]
    bias = gen.normal(scale=0.5, size=(1, n_actions)).astype(dtype)
    q = 1.0 / (1.0 + np.exp(-(ctx * slope + bias)))
    logging = _softmax((q + gen.normal(scale=0.1, size=q.shape).astype(dtype)) / logging_temperature)
    target = _softmax(q / target_temperature)
    reward_hat = np.clip(q + gen.normal(scale=reward_model_noise, size=q.shape).astype(dtype), 0.0, 1.0)
    true_value = float(np.einsum("ij,ij->i", target, q).mean())
    return SyntheticBandit(
        logging=logging, target=target, expected_reward=q, reward_hat=reward_hat, true_value=true_value
    )


def simulate_logs(n: int, n_actions: int, rng: SeedLike, **kwargs: object) -> SyntheticLogs:
    """A fresh bandit problem (:func:`make_bandit`) and one draw of logs from it."""
    gen = as_generator(rng)
    return make_bandit(n, n_actions, gen, **kwargs).sample_logs(gen)  # type: ignore[arg-type]

"""RouteLLM's similarity-weighted ranking router (``sw_ranking``), generalised to N models.

Source: RouteLLM (Ong et al., 2024, arXiv:2406.18665), ``routellm/routers/routers.py``
(``SWRankingRouter``) and ``routellm/routers/similarity_weighted/utils.py``
(``compute_elo_mle_with_tie``). For a query, RouteLLM

1. computes the cosine similarity ``s_t`` of the query to every training battle's prompt;
2. weights battle ``t`` by ``w_t = 10 · 10^(s_t / max_t s_t)``;
3. fits a Bradley-Terry model (an unpenalised logistic regression without intercept; one tie =
   one win for each side) to the *weighted* battles, giving ratings;
4. routes on the strong model's win rate against the weak one, ``1 / (1 + 10^((r_weak − r_strong) / 400))``.

Here a "battle" is every pair of models on a training task of the outcome matrix: the model with
the higher quality wins, equal quality is a tie (``ties="half"``: counted as half a win for each
side, RouteLLM's rule; ``"drop"``: ignored). Similarity is cosine on the standardised encoder
features (RouteLLM uses OpenAI embeddings; with ``EncoderConfig.embedding_model_path`` the features
include a sentence embedding). Deviations, all needed for N models and the utility rule:

* RouteLLM first groups models into 10 Elo tiers; with the fleet's own models there is no need:
  every model is its own player.
* The weighted fit uses the sufficient statistics ``W_jk = Σ_t w_t · win_t(j, k)`` and a few
  Newton steps on the ratings (plus a tiny ridge, ``ridge`` × the mean pair weight, so that a model
  that never loses still has a finite rating: RouteLLM's solver stops at finite values too).
* The decision rule needs a success probability per model, not a pairwise win rate. Under
  independent Bernoulli outcomes the decisive-pair win probability is ``σ(logit p_j − logit p_k)``,
  so Bradley-Terry ratings (natural-log scale) are the models' success logits up to one shift; the
  shift ``c`` is set so that the models' mean ``σ(θ_j + c)`` equals the similarity-weighted mean
  success rate of the training tasks. Ties counted as half wins shrink the rating differences (as in
  RouteLLM), which keeps the predictions close to that mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from router_rl.core.config import PositiveFloat, StrictConfig
from router_rl.policies.base import register_policy
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.supervised import KNNPolicy, _Standardised

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix

__all__ = ["SWRankingConfig", "SWRankingPolicy", "bradley_terry", "pairwise_wins", "similarity_weights"]


class SWRankingConfig(StrictConfig):
    """Hyper-parameters of the similarity-weighted ranking router.

    Attributes:
        ties: ``half`` (RouteLLM: a tie is half a win for each side) or ``drop``.
        ridge: L2 strength on the ratings, relative to the mean weight of a pair's battles.
        newton_steps: Most Newton iterations of the weighted Bradley-Terry fit.
        batch_size: Queries fitted together (memory: ``batch_size × n_models²`` floats).
    """

    ties: Literal["half", "drop"] = "half"
    ridge: PositiveFloat = 1e-4
    newton_steps: Annotated[int, Field(ge=1)] = 30
    batch_size: Annotated[int, Field(ge=1)] = 128


def pairwise_wins(quality: np.ndarray, *, ties: str = "half") -> np.ndarray:
    """``(n, m, m)`` float32: ``[t, j, k]`` = 1 when model ``j`` beats ``k`` on task ``t``.

    A tie counts 0.5 for each side with ``ties="half"`` (RouteLLM) and 0 with ``"drop"``; the
    diagonal is 0.
    """
    q = np.asarray(quality, dtype=np.float64)
    diff = q[:, :, None] - q[:, None, :]
    win = (diff > 0).astype(np.float32)
    if ties == "half":
        win += 0.5 * (diff == 0)
    m = q.shape[1]
    win[:, np.arange(m), np.arange(m)] = 0.0
    return win


def similarity_weights(sim: np.ndarray) -> np.ndarray:
    """RouteLLM's battle weights ``10 · 10^(s / max s)`` per row of similarities ``(n_q, n_train)``.

    The row maximum is taken in absolute value (at least 1e-12), so that a query dissimilar to
    every training task (all ``s < 0``) still weights its most similar tasks highest.
    """
    top = np.maximum(np.abs(sim.max(axis=1, keepdims=True)), 1e-12)
    return np.asarray(10.0 * np.power(10.0, sim / top))


def bradley_terry(W: np.ndarray, *, ridge: float = 1e-4, steps: int = 30) -> np.ndarray:
    """Ratings (natural-log scale, mean 0) of weighted win counts ``W`` ``(b, m, m)`` (``[j, k]``: j beat k).

    Maximises ``Σ W_jk log σ(θ_j − θ_k) − ½ r ‖θ‖²`` by Newton's method, ``r = ridge`` × the mean
    of ``W_jk + W_kj`` over pairs; deterministic.
    """
    W = np.asarray(W, dtype=np.float64)
    b, m, _ = W.shape
    N = W + W.transpose(0, 2, 1)
    off = ~np.eye(m, dtype=bool)
    r = ridge * np.maximum(N[:, off].mean(axis=1), 1e-12)  # (b,)
    theta = np.zeros((b, m))
    eye = np.eye(m)
    for _ in range(steps):
        s = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))
        grad = (W - N * s).sum(axis=2) - r[:, None] * theta
        h = N * s * (1.0 - s)
        H = -h + np.einsum("bj,jk->bjk", h.sum(axis=2), eye) + r[:, None, None] * eye
        step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
        theta = theta + step
        if np.abs(step).max() < 1e-9:
            break
    return np.asarray(theta - theta.mean(axis=1, keepdims=True))


def _shift_to_rate(theta: np.ndarray, rate: np.ndarray, steps: int = 40) -> np.ndarray:
    """Per row, ``c`` with ``mean_j σ(θ_j + c) = rate`` (Newton on a monotone function)."""
    target = np.clip(rate, 1e-3, 1 - 1e-3)
    c = np.log(target / (1 - target))
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(theta + c[:, None])))
        f = p.mean(axis=1) - target
        g = np.maximum((p * (1 - p)).mean(axis=1), 1e-12)
        c = np.clip(c - f / g, -30.0, 30.0)
    return np.asarray(c)


@register_policy
class SWRankingPolicy(_Standardised):
    """RouteLLM's similarity-weighted Bradley-Terry ranking for N models (see module docstring).

    Args:
        models: Candidate model ids.
        config: :class:`SWRankingConfig` or its dict.
        decision: Decision rule knobs (λ, μ, ...).
        metadata: Extra artifact metadata.
    """

    kind = "sw-ranking"
    _arrays = ("train_X", "train_Q")

    def __init__(
        self,
        models: Sequence[str],
        *,
        config: SWRankingConfig | dict[str, Any] | None = None,
        decision: DecisionConfig | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        self.config = config if isinstance(config, SWRankingConfig) else SWRankingConfig.from_dict(config or {})
        self.train_X = np.zeros((0, 0), dtype=np.float32)
        self.train_Q = np.zeros((0, self.n_models))
        self._wins: np.ndarray | None = None

    def _config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def _set_config(self, d: dict[str, Any]) -> None:
        self.config = SWRankingConfig.from_dict(d)
        self._wins = None

    _unit = staticmethod(KNNPolicy._unit)  # rows scaled to unit norm: cosine similarity by dot product

    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        self.train_X = self._unit(self._standardise_fit(X)).astype(np.float32)
        self.train_Q = np.clip(matrix.quality, 0.0, 1.0)
        self._wins = None
        m = self.n_models
        q = self.train_Q
        decisive = float((q[:, :, None] != q[:, None, :])[:, ~np.eye(m, dtype=bool)].mean())
        self.metadata["sw_ranking"] = {"ties": self.config.ties, "n_battles": int(matrix.n_tasks * m * (m - 1) // 2),
                                       "decisive_share": decisive}

    def _win_matrix(self) -> np.ndarray:
        if self._wins is None:
            self._wins = pairwise_wins(self.train_Q, ties=self.config.ties)
        return self._wins

    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        win = self._win_matrix()
        n_train, m = self.train_Q.shape
        flat = win.reshape(n_train, m * m)
        rate_t = self.train_Q.mean(axis=1)
        Z = self._unit(self._standardise(X))
        out = np.zeros((X.shape[0], m))
        bs = self.config.batch_size
        for a in range(0, X.shape[0], bs):
            w = similarity_weights(Z[a : a + bs] @ self.train_X.T)  # (b, n_train)
            W = (w.astype(np.float32) @ flat).reshape(-1, m, m)
            theta = bradley_terry(W, ridge=self.config.ridge, steps=self.config.newton_steps)
            rate = (w @ rate_t) / w.sum(axis=1)
            c = _shift_to_rate(theta, rate)
            out[a : a + bs] = 1.0 / (1.0 + np.exp(-(theta + c[:, None])))
        return out

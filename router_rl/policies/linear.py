"""Multi-output L2-regularised logistic regression on standardised features (numpy + scipy L-BFGS).

Used by the LightGBM router as a *linear head*: with a few hundred training tasks and a few
hundred sparse hashed n-gram columns, a strongly regularised linear model ranks tasks better than
shallow trees, and its out-of-fold logits are a strong stacked input for the booster. One joint
optimisation fits every model's head (labels may be fractional: expected quality in [0, 1]);
the objective per head is sklearn's ``C · Σ logloss + ½‖w‖²`` (intercept not penalised).
Inference is one matrix product (standardisation is folded into the weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LinearHead:
    """Fitted multi-output logistic regression: ``logit = X @ W + b`` on raw features.

    Attributes:
        W: ``(d, m)`` weights (standardisation folded in).
        b: ``(m,)`` intercepts.
    """

    W: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        # the same memory layout fitted and loaded (BLAS kernels, so summation order, follow it)
        self.W = np.ascontiguousarray(self.W)
        self.b = np.ascontiguousarray(self.b)

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, *, C: float, max_iter: int = 500) -> LinearHead:
        """Fit on ``X`` ``(n, d)`` and labels ``Y`` ``(n, m)`` in [0, 1] (deterministic).

        Args:
            X: Features.
            Y: Per-model quality labels.
            C: Inverse L2 strength (sklearn convention), > 0.
            max_iter: L-BFGS iterations.
        """
        from scipy.optimize import minimize

        if not C > 0:
            raise ValueError(f"LinearHead.fit: C must be > 0, got {C!r}")
        X = np.asarray(X, dtype=np.float64)
        Y = np.clip(np.asarray(Y, dtype=np.float64), 0.0, 1.0)
        d = X.shape[1]
        m = Y.shape[1]
        mu = X.mean(axis=0)
        sd = X.std(axis=0)
        sd = np.where(sd > 1e-8, sd, 1.0)
        Z = (X - mu) / sd
        rate = np.clip(Y.mean(axis=0), 1e-3, 1 - 1e-3)
        b0 = np.log(rate / (1 - rate))
        lam = 1.0 / C

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W = theta[: d * m].reshape(d, m)
            b = theta[d * m :]
            z = Z @ W + b
            # log(1 + e^z) - y z, computed stably
            loss = float((np.logaddexp(0.0, z) - Y * z).sum() + 0.5 * lam * (W * W).sum())
            g = 1.0 / (1.0 + np.exp(-z)) - Y
            gW = Z.T @ g + lam * W
            return loss, np.concatenate([gW.ravel(), g.sum(axis=0)])

        theta0 = np.concatenate([np.zeros(d * m), b0])
        res = minimize(fun, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
        W = res.x[: d * m].reshape(d, m)
        b = res.x[d * m :]
        Wr = W / sd[:, None]
        return cls(W=Wr.astype(np.float32), b=(b - mu @ Wr).astype(np.float64))

    def logits(self, X: np.ndarray) -> np.ndarray:
        """``(n, m)`` logits."""
        return np.asarray(X, dtype=np.float32) @ self.W + self.b


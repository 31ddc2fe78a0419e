"""Supervised quality predictors from the literature, all deciding by quality − λ·cost.

* ``knn``  — RouterBench's kNN router: mean quality of the k most similar training tasks
  (cosine similarity on standardised features).
* ``mlp``  — RouterBench's MLP router: one multi-output MLP regressor (scikit-learn, seeded),
  served with a numpy forward pass from saved weights (no pickle).
* ``mf``   — RouteLLM's matrix factorisation generalised to N models: ``logit(q_ij) =
  <e_j, P x_i> + b_j`` (learned model embeddings ``e_j``, projection ``P`` of the task features),
  trained with full-batch Adam on the binary cross-entropy of the training outcome matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field

from router_rl.core.config import (
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    PositiveIntTuple,
    StrictConfig,
)
from router_rl.core.errors import ConfigError
from router_rl.policies.base import PolicyLoadError, register_policy
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.utility import UtilityPolicy

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix


class _Standardised(UtilityPolicy):
    """Adds train-set feature standardisation and npz persistence of named arrays."""

    kind = "_standardised"
    _arrays: tuple[str, ...] = ()

    def __init__(self, models: Sequence[str], *, decision: DecisionConfig | dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        self.mean = np.zeros(0, dtype=np.float32)
        self.scale = np.ones(0, dtype=np.float32)

    def _standardise_fit(self, X: np.ndarray) -> np.ndarray:
        self.mean = X.mean(axis=0).astype(np.float32)
        sd = X.std(axis=0)
        self.scale = np.where(sd > 1e-8, sd, 1.0).astype(np.float32)
        return self._standardise(X)

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale).astype(np.float32)

    def _save_model(self, directory: Path) -> dict[str, Any] | None:
        arrays = {name: getattr(self, name) for name in ("mean", "scale", *self._arrays)}
        np.savez(directory / "weights.npz", **arrays)
        return {"config": self._config_dict()}

    def _load_model(self, directory: Path, state: dict[str, Any]) -> None:
        path = directory / "weights.npz"
        if not path.is_file():
            raise PolicyLoadError(f"{path}: missing weights file")
        with np.load(path) as z:
            missing = [k for k in ("mean", "scale", *self._arrays) if k not in z.files]
            if missing:
                raise PolicyLoadError(f"{path}: missing arrays {missing}")
            for k in ("mean", "scale", *self._arrays):
                setattr(self, k, z[k])
        self._set_config(state.get("config") or {})

    def _config_dict(self) -> dict[str, Any]:
        return {}

    def _set_config(self, d: dict[str, Any]) -> None:
        """Restore hyper-parameters."""


@register_policy
class KNNPolicy(_Standardised):
    """k-nearest-neighbour quality predictor (RouterBench).

    Args:
        models: Candidate model ids.
        k: Neighbours averaged (>= 1).
        decision: Decision rule knobs.
    """

    kind = "knn"
    _arrays = ("train_X", "train_Q")

    def __init__(self, models: Sequence[str], *, k: int = 20, decision: DecisionConfig | dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        self._set_config({"k": k})
        self.train_X = np.zeros((0, 0), dtype=np.float32)
        self.train_Q = np.zeros((0, self.n_models))

    def _set_config(self, d: dict[str, Any]) -> None:
        k = d.get("k", 20)
        if not (isinstance(k, int) and k >= 1):
            raise ConfigError("knn.k", f"expected an integer >= 1, got {k!r}")
        self.k = k

    def _config_dict(self) -> dict[str, Any]:
        return {"k": self.k}

    @staticmethod
    def _unit(X: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(n > 0, n, 1.0)

    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        self.train_X = self._unit(self._standardise_fit(X)).astype(np.float32)
        self.train_Q = np.clip(matrix.quality, 0.0, 1.0)

    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        sim = self._unit(self._standardise(X)) @ self.train_X.T
        k = min(self.k, self.train_X.shape[0])
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        return np.asarray(self.train_Q[idx].mean(axis=1))


class MLPConfig(StrictConfig):
    """MLP router hyper-parameters.

    Attributes:
        hidden: Hidden layer sizes (non-empty).
        alpha: L2 penalty (sklearn ``alpha``).
        learning_rate_init: Adam learning rate.
        max_iter: Maximum epochs.
        early_stopping: Hold out 10% of the training tasks and stop when it stops improving.
    """

    hidden: Annotated[PositiveIntTuple, Field(min_length=1)] = (64,)
    alpha: NonNegativeFloat = 1e-2
    learning_rate_init: PositiveFloat = 1e-3
    max_iter: PositiveInt = 300
    early_stopping: bool = False


@register_policy
class MLPPolicy(_Standardised):
    """Multi-output MLP quality regressor (RouterBench), sklearn-trained, numpy-served.

    Args:
        models: Candidate model ids.
        config: :class:`MLPConfig` or its dict.
        decision: Decision rule knobs.
    """

    kind = "mlp"

    def __init__(self, models: Sequence[str], *, config: MLPConfig | dict[str, Any] | None = None,
                 decision: DecisionConfig | dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        self.config = config if isinstance(config, MLPConfig) else MLPConfig.from_dict(config or {})
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []

    def _set_config(self, d: dict[str, Any]) -> None:
        self.config = MLPConfig.from_dict(d)

    def _config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        Z = self._standardise_fit(X)
        cfg = self.config
        reg = MLPRegressor(
            hidden_layer_sizes=cfg.hidden,
            alpha=cfg.alpha,
            learning_rate_init=cfg.learning_rate_init,
            max_iter=cfg.max_iter,
            early_stopping=cfg.early_stopping and matrix.n_tasks >= 20,
            random_state=int(rng.integers(0, 2**31 - 1)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reg.fit(Z, np.clip(matrix.quality, 0.0, 1.0))
        self.weights = [w.astype(np.float32) for w in reg.coefs_]
        self.biases = [b.astype(np.float32) for b in reg.intercepts_]

    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        h = self._standardise(X)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return np.asarray(h, dtype=np.float64).reshape(X.shape[0], self.n_models)

    def _save_model(self, directory: Path) -> dict[str, Any] | None:
        arrays: dict[str, np.ndarray] = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        np.savez(directory / "weights.npz", **arrays)  # type: ignore[arg-type]
        return {"config": self._config_dict(), "n_layers": len(self.weights)}

    def _load_model(self, directory: Path, state: dict[str, Any]) -> None:
        path = directory / "weights.npz"
        if not path.is_file():
            raise PolicyLoadError(f"{path}: missing weights file")
        n = int(state.get("n_layers", 0))
        with np.load(path) as z:
            try:
                self.mean, self.scale = z["mean"], z["scale"]
                self.weights = [z[f"w{i}"] for i in range(n)]
                self.biases = [z[f"b{i}"] for i in range(n)]
            except KeyError as e:
                raise PolicyLoadError(f"{path}: missing array {e}") from e
        self._set_config(state.get("config") or {})


class MFConfig(StrictConfig):
    """Matrix-factorisation router hyper-parameters.

    Attributes:
        dim: Latent dimension.
        l2: L2 penalty.
        learning_rate: Adam learning rate.
        epochs: Full-batch epochs.
    """

    dim: PositiveInt = 16
    l2: NonNegativeFloat = 1e-3
    learning_rate: PositiveFloat = 0.02
    epochs: PositiveInt = 300


@register_policy
class MFPolicy(_Standardised):
    """Matrix factorisation (RouteLLM ``mf``) generalised to N models.

    ``q̂_ij = sigmoid(<E_j, P^T x_i> + b_j)``; ``P`` projects standardised features to ``dim``.
    """

    kind = "mf"
    _arrays = ("P", "E", "b")

    def __init__(self, models: Sequence[str], *, config: MFConfig | dict[str, Any] | None = None,
                 decision: DecisionConfig | dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        self.config = config if isinstance(config, MFConfig) else MFConfig.from_dict(config or {})
        self.P = np.zeros((0, 0), dtype=np.float32)
        self.E = np.zeros((self.n_models, 0), dtype=np.float32)
        self.b = np.zeros(self.n_models, dtype=np.float32)

    def _config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        Z = self._standardise_fit(X).astype(np.float64)
        n, d = Z.shape
        m, k = self.n_models, self.config.dim
        y = np.clip(matrix.quality, 0.0, 1.0)
        rate = np.clip(y.mean(axis=0), 1e-3, 1 - 1e-3)
        params = {
            "P": rng.normal(0, 1 / np.sqrt(max(d, 1)), (d, k)),
            "E": rng.normal(0, 0.1, (m, k)),
            "b": np.log(rate / (1 - rate)),
        }
        mom = {key: np.zeros_like(v) for key, v in params.items()}
        vel = {key: np.zeros_like(v) for key, v in params.items()}
        lr, l2 = self.config.learning_rate, self.config.l2
        for t in range(1, self.config.epochs + 1):
            H = Z @ params["P"]  # (n, k)
            logits = H @ params["E"].T + params["b"]
            g = (1.0 / (1.0 + np.exp(-logits)) - y) / (n * m)  # dLoss/dlogit
            grads = {
                "E": g.T @ H + l2 * params["E"],
                "b": g.sum(axis=0),
                "P": Z.T @ (g @ params["E"]) + l2 * params["P"],
            }
            for key in params:  # Adam
                mom[key] = 0.9 * mom[key] + 0.1 * grads[key]
                vel[key] = 0.999 * vel[key] + 0.001 * grads[key] ** 2
                mh = mom[key] / (1 - 0.9**t)
                vh = vel[key] / (1 - 0.999**t)
                params[key] = params[key] - lr * mh / (np.sqrt(vh) + 1e-8)
        self.P = params["P"].astype(np.float32)
        self.E = params["E"].astype(np.float32)
        self.b = params["b"].astype(np.float32)

    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        logits = (self._standardise(X) @ self.P) @ self.E.T + self.b
        return np.asarray(1.0 / (1.0 + np.exp(-logits.astype(np.float64))))

"""Text-classifier routers the routing literature compares against: TF-IDF + logistic regression and a
calibrated linear SVM, each one binary classifier per model predicting success.

* ``tfidf-lr``: the TF-IDF logistic-regression reference router of RouterBench's baselines and of
  this project's ``experiments/tfidf_logreg.py`` (issue #5's anchors), here on the shared encoder's
  features: every column is scaled to ``[-1, 1]`` (max-abs over the training tasks) and weighted by
  its smoothed inverse document frequency ``idf = log((1 + n) / (1 + df)) + 1`` (``df`` = training
  tasks where the column is non-zero), so the hashed word / char n-gram blocks become hashed TF-IDF
  vectors; then one L2 logistic regression per model (scikit-learn ``LogisticRegression``, ``C``).
* ``svm``: LLMRouter's SVM router (``llmrouter/models/svmrouter``, scikit-learn ``SVC`` on query
  embeddings). Adapted to N models with a cost trade-off: one *linear* SVM per model
  (``LinearSVC`` on standardised features) predicting success, with Platt-scaled probabilities fitted
  on 3-fold cross-fitted decision values (what ``CalibratedClassifierCV(method="sigmoid",
  ensemble=False)`` does), so its ``q̂`` feeds the same utility rule as every quality router.
  LLMRouter's SVM classifies the best model per query instead; a per-model success probability is
  what a λ (cost) sweep needs.

Labels are successes ``quality >= 0.5`` (as in ``experiments/tfidf_logreg.py``). A model whose
training labels have fewer than ``min_class_count`` tasks in the minority class cannot be fitted by
either classifier: it gets its training success rate, and such models are counted in
``metadata["textclf"]["constant_models"]`` (never silently).

Inference is one matrix product: ``q̂ = sigmoid(A ⊙ (X @ W + b) + C)`` with the feature scaling
folded into ``W`` / ``b`` (``A = 1, C = 0`` for the logistic regression; the Platt map for the SVM).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from router_rl.core.config import PositiveFloat, PositiveInt, StrictConfig
from router_rl.policies.base import PolicyLoadError, register_policy
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.utility import UtilityPolicy

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix

__all__ = ["SVMPolicy", "TextClfConfig", "TfidfLRPolicy", "idf_weights"]


class TextClfConfig(StrictConfig):
    """Hyper-parameters of the per-model text classifiers.

    Attributes:
        C: Inverse regularisation strength (scikit-learn ``C``).
        max_iter: Solver iterations.
        min_class_count: Fewest tasks of the minority class for a model to get a classifier (else
            its training success rate, counted in the metadata).
        success_threshold: A task counts as a success of a model when its quality is >= this.
        calibration_folds: Folds of the SVM's cross-fitted Platt scaling (``svm`` only).
    """

    C: PositiveFloat = 1.0
    max_iter: PositiveInt = 2000
    min_class_count: Annotated[int, Field(ge=1)] = 3
    success_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    calibration_folds: Annotated[int, Field(ge=2)] = 3


def idf_weights(X: np.ndarray) -> np.ndarray:
    """Smoothed inverse document frequency per column: ``log((1 + n) / (1 + df)) + 1``."""
    n = X.shape[0]
    df = (np.asarray(X) != 0).sum(axis=0)
    return (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


class _PerModelLinear(UtilityPolicy):
    """Shared state of the per-model linear classifiers: ``q̂ = sigmoid(A·(X W + b) + C)``."""

    kind = "_per_model_linear"
    #: Short name of the classifier in metadata.
    method: ClassVar[str] = ""

    def __init__(
        self,
        models: Sequence[str],
        *,
        config: TextClfConfig | dict[str, Any] | None = None,
        decision: DecisionConfig | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        self.config = config if isinstance(config, TextClfConfig) else TextClfConfig.from_dict(config or {})
        m = self.n_models
        self.W = np.zeros((0, m), dtype=np.float64)
        self.b = np.zeros(m)
        self.A = np.ones(m)
        self.C = np.zeros(m)

    # --- training ----------------------------------------------------------------------------
    def _transform_fit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(Z, shift, scale)`` with ``Z = (X − shift) · scale`` (the classifier's input)."""
        raise NotImplementedError

    def _fit_one(self, Z: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float, float, float]:
        """``(w, b, A, C)`` of one model on transformed features and 0/1 labels."""
        raise NotImplementedError

    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        cfg = self.config
        X = np.asarray(X, dtype=np.float64)
        Z, shift, scale = self._transform_fit(X)
        Y = (np.asarray(matrix.quality) >= cfg.success_threshold).astype(np.int64)
        n, d = X.shape
        m = self.n_models
        W = np.zeros((d, m))
        b = np.zeros(m)
        A = np.ones(m)
        C = np.zeros(m)
        constant: dict[str, float] = {}
        for j in range(m):
            pos = int(Y[:, j].sum())
            seed = int(rng.integers(0, 2**31 - 1))
            if min(pos, n - pos) < cfg.min_class_count:
                rate = float(np.clip(pos / n, 1e-3, 1 - 1e-3))
                b[j] = np.log(rate / (1 - rate))
                constant[self.models[j]] = pos / n
                continue
            w, bj, aj, cj = self._fit_one(Z, Y[:, j], seed)
            W[:, j], b[j], A[j], C[j] = w * scale, bj - float((shift * scale) @ w), aj, cj
        self.W, self.b, self.A, self.C = W, b, A, C
        self.metadata["textclf"] = {
            "method": self.method,
            "C": cfg.C,
            "success_threshold": cfg.success_threshold,
            "constant_models": constant,
            "n_constant_models": len(constant),
        }

    # --- inference ---------------------------------------------------------------------------
    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        z = np.asarray(X, dtype=np.float64) @ self.W + self.b
        return np.asarray(_sigmoid(self.A * z + self.C))

    # --- persistence -------------------------------------------------------------------------
    def _save_model(self, directory: Path) -> dict[str, Any] | None:
        np.savez(directory / "weights.npz", W=self.W, b=self.b, A=self.A, C=self.C)
        return {"config": self.config.to_dict()}

    def _load_model(self, directory: Path, state: dict[str, Any]) -> None:
        path = directory / "weights.npz"
        if not path.is_file():
            raise PolicyLoadError(f"{path}: missing weights file")
        with np.load(path) as z:
            missing = [k for k in ("W", "b", "A", "C") if k not in z.files]
            if missing:
                raise PolicyLoadError(f"{path}: missing arrays {missing}")
            self.W, self.b, self.A, self.C = (np.asarray(z[k], dtype=np.float64) for k in ("W", "b", "A", "C"))
        if self.W.ndim != 2 or self.W.shape[1] != self.n_models:
            raise PolicyLoadError(f"{path}: W has shape {self.W.shape}, expected (n_features, {self.n_models})")
        self.config = TextClfConfig.from_dict(state.get("config") or {})


@register_policy
class TfidfLRPolicy(_PerModelLinear):
    """TF-IDF + logistic regression, one classifier per model (RouterBench's reference router).

    Args:
        models: Candidate model ids.
        config: :class:`TextClfConfig` or its dict.
        decision: Decision rule knobs (λ, μ, ...).
        metadata: Extra artifact metadata.
    """

    kind = "tfidf-lr"
    method = "tfidf+logistic_regression"

    def _transform_fit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        maxabs = np.abs(X).max(axis=0)
        scale = idf_weights(X) / np.where(maxabs > 0, maxabs, 1.0)
        return X * scale, np.zeros(X.shape[1]), scale

    def _fit_one(self, Z: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float, float, float]:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=self.config.C, max_iter=self.config.max_iter)
        clf.fit(Z, y)
        return clf.coef_[0].astype(np.float64), float(clf.intercept_[0]), 1.0, 0.0


@register_policy
class SVMPolicy(_PerModelLinear):
    """Linear SVM per model with cross-fitted Platt probabilities (LLMRouter's SVM router, N models).

    Args:
        models: Candidate model ids.
        config: :class:`TextClfConfig` or its dict.
        decision: Decision rule knobs (λ, μ, ...).
        metadata: Extra artifact metadata.
    """

    kind = "svm"
    method = "linear_svm+platt"

    def _transform_fit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mu = X.mean(axis=0)
        sd = X.std(axis=0)
        scale = 1.0 / np.where(sd > 1e-8, sd, 1.0)
        return (X - mu) * scale, mu, scale

    def _svc(self, seed: int) -> Any:
        from sklearn.svm import LinearSVC

        return LinearSVC(C=self.config.C, max_iter=self.config.max_iter, random_state=seed)

    def _fit_one(self, Z: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float, float, float]:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        folds = min(self.config.calibration_folds, int(min(y.sum(), y.size - y.sum())))
        dec = np.zeros(y.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for tr, va in StratifiedKFold(folds, shuffle=True, random_state=seed).split(Z, y):
                dec[va] = self._svc(seed).fit(Z[tr], y[tr]).decision_function(Z[va])
            full = self._svc(seed).fit(Z, y)
        platt = LogisticRegression(C=1e6, max_iter=self.config.max_iter).fit(dec[:, None], y)
        return full.coef_[0].astype(np.float64), float(full.intercept_[0]), float(platt.coef_[0, 0]), float(
            platt.intercept_[0]
        )

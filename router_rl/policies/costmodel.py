"""Per-task cost and latency prediction for quality-predicting routers (LightGBM meta-model).

(Over 500 lines on purpose: one concept, the per-task cost / latency model: basis detection,
target composition, fitting with its hold-out gate and persistence belong together.)

The decision rule maximises ``q̂ − λ·ĉ/c_ref − μ·l̂/l_ref`` (:mod:`router_rl.policies.decision`).
Without this module ``ĉ`` and ``l̂`` are each model's *training mean*, the same for every task.
:func:`fit_cost_model` learns per-task expectations where the training data allows it.

**Cost basis per model** (detected on the training matrix, recorded in the artifact metadata):

* ``tokens``: the catalog's price formula (:meth:`ModelSpec.cost`: tokens x list price for cloud
  models; GPU-seconds estimated from tokens / throughput x USD per GPU-hour for local ones)
  reproduces the recorded per-call cost (median relative error <= 2%). Then
  ``ĉ = a_in·E[input tokens] + a_out·E[output tokens]`` with the catalog's linear coefficients
  and both token counts predicted per model (the request's input tokens are not an input of
  :meth:`predict`; they are estimated from the request's length features, which is nearly exact
  where input tokens follow the prompt, and they differ per model: tokenizers, system prompts).
* ``latency``: a local model whose cost is its measured latency x the catalog's USD per GPU-hour
  (BFCL's unpriced open models): ``ĉ = rate · E[latency]``.
* ``direct``: any other per-call cost that varies (RouterBench's per-call USD, cost estimated from
  the prompt): ``E[cost]`` regressed directly.
* ``mean``: constant cost, no data, or (``auto``) no clear gain on held-out tasks: the mean.

Latency per model is predicted (``E[latency]``) when at least half of its training calls have one.

**Regressor.** Every needed quantity (log1p tokens, log latency, log cost; one column per model
and kind) is standardised; the target matrix is compressed to its first ``r`` principal
components (``r <= max_rank``; output lengths and latencies of different models share most of
their per-task variation), and **one multi-output LightGBM booster** (one tree per component per
round, squared loss, early stopping on a 20% hold-out, then refit on all tasks) predicts the
component scores. Inference: one ensemble pass of ``r`` outputs (``Booster.predict`` for small
batches, the compiled numpy trees of :mod:`router_rl.policies.treeeval` for large ones), one
``(n, r) @ (r, k)`` product, ``exp`` with a per-column smearing factor (Duan's: the mean of
``exp(residual)`` on the hold-out, so that predictions are means, not medians), and one
``(n, k) @ (k, 2m)`` product composing cost and latency with the catalog coefficients.

Modes (``LGBMConfig.cost_model``): ``mean`` (training means, the previous behaviour),
``predicted`` (predict every model the data allows) and ``auto`` (default: predict, but keep a
model's predicted cost / latency only when its hold-out mean absolute error is at least
:data:`AUTO_MIN_GAIN` lower than that of the mean; ``mean`` overall when nothing is kept).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import numpy as np
from pydantic import Field

from router_rl.core.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, StrictConfig
from router_rl.policies.base import PolicyLoadError
from router_rl.policies.boosting import FIXED_PARAMS, NUMPY_MIN_ROWS, compile_ensemble, make_dataset, select_columns
from router_rl.policies.treeeval import TreeEnsemble

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix

#: Accepted values of ``LGBMConfig.cost_model``.
CostModelMode = Literal["auto", "predicted", "mean"]
#: The same values as a tuple.
COST_MODEL_MODES: tuple[str, ...] = get_args(CostModelMode)
#: ``auto`` keeps a model's prediction when its hold-out MAE is <= (1 - this) x the mean's.
AUTO_MIN_GAIN = 0.05
#: Relative (median) error up to which the catalog formula "reproduces" the recorded cost.
FORMULA_TOLERANCE = 0.02
#: Minimum share of a model's training calls with the column for it to be regressed.
MIN_COVERAGE = 0.5
#: Minimum training tasks for a per-task model (fewer: the means).
MIN_TASKS = 40
#: On-disk layout version of the cost model state (``policy.json`` ``state.cost_model.format``).
COST_MODEL_FORMAT = 1
#: File of the cost model's booster inside a policy artifact.
BOOSTER_FILE = "cost_booster.txt"
_KINDS = ("input_tokens", "output_tokens", "latency", "cost")


class CostModelSettings(StrictConfig):
    """Hyper-parameters of :func:`fit_cost_model` (the LightGBM router fills them from its config).

    Attributes:
        mode: ``auto``, ``predicted`` or ``mean`` (see module docstring).
        max_rank: Maximum principal components of the target matrix (booster outputs).
        num_boost_round: Maximum rounds (each round = one tree per component).
        learning_rate: Shrinkage.
        num_leaves: Leaves per tree.
        min_data_in_leaf: Minimum tasks per leaf.
        lambda_l2: L2 regularisation of leaf values.
        max_bin: Histogram bins per feature.
        min_feature_count: Drop feature columns non-zero on fewer training tasks than this.
        early_stopping_rounds: Patience on the hold-out.
        holdout: Share of the training tasks held out (early stopping, smearing, ``auto`` gate).
        engine: ``numpy`` (compiled trees for batches) or ``booster``.
        num_threads: LightGBM threads.
    """

    mode: CostModelMode = "auto"
    max_rank: PositiveInt = 4
    num_boost_round: PositiveInt = 60
    learning_rate: PositiveFloat = 0.15
    num_leaves: PositiveInt = 7
    min_data_in_leaf: PositiveInt = 20
    lambda_l2: NonNegativeFloat = 5.0
    max_bin: PositiveInt = 63
    min_feature_count: NonNegativeInt = 3
    early_stopping_rounds: PositiveInt = 10
    holdout: Annotated[float, Field(ge=0.05, le=0.5)] = 0.2
    engine: Literal["numpy", "booster"] = "numpy"
    num_threads: PositiveInt = 1


def _coef_tokens(spec: Any) -> tuple[float, float]:
    """USD per input / output token of ``spec`` (linear form of :meth:`ModelSpec.cost`)."""
    from router_rl.traces.catalog import PREFILL_SPEEDUP

    a_in, a_out = spec.usd_per_m_input / 1e6, spec.usd_per_m_output / 1e6
    if spec.is_local and spec.gpu_usd_per_hour > 0 and spec.tokens_per_s:
        rate = spec.gpu_usd_per_hour / 3600.0
        a_out += rate / spec.tokens_per_s
        a_in += rate / (spec.tokens_per_s * PREFILL_SPEEDUP)
    return a_in, a_out


def _matches(formula: np.ndarray, cost: np.ndarray) -> bool:
    ok = np.isfinite(formula) & (cost > 0)
    if ok.sum() < 10 or not (formula[ok] > 0).any():
        return False
    rel = np.abs(formula[ok] - cost[ok]) / cost[ok]
    return bool(np.median(rel) <= FORMULA_TOLERANCE)


def detect_bases(matrix: OutcomeMatrix) -> tuple[list[str], list[str]]:
    """Per model: cost basis (``tokens``/``latency``/``direct``/``mean``) and latency basis.

    Latency basis is ``predicted`` when at least :data:`MIN_COVERAGE` of the model's calls have a
    positive latency, else ``mean``. See the module docstring for the cost bases.
    """
    cost_basis, lat_basis = [], []
    for j, model in enumerate(matrix.models):
        c = matrix.cost[:, j]
        lat = matrix.latency[:, j]
        tin, tout = matrix.input_tokens[:, j], matrix.output_tokens[:, j]
        lat_ok = float((np.isfinite(lat) & (lat > 0)).mean()) >= MIN_COVERAGE
        tok_ok = float((np.isfinite(tin) & np.isfinite(tout)).mean()) >= MIN_COVERAGE
        spec = matrix.catalog[model] if matrix.catalog is not None and model in matrix.catalog else None
        lat_basis.append("predicted" if lat_ok else "mean")
        basis = "mean"
        mean_c = float(np.abs(c).mean())
        if spec is not None and tok_ok:
            a_in, a_out = _coef_tokens(spec)
            if _matches(a_in * tin + a_out * tout, c):
                basis = "tokens"
        local_rate = spec.gpu_usd_per_hour / 3600.0 if spec is not None and spec.is_local else 0.0
        if basis == "mean" and lat_ok and local_rate > 0 and _matches(lat * local_rate, c):
            basis = "latency"
        if basis == "mean" and mean_c > 0 and float(c.std()) > 0.01 * mean_c:
            basis = "direct"
        cost_basis.append(basis)
    return cost_basis, lat_basis


def _targets(cost_basis: Sequence[str], lat_basis: Sequence[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for j, (cb, lb) in enumerate(zip(cost_basis, lat_basis, strict=True)):
        if cb == "tokens":
            out += [("input_tokens", j), ("output_tokens", j)]
        elif cb == "direct":
            out.append(("cost", j))
        if lb == "predicted" or cb == "latency":
            out.append(("latency", j))
    return out


def _raw_column(matrix: OutcomeMatrix, kind: str, j: int) -> np.ndarray:
    arr = {
        "input_tokens": matrix.input_tokens,
        "output_tokens": matrix.output_tokens,
        "latency": matrix.latency,
        "cost": matrix.cost,
    }[kind]
    return np.asarray(arr[:, j], dtype=np.float64)


def _compose(
    targets: Sequence[tuple[str, int]],
    cost_basis: Sequence[str],
    lat_basis: Sequence[str],
    matrix: OutcomeMatrix,
    cost_mean: np.ndarray,
    latency_mean: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(coef (k, 2m), const (2m,))``: ``[cost | latency] = E[targets] @ coef + const``."""
    m = len(cost_basis)
    coef = np.zeros((len(targets), 2 * m))
    const = np.concatenate([cost_mean, latency_mean]).astype(np.float64)
    for t, (kind, j) in enumerate(targets):
        spec = matrix.catalog[matrix.models[j]] if matrix.catalog is not None else None
        cb = cost_basis[j]
        if cb == "tokens" and kind in ("input_tokens", "output_tokens") and spec is not None:
            a_in, a_out = _coef_tokens(spec)
            coef[t, j] = a_in if kind == "input_tokens" else a_out
        elif cb == "latency" and kind == "latency" and spec is not None:
            coef[t, j] = spec.gpu_usd_per_hour / 3600.0
        elif cb == "direct" and kind == "cost":
            coef[t, j] = 1.0
        if kind == "latency" and lat_basis[j] == "predicted":
            coef[t, m + j] = 1.0
    for j in range(m):
        if cost_basis[j] != "mean":
            const[j] = 0.0
        if lat_basis[j] != "mean":
            const[m + j] = 0.0
    return coef, const


@dataclass
class CostLatencyModel:
    """A fitted per-task cost / latency predictor (see the module docstring).

    Attributes:
        booster: LightGBM booster with ``rank`` outputs (principal-component scores).
        columns: Feature columns the booster reads (of an ``n_features``-wide input).
        n_features: Input width.
        loadings: ``(rank, k)`` standardised principal axes x per-target standard deviation.
        intercept: ``(k,)`` per-target mean of the log target + log smearing factor.
        offset: ``(k,)`` subtracted after ``exp`` (1 for log1p token targets, small for others).
        coef: ``(k, 2m)`` composition of [cost | latency] from the target expectations.
        const: ``(2m,)`` constant part (training means of models without a per-task prediction).
        targets: ``(kind, model index)`` of each target column.
        cost_basis: Cost basis per model.
        latency_basis: Latency basis per model.
        engine: ``numpy`` or ``booster``.
        num_threads: LightGBM inference threads.
    """

    booster: Any
    columns: np.ndarray
    n_features: int
    loadings: np.ndarray
    intercept: np.ndarray
    offset: np.ndarray
    coef: np.ndarray
    const: np.ndarray
    targets: list[tuple[str, int]]
    cost_basis: list[str]
    latency_basis: list[str]
    engine: str = "numpy"
    num_threads: int = 1

    def __post_init__(self) -> None:
        # One memory layout for a fitted and a loaded model: BLAS picks its kernel (and so its
        # summation order) by layout, so an F-ordered fitted array and its C-ordered reload
        # (JSON) would differ in the last bit of ``raw @ loadings``.
        for name in ("loadings", "intercept", "offset", "coef", "const"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        self.columns = np.ascontiguousarray(self.columns, dtype=np.int64)
        self._ens: TreeEnsemble | None = None
        if self.engine == "numpy":
            ens = compile_ensemble(self.booster)
            self._ens = None if ens is None else ens.remap_features(self.columns, self.n_features)

    @property
    def rank(self) -> int:
        """Number of booster outputs (principal components)."""
        return int(self.loadings.shape[0])

    @property
    def n_models(self) -> int:
        """Number of candidate models."""
        return len(self.cost_basis)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(cost (n, m) USD, latency (n, m) s)`` expected per call, for float32 features ``X``."""
        n = X.shape[0]
        if self._ens is not None and (n >= NUMPY_MIN_ROWS or n == 1):  # one row: compiled walk
            raw = self._ens.predict_raw(X)
        else:
            xs = np.ascontiguousarray(X[:, self.columns], dtype=np.float32)
            raw = self.booster.predict(xs, num_threads=self.num_threads)
        raw = np.asarray(raw, dtype=np.float64).reshape(n, self.rank)
        y = np.exp(raw @ self.loadings + self.intercept)
        y -= self.offset
        np.maximum(y, 0.0, out=y)
        out = y @ self.coef
        out += self.const
        m = self.n_models
        return out[:, :m], out[:, m:]

    # --- persistence -------------------------------------------------------------------------
    def save(self, directory: Path) -> dict[str, Any]:
        """Write the booster to ``directory``; return the JSON state (see :meth:`load`)."""
        self.booster.save_model(str(directory / BOOSTER_FILE))
        return {
            "format": COST_MODEL_FORMAT,
            "columns": self.columns.tolist(),
            "n_features": self.n_features,
            "loadings": self.loadings.tolist(),
            "intercept": self.intercept.tolist(),
            "offset": self.offset.tolist(),
            "coef": self.coef.tolist(),
            "const": self.const.tolist(),
            "targets": [[k, j] for k, j in self.targets],
            "cost_basis": list(self.cost_basis),
            "latency_basis": list(self.latency_basis),
            "engine": self.engine,
            "num_threads": self.num_threads,
        }

    @classmethod
    def load(cls, directory: Path, state: dict[str, Any], *, n_models: int) -> CostLatencyModel:
        """Inverse of :meth:`save`.

        Raises:
            PolicyLoadError: missing booster file, unknown layout version or inconsistent shapes.
        """
        import lightgbm as lgb

        where = directory / "policy.json"
        fmt = state.get("format")
        if fmt != COST_MODEL_FORMAT:
            raise PolicyLoadError(
                f"{where}: cost model layout {fmt!r}, this router-rl reads {COST_MODEL_FORMAT} "
                "(re-train, or load it with the version that wrote it)"
            )
        path = directory / BOOSTER_FILE
        if not path.is_file():
            raise PolicyLoadError(f"{path}: missing cost-model booster (policy.json declares a cost model)")
        try:
            obj = cls(
                booster=lgb.Booster(model_file=str(path)),
                columns=np.asarray(state["columns"], dtype=np.int64),
                n_features=int(state["n_features"]),
                loadings=np.asarray(state["loadings"], dtype=np.float64),
                intercept=np.asarray(state["intercept"], dtype=np.float64),
                offset=np.asarray(state["offset"], dtype=np.float64),
                coef=np.asarray(state["coef"], dtype=np.float64),
                const=np.asarray(state["const"], dtype=np.float64),
                targets=[(str(k), int(j)) for k, j in state["targets"]],
                cost_basis=[str(b) for b in state["cost_basis"]],
                latency_basis=[str(b) for b in state["latency_basis"]],
                engine=str(state.get("engine", "numpy")),
                num_threads=int(state.get("num_threads", 1)),
            )
        except (KeyError, TypeError, ValueError, lgb.basic.LightGBMError) as e:
            raise PolicyLoadError(f"{where}: corrupt cost model state ({e})") from e
        k = len(obj.targets)
        shapes_ok = (
            len(obj.cost_basis) == n_models
            and len(obj.latency_basis) == n_models
            and obj.loadings.ndim == 2
            and obj.loadings.shape[1] == k
            and obj.intercept.shape == (k,)
            and obj.offset.shape == (k,)
            and obj.coef.shape == (k, 2 * n_models)
            and obj.const.shape == (2 * n_models,)
            and obj.booster.num_model_per_iteration() == obj.rank
        )
        if not shapes_ok:
            raise PolicyLoadError(f"{where}: cost model state does not fit {n_models} models / its booster")
        return obj


def _l2_objective(target: np.ndarray) -> Any:
    def objective(preds: np.ndarray, _data: Any) -> tuple[np.ndarray, np.ndarray]:
        p = preds.reshape(target.shape)
        return (p - target).reshape(preds.shape), np.ones_like(preds)

    return objective


def _l2_feval(target: np.ndarray) -> Any:
    def feval(preds: np.ndarray, _data: Any) -> tuple[str, float, bool]:
        p = preds.reshape(target.shape)
        return "mse", float(((p - target) ** 2).mean()), False

    return feval


def _mae_gain(pred: np.ndarray, base: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(truth)
    if not ok.any():
        return math.nan, math.nan
    return float(np.abs(pred[ok] - truth[ok]).mean()), float(np.abs(base[ok] - truth[ok]).mean())


def fit_cost_model(
    X: np.ndarray,
    matrix: OutcomeMatrix,
    settings: CostModelSettings,
    rng: np.random.Generator,
) -> tuple[CostLatencyModel | None, dict[str, Any]]:
    """Fit the per-task cost / latency predictor of ``matrix`` (see the module docstring).

    Args:
        X: ``(n, d)`` float32 features of the training tasks.
        matrix: Training outcome matrix.
        settings: Hyper-parameters and mode.
        rng: Seeds the hold-out split and LightGBM.

    Returns:
        ``(model or None, info)``; ``None`` means "use the training means" (mode ``mean``, too
        few tasks, nothing that varies, or ``auto`` found no gain). ``info`` is the JSON-able
        record stored as ``metadata["cost_model"]`` (requested mode, mode used, bases, hold-out
        errors of predicted vs mean cost / latency, booster size).
    """
    info: dict[str, Any] = {"requested": settings.mode, "mode": "mean"}
    if settings.mode == "mean":
        info["reason"] = "configured"
        return None, info
    n, m = matrix.n_tasks, matrix.n_models
    if n < MIN_TASKS:
        info["reason"] = f"fewer than {MIN_TASKS} training tasks"
        return None, info
    cost_basis, lat_basis = detect_bases(matrix)
    targets = _targets(cost_basis, lat_basis)
    info["detected_cost_basis"] = dict(zip(matrix.models, cost_basis, strict=True))
    if not targets:
        info["reason"] = "no per-call cost or latency variation in the training data"
        return None, info

    import lightgbm as lgb

    # log targets, standardised; missing cells -> 0 (the column mean) for the decomposition
    raw = np.stack([_raw_column(matrix, k, j) for k, j in targets], axis=1)
    offset = np.empty(len(targets))
    for t, (kind, _j) in enumerate(targets):
        col = raw[:, t]
        fin = np.isfinite(col) & (col >= 0)
        offset[t] = 1.0 if kind.endswith("_tokens") else max(1e-3 * float(col[fin].mean()) if fin.any() else 0.0, 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        T = np.log(np.where(raw >= 0, raw, np.nan) + offset)
    fin = np.isfinite(T)
    mu = np.array([T[fin[:, t], t].mean() for t in range(T.shape[1])])
    sd = np.array([max(float(T[fin[:, t], t].std()), 1e-6) for t in range(T.shape[1])])
    Tz = np.where(fin, (np.where(fin, T, 0.0) - mu) / sd, 0.0)
    _u, s, vt = np.linalg.svd(Tz, full_matrices=False)
    r = int(min(settings.max_rank, max(1, int((s > 1e-8 * max(s[0], 1e-12)).sum()))))
    axes = vt[:r]  # (r, k)
    F = Tz @ axes.T  # (n, r) component scores
    info["explained_variance"] = float((s[:r] ** 2).sum() / max((s**2).sum(), 1e-12))

    columns = select_columns(X, settings.min_feature_count)
    Xs = np.ascontiguousarray(X[:, columns], dtype=np.float32)
    seed = int(rng.integers(0, 2**31 - 1))
    perm = rng.permutation(n)
    n_ho = max(10, round(settings.holdout * n))
    ho, tr = np.sort(perm[:n_ho]), np.sort(perm[n_ho:])
    params: dict[str, Any] = {
        "num_class": r,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "learning_rate": settings.learning_rate,
        "lambda_l2": settings.lambda_l2,
        "max_bin": settings.max_bin,
        "feature_fraction": 0.8,
        "num_threads": settings.num_threads,
        "seed": seed,
        **FIXED_PARAMS,
    }

    def dataset(rows: np.ndarray, reference: Any = None) -> Any:
        return make_dataset(lgb, Xs[rows], max_bin=settings.max_bin, reference=reference)

    dtr = dataset(tr)
    dho = dataset(ho, reference=dtr)
    b_ho = lgb.train(
        dict(params, objective=_l2_objective(F[tr])),
        dtr,
        num_boost_round=settings.num_boost_round,
        valid_sets=[dho],
        feval=_l2_feval(F[ho]),
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    rounds = max(1, int(b_ho.best_iteration or settings.num_boost_round))
    f_ho = np.asarray(b_ho.predict(Xs[ho], num_iteration=rounds, num_threads=settings.num_threads))
    t_ho = f_ho.reshape(n_ho, r) @ (axes * sd) + mu
    # Duan's smearing: E[y] = exp(pred) * mean(exp(residual)), per target, on the hold-out
    resid = T[ho] - t_ho
    ok = np.isfinite(resid)
    smear = np.ones(len(targets))
    for t in range(len(targets)):
        if ok[:, t].sum() >= 5:
            smear[t] = float(np.clip(np.exp(resid[ok[:, t], t]).mean(), 0.5, 3.0))
    intercept = mu + np.log(smear)

    # hold-out errors: predicted vs the means of the fitting rows, per model
    sub_tr = matrix.take(tr)
    cost_mean_tr = sub_tr.cost.mean(axis=0)
    lat_tr = np.where(np.isfinite(sub_tr.latency), sub_tr.latency, np.nan)
    lat_cnt = np.isfinite(lat_tr).sum(axis=0)
    lat_mean_tr = np.where(lat_cnt > 0, np.nansum(lat_tr, axis=0) / np.maximum(lat_cnt, 1), 0.0)
    coef, const = _compose(targets, cost_basis, lat_basis, matrix, cost_mean_tr, lat_mean_tr)
    y_ho = np.maximum(np.exp(f_ho.reshape(n_ho, r) @ (axes * sd) + intercept) - offset, 0.0)
    pred_ho = y_ho @ coef + const
    truth_c, truth_l = matrix.cost[ho], matrix.latency[ho]
    gate: dict[str, dict[str, list[float]]] = {"cost": {}, "latency": {}}
    for j, name in enumerate(matrix.models):
        if cost_basis[j] != "mean":
            p_mae, b_mae = _mae_gain(pred_ho[:, j], np.full(n_ho, cost_mean_tr[j]), truth_c[:, j])
            gate["cost"][name] = [p_mae, b_mae]
            if settings.mode == "auto" and not p_mae <= (1.0 - AUTO_MIN_GAIN) * b_mae:
                cost_basis[j] = "mean"
        if lat_basis[j] != "mean":
            p_mae, b_mae = _mae_gain(pred_ho[:, m + j], np.full(n_ho, lat_mean_tr[j]), truth_l[:, j])
            gate["latency"][name] = [p_mae, b_mae]
            if settings.mode == "auto" and not p_mae <= (1.0 - AUTO_MIN_GAIN) * b_mae:
                lat_basis[j] = "mean"
    info["holdout_mae"] = {
        kind: {
            "predicted": float(np.nansum([v[0] for v in g.values()])),
            "mean": float(np.nansum([v[1] for v in g.values()])),
            "n_models": len(g),
        }
        for kind, g in gate.items()
    }
    info["cost_basis"] = dict(zip(matrix.models, cost_basis, strict=True))
    info["latency_basis"] = dict(zip(matrix.models, lat_basis, strict=True))
    keep_targets = _targets(cost_basis, lat_basis)
    if not keep_targets:
        info["reason"] = "no model's predicted cost or latency beat its mean on the hold-out"
        return None, info
    keep = [targets.index(t) for t in keep_targets]

    # final booster on all tasks with the hold-out's number of rounds
    booster = lgb.train(dict(params, objective=_l2_objective(F)), dataset(np.arange(n)), num_boost_round=rounds)
    cost_mean = matrix.cost.mean(axis=0)
    lat_all = matrix.latency
    cnt = np.isfinite(lat_all).sum(axis=0)
    lat_mean = np.where(cnt > 0, np.where(np.isfinite(lat_all), lat_all, 0.0).sum(axis=0) / np.maximum(cnt, 1), 0.0)
    coef, const = _compose(keep_targets, cost_basis, lat_basis, matrix, cost_mean, lat_mean)
    model = CostLatencyModel(
        booster=booster,
        columns=columns,
        n_features=int(X.shape[1]),
        loadings=(axes * sd)[:, keep],
        intercept=intercept[keep],
        offset=offset[keep],
        coef=coef,
        const=const,
        targets=keep_targets,
        cost_basis=cost_basis,
        latency_basis=lat_basis,
        engine=settings.engine,
        num_threads=settings.num_threads,
    )
    info.update(
        {
            "mode": "predicted",
            "rank": r,
            "rounds": rounds,
            "n_trees": int(booster.num_trees()),
            "n_targets": len(keep_targets),
            "engine": "numpy" if model._ens is not None else "booster",
        }
    )
    return model, info

"""Run :class:`~router_rl.policies.RoutingPolicy` objects on outcome matrices and score them.

(Over 500 lines on purpose: one concept, the evaluation run: its config, result types and the
λ-sweep driver share every helper.)

This is the glue between policies and :mod:`router_rl.ope` (which only sees arrays): each policy
is replayed on the full-information test matrix (``route_matrix`` with a seeded generator, so a
stochastic policy behaves as it would when serving), the resulting arrays go to
:func:`router_rl.ope.routing_metrics` & co. Policies with a cost-quality knob λ (the utility
routers, ``policy.decision.lam``) are additionally swept over λ on validation and test: the test
sweep is the cost-quality frontier (AIQ, APGR, CPT, cost share at 95% of reference quality) and
the validation sweep picks the operating point that is then applied unchanged to test.

The *reference model* is the best single model on the **training** split
(:meth:`OutcomeMatrix.best_single_model`); the *weak model* (APGR/CPT) is the cheapest model on
the training split.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BeforeValidator, Field, field_validator

from router_rl.core.config import NonNegativeFloat, PositiveInt, StrictConfig, StrTuple, as_tuple
from router_rl.eval.independence import IndependenceConfig, IndependenceReport, independence_report
from router_rl.ope.metrics import (
    CalibrationCurve,
    Interval,
    RoutingMetrics,
    calibrate_operating_point,
    calibration_curve,
    frontier_summary,
    headline_intervals,
    metrics_by_group,
    routing_metrics,
)

if TYPE_CHECKING:
    from router_rl.policies.base import RouteOutcome, RoutingPolicy
    from router_rl.traces.matrix import OutcomeMatrix

#: Schema version of :meth:`EvaluationResult.to_dict` (bump on breaking field changes).
RESULT_SCHEMA_VERSION = 1

#: λ grid of the frontier sweep, in units of "quality per reference-model cost": 0 plus 8 points
#: per decade over [1e-3, 1e3]. A coarse grid under-traces the frontier (the hull then
#: interpolates between far-apart operating points); 49 points cost one prediction per policy and
#: split, since predictions are reused across λ (:meth:`UtilityPolicy.reuse_predictions`).
DEFAULT_LAMBDAS: tuple[float, ...] = (0.0, *(float(f"{x:.4g}") for x in np.geomspace(1e-3, 1e3, 49)))

FeatureFn = Callable[["RoutingPolicy", "OutcomeMatrix"], np.ndarray]


class EvalConfig(StrictConfig):
    """Settings of :func:`evaluate_policies` (validated on construction).

    Attributes:
        lambdas: λ grid of the frontier sweep (for policies exposing ``decision.lam``); stored
            sorted and deduplicated.
        quality_target: Share of the reference quality for "cost share at X% quality".
        n_bootstrap: Bootstrap resamples of the headline intervals.
        alpha: Interval level (0.05 = 95%).
        seed: Seed of the bootstrap and of stochastic routing.
        group_columns: Task columns to break metrics down by (absent ones are skipped).
        calibration_bins: Bins of the calibration curve.
        independence: Thresholds of the independence gates.
    """

    lambdas: Annotated[tuple[NonNegativeFloat, ...], BeforeValidator(as_tuple), Field(min_length=1)] = DEFAULT_LAMBDAS
    quality_target: Annotated[float, Field(gt=0, le=1)] = 0.95
    n_bootstrap: Annotated[int, Field(ge=10)] = 1000
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    seed: int = 0
    group_columns: StrTuple = ("category", "agent_type")
    calibration_bins: PositiveInt = 10
    independence: IndependenceConfig = Field(default_factory=IndependenceConfig)

    @field_validator("lambdas")
    @classmethod
    def _sorted(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(sorted(set(v)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``independence`` as ``{phase: gates}``)."""
        d = super().to_dict()
        d["independence"] = d["independence"]["phases"]
        return d


@dataclass(frozen=True)
class FrontierPoint:
    """One λ of a sweep.

    Attributes:
        lam: λ (None for a policy without a knob: its single deployed point).
        mean_quality, mean_cost, local_share: Metrics at this λ.
        quality_ratio, cost_share: Relative to the reference model on the same split.
    """

    lam: float | None
    mean_quality: float
    mean_cost: float
    local_share: float | None
    quality_ratio: float | None
    cost_share: float | None


@dataclass(frozen=True)
class PolicyEvaluation:
    """Everything measured for one policy (JSON field names documented in docs/evaluation.md)."""

    name: str
    kind: str
    version: str
    metrics: RoutingMetrics
    intervals: dict[str, Interval]
    by_group: dict[str, dict[str, RoutingMetrics]]
    frontier: list[FrontierPoint]
    frontier_metrics: dict[str, float | None]
    operating_point: dict[str, Any] | None
    independence: IndependenceReport
    calibration: CalibrationCurve | None = None
    deployed: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "deployed": self.deployed,
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "metrics": self.metrics.to_dict(),
            "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
            "by_group": {c: {g: m.to_dict() for g, m in d.items()} for c, d in self.by_group.items()},
            "frontier": [asdict(p) for p in self.frontier],
            "frontier_metrics": dict(self.frontier_metrics),
            "operating_point": self.operating_point,
            "independence": self.independence.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
        }


@dataclass(frozen=True)
class EvaluationResult:
    """Result of :func:`evaluate_policies`.

    Attributes:
        split: Name of the evaluated split (``test``).
        n_tasks: Tasks in that split.
        models: Model ids (column order).
        reference_model: Best single model on the training split.
        weak_model: Cheapest model on the training split.
        single_models: Metrics of always calling each model on the split.
        oracle: Metrics of the per-task hindsight oracle.
        oracle_frontier: The oracle swept over λ.
        oracle_frontier_metrics: AIQ / APGR / CPT / cost share at target quality of that sweep.
        policies: ``name -> PolicyEvaluation`` in the order given.
        config: The settings used.
    """

    split: str
    n_tasks: int
    models: tuple[str, ...]
    reference_model: str
    weak_model: str
    single_models: dict[str, RoutingMetrics]
    oracle: RoutingMetrics
    oracle_frontier: list[FrontierPoint]
    oracle_frontier_metrics: dict[str, float | None]
    policies: dict[str, PolicyEvaluation]
    config: EvalConfig

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with stable field names (``schema_version`` 1)."""
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "split": self.split,
            "n_tasks": self.n_tasks,
            "models": list(self.models),
            "reference_model": self.reference_model,
            "weak_model": self.weak_model,
            "single_models": {k: v.to_dict() for k, v in self.single_models.items()},
            "oracle": self.oracle.to_dict(),
            "oracle_frontier": [asdict(p) for p in self.oracle_frontier],
            "oracle_frontier_metrics": dict(self.oracle_frontier_metrics),
            "policies": {k: v.to_dict() for k, v in self.policies.items()},
            "config": self.config.to_dict(),
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented JSON (NaN written as null)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(_clean(self.to_dict()), indent=2))
        return p


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


# --- helpers -------------------------------------------------------------------------------------
def _local_mask(matrix: OutcomeMatrix) -> np.ndarray | None:
    return matrix.is_local() if matrix.catalog is not None else None


def weak_model(matrix: OutcomeMatrix) -> str:
    """Cheapest model of ``matrix`` (ties: the higher mean quality)."""
    c = matrix.cost.mean(axis=0)
    q = matrix.quality.mean(axis=0)
    return matrix.models[int(np.lexsort((-q, c))[0])]


def deployed_rule(policy: RoutingPolicy) -> dict[str, Any] | None:
    """The policy's own decision rule as evaluated (its saved config), and what it was calibrated for.

    The headline metrics are those of this rule: the artifact as it would be deployed. The
    ``operating_point`` of a :class:`PolicyEvaluation` is a separate re-calibration on the
    evaluation's validation split.
    """
    decision = getattr(policy, "decision", None)
    if decision is None or not hasattr(decision, "to_dict"):
        return None
    cal = (getattr(policy, "metadata", None) or {}).get("calibration") or {}
    return {
        "decision": decision.to_dict(),
        "calibrated_for": cal.get("target"),
        "met_on_calibration_split": cal.get("met"),
    }


#: Complexity labels whose P95 latency the fleet plan gates ("P95 < 5 s for complex tasks").
COMPLEX_LEVELS: tuple[str, ...] = ("COMPLEX", "VERY_COMPLEX")


def latency_by_complexity(latency: np.ndarray | None, tasks: Any) -> dict[str, float | None]:
    """``latency_p50_simple`` (SIMPLE tasks) and ``latency_p95_complex`` (COMPLEX / VERY_COMPLEX).

    ``None`` for a figure when the tasks have no ``complexity`` column or no known latency in the
    group (the gates then use the overall figures, labelled as such).
    """
    out: dict[str, float | None] = {"latency_p50_simple": None, "latency_p95_complex": None}
    if latency is None or "complexity" not in getattr(tasks, "columns", ()):
        return out
    lat = np.asarray(latency, dtype=np.float64)
    level = np.array([str(v).upper() if v is not None else "" for v in tasks["complexity"].to_list()])
    for key, mask, q in (("latency_p50_simple", level == "SIMPLE", 50),
                         ("latency_p95_complex", np.isin(level, COMPLEX_LEVELS), 95)):
        vals = lat[mask & np.isfinite(lat)]
        out[key] = float(np.percentile(vals, q)) if vals.size else None
    return out


def _outcome_metrics(out: RouteOutcome, matrix: OutcomeMatrix, ref: int, local: np.ndarray | None) -> RoutingMetrics:
    rows = np.arange(matrix.n_tasks)
    a = np.asarray(out.actions, dtype=np.int64)
    return routing_metrics(
        out.quality,
        out.cost,
        latency=out.latency,
        local=None if local is None else local[a],
        error=matrix.error[rows, a],
        n_calls=out.n_calls,
        reference_quality=matrix.quality[:, ref],
        reference_cost=matrix.cost[:, ref],
        oracle_quality=matrix.quality.max(axis=1),
    )


def _point(lam: float | None, m: RoutingMetrics) -> FrontierPoint:
    return FrontierPoint(lam, m.mean_quality, m.mean_cost, m.local_share, m.quality_ratio, m.cost_share)


def _has_lambda(policy: RoutingPolicy) -> bool:
    d = getattr(policy, "decision", None)
    return d is not None and hasattr(d, "lam") and hasattr(d, "with_")


def _route(
    policy: RoutingPolicy, X: np.ndarray, matrix: OutcomeMatrix, seed: int, lam: float | None = None
) -> RouteOutcome:
    """``policy.route_matrix`` (seeded), at λ ``lam`` when given (restoring the policy's own λ)."""
    rng = np.random.default_rng([seed, 7])
    if lam is None:
        return policy.route_matrix(X, matrix, rng=rng)
    orig = policy.decision  # type: ignore[attr-defined]
    try:
        policy.decision = orig.with_(lam=lam)  # type: ignore[attr-defined]
        return policy.route_matrix(X, matrix, rng=rng)
    finally:
        policy.decision = orig  # type: ignore[attr-defined]


def _reusing_predictions(policy: RoutingPolicy) -> AbstractContextManager[Any]:
    """Predict once per feature array while a policy is swept over λ (utility routers)."""
    reuse = getattr(policy, "reuse_predictions", None)
    return reuse() if callable(reuse) else nullcontext()


def _oracle_frontier(matrix: OutcomeMatrix, ref: int, lambdas: Sequence[float], local: np.ndarray | None) -> list:
    scale = float(matrix.cost[:, ref].mean()) or 1.0
    rows = np.arange(matrix.n_tasks)
    pts = []
    for lam in lambdas:
        util = matrix.quality - lam * matrix.cost / scale
        best = util.max(axis=1, keepdims=True)
        a = np.where(util >= best - 1e-12, matrix.cost, np.inf).argmin(axis=1)
        m = routing_metrics(
            matrix.quality[rows, a],
            matrix.cost[rows, a],
            local=None if local is None else local[a],
            reference_quality=matrix.quality[:, ref],
            reference_cost=matrix.cost[:, ref],
        )
        pts.append(_point(lam, m))
    return pts


def default_features(train: OutcomeMatrix, config: Callable[[], Any] | None = None) -> FeatureFn:
    """Feature function: the policy's own encoder when it has one, else one encoder fitted on ``train``.

    Args:
        train: Training split the shared encoder is fitted on (when first needed).
        config: Builds the shared encoder's :class:`~router_rl.features.encoder.EncoderConfig`
            (called once, when first needed); default: the encoder's default config restricted
            to ``train``'s task columns.
    """
    cache: dict[str, Any] = {}

    def shared_encoder() -> Any:
        if "enc" not in cache:
            from router_rl.features.encoder import FeatureEncoder

            cfg = config() if config is not None else FeatureEncoder().config.restricted_to(train.tasks.columns)
            cache["enc"] = FeatureEncoder(cfg).fit(train.tasks)
        return cache["enc"]

    def features(policy: RoutingPolicy, matrix: OutcomeMatrix) -> np.ndarray:
        enc = getattr(policy, "encoder", None) or shared_encoder()
        return np.asarray(enc.transform(matrix.tasks))

    features.shared_encoder = shared_encoder  # type: ignore[attr-defined]
    return features


# --- main API ------------------------------------------------------------------------------------
def evaluate_policies(
    matrix_train: OutcomeMatrix,
    matrix_val: OutcomeMatrix | None,
    matrix_test: OutcomeMatrix,
    policies: Mapping[str, RoutingPolicy] | Sequence[RoutingPolicy],
    *,
    config: EvalConfig | None = None,
    features: FeatureFn | None = None,
    split: str = "test",
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Evaluate fitted policies on ``matrix_test`` (and calibrate operating points on ``matrix_val``).

    Args:
        matrix_train: Training split: defines the reference (best single) and weak (cheapest) models.
        matrix_val: Validation split for the operating point (None: no operating point).
        matrix_test: The split every reported number is measured on.
        policies: Fitted policies, by display name (a sequence uses ``policy.kind``).
        config: Settings (:class:`EvalConfig`).
        features: ``(policy, matrix) -> X``; default :func:`default_features` of ``matrix_train``.
        split: Name of the evaluated split, for the report.
        progress: Called with a short message before each policy (CLI progress bars).

    Raises:
        ValueError: splits with different models, or duplicate policy names.
    """
    cfg = config or EvalConfig()
    for what, mat in (("validation", matrix_val), ("test", matrix_test)):
        if mat is not None and mat.models != matrix_train.models:
            raise ValueError(
                f"evaluate_policies: {what} matrix models {list(mat.models)} differ from training "
                f"models {list(matrix_train.models)}"
            )
    if isinstance(policies, Mapping):
        named = dict(policies)
    else:
        names = [p.kind for p in policies]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluate_policies: duplicate policy kinds {names}; pass a name -> policy mapping")
        named = dict(zip(names, policies, strict=True))
    feat = features or default_features(matrix_train)
    test, val = matrix_test, matrix_val
    ref_name = matrix_train.best_single_model()
    weak_name = weak_model(matrix_train)
    ref = test.model_index(ref_name)
    weak = test.model_index(weak_name)
    local = _local_mask(test)
    rows = np.arange(test.n_tasks)

    singles = {}
    for j, mname in enumerate(test.models):
        a = np.full(test.n_tasks, j)
        singles[mname] = routing_metrics(
            test.quality[:, j],
            test.cost[:, j],
            latency=test.latency[:, j],
            local=None if local is None else local[a],
            error=test.error[:, j],
            reference_quality=test.quality[:, ref],
            reference_cost=test.cost[:, ref],
            oracle_quality=test.quality.max(axis=1),
        )
    oa = test.oracle_actions()
    oracle = routing_metrics(
        test.quality[rows, oa],
        test.cost[rows, oa],
        latency=test.latency[rows, oa],
        local=None if local is None else local[oa],
        error=test.error[rows, oa],
        reference_quality=test.quality[:, ref],
        reference_cost=test.cost[:, ref],
        oracle_quality=test.quality.max(axis=1),
    )
    oracle_front = _oracle_frontier(test, ref, cfg.lambdas, local)
    all_costs = [p.mean_cost for p in oracle_front] + [m.mean_cost for m in singles.values()]

    groups = [c for c in cfg.group_columns if c in test.tasks.columns]
    results: dict[str, PolicyEvaluation] = {}
    sweeps: dict[str, list[FrontierPoint]] = {}
    staged: dict[str, tuple[Any, ...]] = {}
    for name, policy in named.items():
        if progress is not None:
            progress(name)
        with _reusing_predictions(policy):
            X_test = feat(policy, test)
            out = _route(policy, X_test, test, cfg.seed)
            m = _outcome_metrics(out, test, ref, local)
            a = np.asarray(out.actions, dtype=np.int64)
            intervals = headline_intervals(
                out.quality,
                out.cost,
                local=None if local is None else local[a],
                reference_quality=test.quality[:, ref],
                reference_cost=test.cost[:, ref],
                oracle_quality=test.quality.max(axis=1),
                n_bootstrap=cfg.n_bootstrap,
                alpha=cfg.alpha,
                rng=cfg.seed,
            )
            by_group = {}
            for col in groups:
                by_group[col] = metrics_by_group(
                    test.tasks[col].to_list(),
                    quality=out.quality,
                    cost=out.cost,
                    latency=out.latency,
                    local=None if local is None else local[a],
                    error=test.error[rows, a],
                    n_calls=out.n_calls,
                    reference_quality=test.quality[:, ref],
                    reference_cost=test.cost[:, ref],
                    oracle_quality=test.quality.max(axis=1),
                )
            op = None
            if _has_lambda(policy):
                sweep = [
                    _point(lam, _outcome_metrics(_route(policy, X_test, test, cfg.seed, lam), test, ref, local))
                    for lam in cfg.lambdas
                ]
                if val is not None:
                    X_val = feat(policy, val)
                    vref = val.model_index(ref_name)
                    vlocal = _local_mask(val)
                    vpts = [
                        _outcome_metrics(_route(policy, X_val, val, cfg.seed, lam), val, vref, vlocal)
                        for lam in cfg.lambdas
                    ]
                    ref_val_q = float(val.quality[:, vref].mean())
                    chosen = calibrate_operating_point(
                        [p.mean_cost for p in vpts], [p.mean_quality for p in vpts], cfg.quality_target * ref_val_q
                    )
                    tp = sweep[chosen.index]
                    op = {
                        "lam": cfg.lambdas[chosen.index],
                        "reached_on_val": chosen.reached,
                        "val_quality_ratio": vpts[chosen.index].quality_ratio,
                        "val_cost_share": vpts[chosen.index].cost_share,
                        "test_quality_ratio": tp.quality_ratio,
                        "test_cost_share": tp.cost_share,
                        "test_local_share": tp.local_share,
                        "test_meets_target": (
                            None if tp.quality_ratio is None else tp.quality_ratio >= cfg.quality_target
                        ),
                    }
            elif policy.kind == "oracle":
                # the oracle's frontier is its λ sweep (as for the oracle row), not its one point:
                # AIQ / APGR of every policy are computed from a frontier, never from a single point
                sweep = list(oracle_front)
            else:
                sweep = [_point(None, m)]  # a policy without a cost knob: its frontier is its point
            all_costs += [p.mean_cost for p in sweep]
            sweeps[name] = sweep
            calib = None
            if hasattr(policy, "predict_quality"):
                try:
                    pq = np.asarray(policy.predict_quality(X_test))[rows, a]
                    calib = calibration_curve(np.clip(pq, 0, 1), out.quality, n_bins=cfg.calibration_bins)
                except (RuntimeError, ValueError):
                    calib = None
            indep = independence_report(
                local_share=m.local_share,
                quality_ratio=m.quality_ratio,
                cost_saving=m.cost_saving,
                cloud_share=m.cloud_share,
                latency_p50=m.latency_p50,
                latency_p95=m.latency_p95,
                **latency_by_complexity(out.latency, test.tasks),
                config=cfg.independence,
            )
            staged[name] = (policy, m, intervals, by_group, op, indep, calib)

    cost_max = max(all_costs) if all_costs and max(all_costs) > 0 else None
    ref_q = float(test.quality[:, ref].mean())
    ref_c = float(test.cost[:, ref].mean())
    weak_q = float(test.quality[:, weak].mean())

    model_costs = test.cost.mean(axis=0)
    # every model costs the same (e.g. routerdc: no prices): there is no cost axis, so AIQ, APGR and
    # cost-at-quality are undefined (reported as n/a, not as a misleading 0)
    flat_cost = float(np.ptp(model_costs)) <= 1e-12 * max(float(np.abs(model_costs).max()), 1e-300)

    def summary(pts: list[FrontierPoint]) -> dict[str, float | None]:
        if ref_c <= 0 or cost_max is None or flat_cost:
            return {}
        return frontier_summary(
            [p.mean_cost for p in pts],
            [p.mean_quality for p in pts],
            reference_quality=ref_q,
            reference_cost=ref_c,
            weak_quality=weak_q,
            cost_max=cost_max,
            quality_target=cfg.quality_target,
        )

    for name, (policy, m, intervals, by_group, op, indep, calib) in staged.items():
        pts = sweeps[name]
        fm = summary(pts)
        results[name] = PolicyEvaluation(
            name=name,
            kind=policy.kind,
            version=policy.version,
            metrics=m,
            intervals=intervals,
            by_group=by_group,
            frontier=pts,
            frontier_metrics=fm,
            operating_point=op,
            independence=indep,
            calibration=calib,
            deployed=deployed_rule(policy),
        )
    return EvaluationResult(
        split=split,
        n_tasks=test.n_tasks,
        models=test.models,
        reference_model=ref_name,
        weak_model=weak_name,
        single_models=singles,
        oracle=oracle,
        oracle_frontier=oracle_front,
        oracle_frontier_metrics=summary(oracle_front),
        policies=results,
        config=cfg,
    )

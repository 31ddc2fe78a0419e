"""Offline policy evaluation on plain numpy arrays (never policy objects).

* :mod:`router_rl.ope.estimators`: replay, DM, IPS, SNIPS, DR, switch-DR with intervals (the
  finite-sample betting interval by default, or a seeded bootstrap) and importance-weight
  diagnostics.
* :mod:`router_rl.ope.betting`: the betting confidence interval of a policy value (valid at any ESS).
* :mod:`router_rl.ope.metrics`: routing metrics, frontiers, AIQ / APGR / CPT, operating points.
* :mod:`router_rl.ope.bootstrap`: the vectorised bootstrap both build on.
"""

from router_rl.ope.betting import BettingInterval, betting_interval
from router_rl.ope.estimators import (
    DEFAULT_TAU_GRID,
    ESTIMATOR_REGISTRY,
    INTERVAL_METHODS,
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    Estimate,
    LoggedFeedback,
    OffPolicyEstimator,
    Replay,
    SwitchDR,
    WeightDiagnostics,
    default_estimators,
    estimate_all,
    make_estimator,
    weight_diagnostics,
)
from router_rl.ope.metrics import (
    CalibrationCurve,
    Interval,
    OperatingPoint,
    RoutingMetrics,
    aiq,
    apgr,
    calibrate_operating_point,
    calibration_curve,
    cost_at_quality,
    cpt,
    frontier_summary,
    headline_intervals,
    metrics_by_group,
    nondecreasing_hull,
    routing_metrics,
)
from router_rl.ope.validation import OPEInputError, one_hot

__all__ = [
    "DEFAULT_TAU_GRID",
    "ESTIMATOR_REGISTRY",
    "INTERVAL_METHODS",
    "IPS",
    "SNIPS",
    "BettingInterval",
    "CalibrationCurve",
    "DirectMethod",
    "DoublyRobust",
    "Estimate",
    "Interval",
    "LoggedFeedback",
    "OPEInputError",
    "OffPolicyEstimator",
    "OperatingPoint",
    "Replay",
    "RoutingMetrics",
    "SwitchDR",
    "WeightDiagnostics",
    "aiq",
    "apgr",
    "betting_interval",
    "calibrate_operating_point",
    "calibration_curve",
    "cost_at_quality",
    "cpt",
    "default_estimators",
    "estimate_all",
    "frontier_summary",
    "headline_intervals",
    "make_estimator",
    "metrics_by_group",
    "nondecreasing_hull",
    "one_hot",
    "routing_metrics",
    "weight_diagnostics",
]

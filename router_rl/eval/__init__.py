"""Offline evaluation glue: run policies on outcome matrices, feed arrays to :mod:`router_rl.ope`,
check the independence gates and write reports."""

from router_rl.eval.independence import (
    GateCheck,
    IndependenceConfig,
    IndependenceReport,
    PhaseGates,
    PhaseResult,
    independence_report,
)
from router_rl.eval.runner import (
    EvalConfig,
    EvaluationResult,
    FrontierPoint,
    PolicyEvaluation,
    default_features,
    evaluate_policies,
)

__all__ = [
    "EvalConfig",
    "EvaluationResult",
    "FrontierPoint",
    "GateCheck",
    "IndependenceConfig",
    "IndependenceReport",
    "PhaseGates",
    "PhaseResult",
    "PolicyEvaluation",
    "default_features",
    "evaluate_policies",
    "independence_report",
]

"""Routing policies: one interface (:class:`RoutingPolicy`), a registry, learned and baseline routers.

Concrete policies live in their own modules (``baselines``, ``lgbm``, ``supervised``, ``bandits``,
``cascade``, ``ppo``); :func:`make_policy` and :meth:`RoutingPolicy.load` import them on demand, so
importing this package stays cheap (no LightGBM / torch).
"""

from router_rl.policies.base import (
    POLICY_REGISTRY,
    PolicyLoadError,
    RouteOutcome,
    RoutingPolicy,
    make_policy,
    policy_factory,
    register_policy,
)
from router_rl.policies.calibration import CalibrationResult, Target
from router_rl.policies.decision import DecisionConfig

__all__ = [
    "POLICY_REGISTRY",
    "CalibrationResult",
    "DecisionConfig",
    "PolicyLoadError",
    "RouteOutcome",
    "RoutingPolicy",
    "Target",
    "make_policy",
    "policy_factory",
    "register_policy",
]

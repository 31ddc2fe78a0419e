"""Routing policies: one interface (:class:`RoutingPolicy`), a registry, learned and baseline routers."""

from router_rl.policies.base import (
    POLICY_REGISTRY,
    PolicyLoadError,
    RouteOutcome,
    RoutingPolicy,
    policy_factory,
    register_policy,
)

__all__ = [
    "POLICY_REGISTRY",
    "PolicyLoadError",
    "RouteOutcome",
    "RoutingPolicy",
    "policy_factory",
    "register_policy",
]

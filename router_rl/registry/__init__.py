"""Policy registry and OPE-gated promotion.

* :mod:`router_rl.registry.registry`: :class:`PolicyRegistry`, a folder of versioned policy
  artifacts, which one is live (previous-live stack, canary) and an append-only record book;
* :mod:`router_rl.registry.gate`: :class:`GateConfig` and :func:`evaluate_gate`, the promotion
  gate on logged data (paired utility difference, quality ratio, local share, support / ESS);
* :mod:`router_rl.registry.promote`: :func:`promote`, register + gate + record + go live (or
  start the canary).

Layout, semantics and the CLI (``router-rl policies list|show``, ``promote``, ``rollback``):
docs/promotion.md.
"""

from router_rl.registry.gate import GateCheck, GateConfig, GateError, GateVerdict, evaluate_gate, evaluate_gates
from router_rl.registry.promote import PromotionRecord, promote
from router_rl.registry.registry import (
    CanaryState,
    PolicyRegistry,
    RegistryError,
    UnknownVersionError,
    VersionInfo,
)

__all__ = [
    "CanaryState",
    "GateCheck",
    "GateConfig",
    "GateError",
    "GateVerdict",
    "PolicyRegistry",
    "PromotionRecord",
    "RegistryError",
    "UnknownVersionError",
    "VersionInfo",
    "evaluate_gate",
    "evaluate_gates",
    "promote",
]

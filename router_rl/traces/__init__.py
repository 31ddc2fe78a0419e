"""Trace store: canonical outcome / decision-log / catalog tables, importers, simulation.

``router_rl.traces`` imports nothing else from ``router_rl``.
"""

from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.matrix import OutcomeMatrix
from router_rl.traces.schema import (
    CATALOG_SCHEMA,
    CLOUD,
    DECISION_LOG_SCHEMA,
    LOCAL,
    OUTCOME_SCHEMA,
)

__all__ = [
    "CATALOG_SCHEMA",
    "CLOUD",
    "DECISION_LOG_SCHEMA",
    "LOCAL",
    "OUTCOME_SCHEMA",
    "ModelCatalog",
    "ModelSpec",
    "OutcomeMatrix",
    "TraceValidationError",
]

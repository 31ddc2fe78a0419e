"""Trace store: canonical outcome / decision-log / catalog tables, importers, simulation.

``router_rl.traces`` imports nothing else from ``router_rl``. Everything exported here needs only
polars/numpy (pyarrow is imported inside the parquet codec, ``traces/parquet.py``).
"""

from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.errors import TraceValidationError
from router_rl.traces.load import load_traces
from router_rl.traces.matrix import OutcomeMatrix
from router_rl.traces.schema import (
    CATALOG_SCHEMA,
    CLOUD,
    DECISION_LOG_SCHEMA,
    LOCAL,
    OUTCOME_SCHEMA,
)
from router_rl.traces.simulate import simulate_fleet
from router_rl.traces.split import assign_splits, carve_split
from router_rl.traces.traceset import TraceSet
from router_rl.traces.validate import ValidationReport, validate_outcomes

__all__ = [
    "CATALOG_SCHEMA",
    "CLOUD",
    "DECISION_LOG_SCHEMA",
    "LOCAL",
    "OUTCOME_SCHEMA",
    "ModelCatalog",
    "ModelSpec",
    "OutcomeMatrix",
    "TraceSet",
    "TraceValidationError",
    "ValidationReport",
    "assign_splits",
    "carve_split",
    "load_traces",
    "simulate_fleet",
    "validate_outcomes",
]

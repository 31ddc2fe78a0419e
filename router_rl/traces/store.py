"""Kept import path: ``router_rl.traces.store`` re-exports the trace-set modules.

``TraceSet`` lives in :mod:`router_rl.traces.traceset`, the parquet codec in
:mod:`router_rl.traces.parquet`, and :func:`load_traces` in :mod:`router_rl.traces.load`.
"""

from router_rl.traces.load import load_traces
from router_rl.traces.parquet import GT_PREFIX, METADATA_KEY, read_metadata
from router_rl.traces.traceset import TraceSet

__all__ = ["GT_PREFIX", "METADATA_KEY", "TraceSet", "load_traces", "read_metadata"]

"""The request ids the router has logged: which feedback may refer to (``POST /v1/feedback``).

The index is the union of the ``request_id`` column of every decision-log part file present at
start-up (only the ``request_id`` and ``strategy`` columns are read) and of every row the live
router appends to its decision log afterwards (an observer on the writer sees a row when it is
appended, before it is flushed). Requests logged with ``strategy = "rejected"`` (refused before
any routing decision: bad body, bad token, unknown model) are kept apart: there is no decision
to label, so feedback for them is refused with 409.

Memory: one Python string per logged request (~100 bytes each: ~1 GB per 10 M requests).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from router_rl.traces.decision_log import DecisionLogError, DecisionLogWriter
from router_rl.traces.parts import PART_GLOB

log = logging.getLogger(__name__)

#: ``strategy`` of a decision-log row refused before any routing decision.
REJECTED = "rejected"


class RequestIndex:
    """Known request ids: routed ones and ones refused before routing.

    Build it with :meth:`attach` (live writer + existing parts) or fill it with :meth:`observe`.
    """

    def __init__(self) -> None:
        self._routed: set[str] = set()
        self._rejected: set[str] = set()
        self.parts_read = 0

    def __len__(self) -> int:
        return len(self._routed) + len(self._rejected)

    def status(self, request_id: str) -> str | None:
        """``"routed"``, ``"rejected"`` or ``None`` (never logged).

        An id logged both ways (a client reusing its ``x-request-id``) counts as routed.
        """
        if request_id in self._routed:
            return "routed"
        if request_id in self._rejected:
            return "rejected"
        return None

    def observe(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add decision-log rows (the writer's observer: called on append, before the flush)."""
        for r in rows:
            rid = r.get("request_id")
            if rid is None:
                continue
            (self._rejected if r.get("strategy") == REJECTED else self._routed).add(str(rid))

    def load_parts(self, directory: str | Path) -> int:
        """Add the ids of every decision-log part file in ``directory``; returns the rows read.

        Raises:
            DecisionLogError: a part file is unreadable or lacks the columns (names the file).
        """
        d = Path(directory)
        if not d.is_dir():
            return 0
        n = 0
        for p in sorted(d.glob(PART_GLOB)):
            try:
                df = pl.read_parquet(p, columns=["request_id", "strategy"])
            except Exception as e:
                raise DecisionLogError(
                    f"{p}: cannot read request_id/strategy of this decision-log part ({e}); "
                    "the feedback endpoint needs every part readable"
                ) from e
            self.observe(df.to_dicts())
            n += df.height
            self.parts_read += 1
        return n

    @classmethod
    def attach(cls, writer: DecisionLogWriter) -> RequestIndex:
        """An index following ``writer`` live, filled with the parts already in its folder.

        The observer is registered first, then the writer's buffer is flushed and the folder read,
        so no row is missed between the two (a row seen twice is harmless).
        """
        idx = cls()
        writer.add_observer(idx.observe)
        writer.flush()
        n = idx.load_parts(writer.directory)
        log.info("request index: %d logged request id(s) from %d decision-log part(s)", n, idx.parts_read)
        return idx

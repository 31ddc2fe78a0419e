"""Durable spend ledger: one SQLite row per reserved / settled call, in WAL mode.

A reservation is written (committed) **before** the provider call and settled (updated to the
actual cost) after it, so a router killed mid-call (SIGKILL) restarts with that call still
counted, at its reserved amount: the ledger can over-count a call the kill interrupted, never
under-count one. ``synchronous=NORMAL`` (default) survives a process crash; ``FULL`` also
survives power loss at one fsync per write.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    agent TEXT NOT NULL,
    usd REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'settled'))
);
CREATE INDEX IF NOT EXISTS spend_day ON spend(day);
CREATE INDEX IF NOT EXISTS spend_month ON spend(month);
"""


@dataclass(frozen=True)
class LedgerTotal:
    """Summed spend of one agent in one period key (``YYYY-MM-DD`` or ``YYYY-MM``)."""

    agent: str
    period: str
    usd: float


class SpendLedger:
    """Append / settle spend rows in a SQLite file (thread-safe; one connection, one lock).

    Args:
        path: Database file (its folder is created).
        synchronous: ``"normal"`` (durable across a process crash) or ``"full"`` (and power loss).

    Raises:
        OSError: the folder cannot be created.
        sqlite3.DatabaseError: the file is not a ledger.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "normal") -> None:
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous: expected 'normal' or 'full', got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)

    def reserve(self, ts: float, day: str, month: str, agent: str, usd: float) -> int:
        """Commit a reservation row; returns its id."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO spend (ts, day, month, agent, usd, state) VALUES (?, ?, ?, ?, ?, 'reserved')",
                (ts, day, month, agent, usd),
            )
            return int(cur.lastrowid or 0)

    def settle(self, row_id: int, usd: float) -> None:
        """Replace a reservation by the actual cost."""
        with self._lock:
            self._db.execute("UPDATE spend SET usd = ?, state = 'settled' WHERE id = ?", (usd, row_id))

    def record(self, ts: float, day: str, month: str, agent: str, usd: float) -> None:
        """Commit a settled row directly (spend without a prior reservation)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO spend (ts, day, month, agent, usd, state) VALUES (?, ?, ?, ?, ?, 'settled')",
                (ts, day, month, agent, usd),
            )

    def totals(self, day: str, month: str) -> Iterator[LedgerTotal]:
        """Per-agent sums for ``day`` and ``month`` (unsettled reservations count at their amount)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT agent, day, SUM(usd) FROM spend WHERE day = ? GROUP BY agent "
                "UNION ALL SELECT agent, month, SUM(usd) FROM spend WHERE month = ? GROUP BY agent",
                (day, month),
            ).fetchall()
        for agent, period, usd in rows:
            yield LedgerTotal(str(agent), str(period), float(usd or 0.0))

    def unsettled(self) -> int:
        """Reservations never settled (calls a crash interrupted)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM spend WHERE state = 'reserved'").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

"""The live report's inputs: the joined log read and checked, filtered, its models placed and classified.

Also the breaker history of each provider, from the ``breaker_states`` JSON the router records
with every decision (docs/operations.md, *How each number is computed*).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from router_rl.traces.catalog import ModelCatalog

#: ``fallback_reason`` prefix of a request the emergency cloud fallback answered.
EMERGENCY_PREFIX = "emergency_cloud"
#: Routing classes of a row, in display order.
CLASSES: tuple[str, ...] = ("local", "cloud", "emergency", "failed")
#: Columns the report reads from the raw decision log when the joined table lacks them.
DECISION_EXTRA = ("input_tokens", "output_tokens", "usage_estimated", "breaker_states", "attempts")


class LiveReportError(ValueError):
    """The log cannot be reported as asked (names the input / option and what was expected)."""


def read_logged(path: str | Path) -> pl.DataFrame:
    """The joined table at ``path``, checked against :data:`LOGGED_SCHEMA`.

    Raises:
        FileNotFoundError: no such file.
        LiveReportError: unreadable, or a column missing / of another dtype (names the column).
    """
    from router_rl.logs.data import LoggedDataError, check_logged_table

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file (expected the parquet of `router-rl logs join`)")
    try:
        df = pl.read_parquet(p)
        check_logged_table(df, source=str(p))
    except LoggedDataError as e:
        raise LiveReportError(str(e)) from None
    except Exception as e:  # polars raises its own error kinds for a broken file
        raise LiveReportError(f"{p}: unreadable parquet file ({e})") from None
    return df


def attach_decisions(table: pl.DataFrame, decisions: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Add :data:`DECISION_EXTRA` columns from the raw decision log (by ``request_id``, first row by ``ts``).

    Returns:
        ``(table, rows of the table the decision log lacks)`` (their extra columns are null, counted).
    """
    extra = [c for c in DECISION_EXTRA if c not in table.columns]
    if not extra:
        return table, 0
    dec = (decisions.filter(pl.col("strategy") != "rejected").sort("ts")
           .unique(subset="request_id", keep="first", maintain_order=True).select(["request_id", *extra]))
    out = table.join(dec, on="request_id", how="left")
    missing = int(out.filter(~pl.col("request_id").is_in(dec["request_id"].implode())).height)
    return out, missing


def filter_window(
    df: pl.DataFrame, since: datetime | None, until: datetime | None, agent_types: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Rows with ``since <= ts < until`` of the agent types (all when empty), and what each filter excluded."""
    counts: dict[str, int] = {"rows_read": df.height}
    if since is not None:
        keep = df.filter(pl.col("ts") >= _utc(since))
        counts["excluded_before_since"] = df.height - keep.height
        df = keep
    if until is not None:
        keep = df.filter(pl.col("ts") < _utc(until))
        counts["excluded_after_until"] = df.height - keep.height
        df = keep
    if agent_types:
        keep = df.filter(pl.col("agent_type").is_in(list(agent_types)))
        counts["excluded_agent_type"] = df.height - keep.height
        df = keep
    counts["rows"] = df.height
    return df, counts


def _utc(t: datetime) -> datetime:
    from datetime import UTC

    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def model_locations(df: pl.DataFrame, catalog: ModelCatalog | None) -> dict[str, str]:
    """Model -> location, from the catalog (must cover every logged model) or ``action_locations``."""
    models = set(df["action_models"].explode().drop_nulls().to_list()) | set(df["outcome_model"].drop_nulls())
    if catalog is not None:
        absent = sorted(m for m in models if m not in catalog)
        if absent:
            raise LiveReportError(f"--catalog: logged model(s) {absent} are not in the catalog")
        return {m: catalog[m].location for m in models}
    loc: dict[str, str] = {}
    for ms, ls in zip(df["action_models"].to_list(), df["action_locations"].to_list(), strict=True):
        if ls is None:
            continue
        loc.update(dict(zip(ms, ls, strict=True)))
    absent = sorted(m for m in models if m not in loc)
    if absent:
        raise LiveReportError(
            f"--catalog: the log has no locations for model(s) {absent} (join it with --catalog, or pass --catalog)")
    return loc


def routing_classes(df: pl.DataFrame, loc: dict[str, str]) -> np.ndarray:
    """Per row: ``failed``, ``emergency``, ``local`` or ``cloud`` (:data:`CLASSES`)."""
    om = df["outcome_model"].to_list()
    reason = df["fallback_reason"].fill_null("").to_list()
    out = np.empty(df.height, dtype=object)
    for i, (m, r) in enumerate(zip(om, reason, strict=True)):
        if m is None:
            out[i] = "failed"
        elif r.startswith(EMERGENCY_PREFIX):
            out[i] = "emergency"
        else:
            out[i] = "local" if loc[m] == "local" else "cloud"
    return out


def reference_model(
    requested: str | None, df: pl.DataFrame, loc: dict[str, str], catalog: ModelCatalog | None
) -> str:
    """``requested``, else the catalog's most expensive cloud model (1M in + 1M out), else the logged cloud
    model with the highest mean cost."""
    cloud = sorted(m for m, v in loc.items() if v == "cloud")
    if requested is not None:
        if catalog is not None and requested not in catalog:
            raise LiveReportError(f"--reference: {requested!r} is not in the catalog")
        if catalog is None and requested not in loc:
            raise LiveReportError(f"--reference: {requested!r} is not a logged model (give --catalog)")
        return requested
    if catalog is not None:
        cands = [s for s in catalog if s.location == "cloud" and (s.model in loc or not cloud)]
        if not cands:
            raise LiveReportError("--reference: the catalog has no cloud model; name the reference model")
        return max(cands, key=lambda s: (s.usd_per_m_input + s.usd_per_m_output, s.model)).model
    if not cloud:
        raise LiveReportError("--reference: no cloud model in the log; name the reference model (and give --catalog)")
    costs = df.filter(pl.col("outcome_model").is_in(cloud)).group_by("outcome_model").agg(pl.col("cost_usd").mean())
    if costs.height == 0:
        return cloud[0]
    return str(costs.sort(["cost_usd", "outcome_model"], descending=[True, False])["outcome_model"][0])


def breaker_history(df: pl.DataFrame, t_end: float | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Trips and uptime per provider from the ``breaker_states`` recorded with every decision."""
    notes: list[str] = []
    if "breaker_states" not in df.columns:
        return {}, ["breaker history: not available (the joined table has no breaker_states; pass --decisions)"]
    sub = df.filter(pl.col("breaker_states").is_not_null()).sort("ts")
    missing = df.height - sub.height
    if missing:
        notes.append(f"breaker history: {missing} row(s) without breaker_states (not in the decision log) skipped")
    if sub.height == 0:
        return {}, [*notes, "breaker history: no row carries breaker states"]
    ts = sub["ts"].dt.epoch("us").to_numpy() / 1e6
    states = [json.loads(s) for s in sub["breaker_states"].to_list()]
    end = t_end if t_end is not None else float(ts[-1])
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({p for s in states for p in s}):
        seq = [s.get(name) for s in states]
        trips = sum(1 for a, b in itertools.pairwise(seq) if a == "closed" and b in ("open", "half_open"))
        opened_rows = sum(1 for s in seq if s == "open")
        held = np.diff(np.append(ts, end))  # each recorded state holds until the next decision
        known = np.asarray([s is not None for s in seq])
        up = np.asarray([s == "closed" for s in seq])
        total = float(held[known].sum())
        out[name] = {
            "trips": int(trips),
            "rows_open": int(opened_rows),
            "rows": int(known.sum()),
            "observed_s": total,
            "uptime": (float(held[up].sum() / total) if total > 0
                       else (float(up[known].mean()) if known.any() else None)),
            "first_state": next((s for s in seq if s is not None), None),
            "last_state": next((s for s in reversed(seq) if s is not None), None),
        }
    return out, notes


def agent_types_of(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--agent-type a --agent-type b,c`` -> ``("a", "b", "c")``."""
    return tuple(s.strip() for v in (values or []) for s in v.split(",") if s.strip())

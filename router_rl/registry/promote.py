"""Promotion: judge a candidate artifact on a joined log, record the decision, go live on a pass.

:func:`promote` does, in order:

1. load the candidate artifact and the incumbent: the registry's live version, or ``"logged"``
   (the logging policy itself) when nothing is live yet, or the one asked for;
2. load the joined log (``router-rl logs join`` parquet) and judge the candidate with
   :func:`~router_rl.registry.gate.evaluate_gate` (support groups from the log's ``category`` /
   ``complexity`` columns, as ``router-rl ope`` does);
3. register the candidate (a copy, :meth:`PolicyRegistry.register`: a refused candidate is kept
   too, so every record points at the exact files that were judged);
4. write one ``promotion`` record: candidate, incumbent, the log (path, sha256, rows), every
   estimate with its interval, the checks, the verdict and why, and the action taken;
5. on a pass: ``set_live`` (``canary_share == 0``), or ``set_canary(version, canary_share)``
   when the gate asks for a canary and a live version exists to split traffic with (the live
   router ramps it; with nothing live the candidate goes live directly). When the live version
   changed while the candidate was judged, nothing is changed (action ``stale``: judge again).

A candidate or log that cannot be evaluated at all (another encoder, other models, an unreadable
file) raises before anything is registered or recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from router_rl.registry.files import sha256_file
from router_rl.registry.gate import LOGGED, GateConfig, GateError, GateVerdict, evaluate_gate
from router_rl.registry.registry import PolicyRegistry, RegistryError

if TYPE_CHECKING:
    from router_rl.policies.base import RoutingPolicy
    from router_rl.traces.catalog import ModelCatalog

#: Record kind of a promotion decision.
PROMOTION = "promotion"
#: What a promotion did.
Action = Literal["set_live", "canary", "refused", "stale"]


@dataclass(frozen=True)
class PromotionRecord:
    """The outcome of :func:`promote`.

    Attributes:
        version: The candidate's registry version.
        incumbent: The incumbent's version, or ``"logged"``.
        verdict: The gate's verdict.
        action: ``set_live``, ``canary`` (started at ``canary_share``), ``refused`` or ``stale``.
        record_path: The ``promotion`` record's file.
        log: ``{path, sha256, n_rows, n_labeled}`` of the log judged on.
        canary_share: Share the canary started at (0 unless ``action == "canary"``).
    """

    version: str
    incumbent: str
    verdict: GateVerdict
    action: Action
    record_path: Path
    log: dict[str, Any]
    canary_share: float = 0.0

    @property
    def passed(self) -> bool:
        """The gate passed."""
        return self.verdict.passed

    @property
    def promoted(self) -> bool:
        """The candidate went live or started as a canary."""
        return self.action in ("set_live", "canary")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the record's content, plus where it was written)."""
        return {
            "version": self.version,
            "incumbent": self.incumbent,
            "action": self.action,
            "canary_share": self.canary_share,
            "record": str(self.record_path),
            "log": dict(self.log),
            "verdict": self.verdict.to_dict(),
        }


def _resolve_incumbent(
    registry: PolicyRegistry, incumbent: RoutingPolicy | str | None
) -> tuple[RoutingPolicy | str, str]:
    """``(policy or "logged", its name)``."""
    if incumbent is None:
        live = registry.live
        if live is None:
            return LOGGED, LOGGED
        return registry.load(live), live
    if isinstance(incumbent, str):
        if incumbent == LOGGED:
            return LOGGED, LOGGED
        return registry.load(incumbent), incumbent
    return incumbent, str(incumbent.metadata.get("registry_version") or incumbent.version)


def load_gate_log(log_path: str | Path, *, catalog: ModelCatalog | None = None) -> tuple[Any, Any, tuple[str, ...]]:
    """``(LoggedData, support groups or None, group columns)`` of a joined log file.

    Raises:
        GateError: a missing file, or a log that does not validate (names the file and column).
    """
    import polars as pl

    from router_rl.eval.logged import GROUP_COLUMNS, group_keys
    from router_rl.logs.data import LoggedDataError, load_logged

    p = Path(log_path)
    if not p.is_file():
        raise GateError(f"{p}: no such file (give the parquet written by `router-rl logs join`)")
    try:
        data = load_logged(p, catalog=catalog)
        have = pl.read_parquet_schema(p)
        table = pl.read_parquet(p, columns=[c for c in ("request_id", *GROUP_COLUMNS) if c in have])
    except (LoggedDataError, OSError, ValueError) as e:
        raise GateError(f"{p}: {e}") from e
    groups, group_by = group_keys(table, data)
    return data, groups, tuple(group_by)


def promote(
    registry: PolicyRegistry,
    candidate_dir: str | Path,
    log_path: str | Path,
    gate: GateConfig | None = None,
    *,
    incumbent: RoutingPolicy | str | None = None,
    actor: str = "promote",
    source: str | None = None,
    catalog: ModelCatalog | None = None,
) -> PromotionRecord:
    """Judge, register, record and (on a pass) promote a candidate (module docstring).

    Args:
        registry: The registry.
        candidate_dir: The candidate's saved artifact folder.
        log_path: The joined log (parquet).
        gate: Thresholds (default :class:`GateConfig`).
        incumbent: None (the live version, else ``"logged"``), ``"logged"``, a version id, or a policy.
        actor: Who promotes (recorded).
        source: Provenance of the candidate (default: its folder).
        catalog: Model catalog for the log's locations (default: the log's own).

    Returns:
        The :class:`PromotionRecord`.

    Raises:
        RegistryError: not a loadable artifact; an unknown incumbent version.
        GateError: a log or candidate the gate cannot evaluate (nothing is registered then).
    """
    from router_rl.policies.base import PolicyLoadError, RoutingPolicy

    cfg = gate or GateConfig()
    cdir = Path(candidate_dir)
    if not cdir.is_dir():
        raise RegistryError(f"{cdir}: not a folder (give the candidate's saved policy artifact)")
    try:
        cand = RoutingPolicy.load(cdir)
    except (PolicyLoadError, OSError, ValueError) as e:
        raise RegistryError(f"{cdir}: not a loadable policy artifact ({e})") from e
    live_before = registry.live
    inc, inc_name = _resolve_incumbent(registry, incumbent)
    data, groups, group_by = load_gate_log(log_path, catalog=catalog)
    verdict = evaluate_gate(cand, inc, data, cfg, groups=groups, group_by=group_by, log_path=str(log_path))
    version = registry.register(cdir, source=source)
    verdict = dataclasses.replace(verdict, candidate=version)
    log_info = {
        "path": str(Path(log_path).resolve()),
        "sha256": sha256_file(Path(log_path)),
        "n_rows": data.n,
        "n_labeled": data.n_labeled,
    }
    action: Action = "refused"
    share = 0.0
    if verdict.passed:
        if registry.live != live_before:
            action = "stale"
        elif cfg.canary_share > 0 and live_before is not None:
            action, share = "canary", float(cfg.canary_share)
        else:
            action = "set_live"
    why = "gate passed" if verdict.passed else "; ".join(verdict.reasons)
    rec = registry.record(
        PROMOTION,
        {
            "candidate": version,
            "candidate_kind": cand.kind,
            "candidate_source": source if source is not None else str(cdir.resolve()),
            "incumbent": inc_name,
            "live_before": live_before,
            "log": log_info,
            "passed": verdict.passed,
            "action": action,
            "canary_share": share,
            "why": why if action != "stale" else f"gate passed but the live version changed from {live_before} "
            f"to {registry.live} during the evaluation: judge again",
            "actor": actor,
            "verdict": verdict.to_dict(),
        },
    )
    reason = f"promotion {rec.name}: gate passed vs {inc_name}"
    if action == "set_live":
        registry.set_live(version, reason=reason, actor=actor, details={"promotion_record": rec.name})
    elif action == "canary":
        registry.set_canary(version, share, reason=reason, actor=actor, details={"promotion_record": rec.name})
    return PromotionRecord(
        version=version,
        incumbent=inc_name,
        verdict=verdict,
        action=action,
        record_path=rec,
        log=log_info,
        canary_share=share,
    )

"""The LEARNED strategy's live policy versions: hot swap, canary split and ramp, automatic rollback.

:class:`LivePolicies` holds the version that answers the LEARNED strategy (``live``), optionally a
``canary`` version answering a share of it, and the evidence the router collects about each:
a quality window fed by ``POST /v1/feedback`` (the feedback service calls :meth:`on_feedback`
with every *stored* label; a duplicate never counts twice) and an outcome window fed by the end
of every request (:meth:`on_outcome`). The rules live in :mod:`router_rl.router.canary` (split,
ramp) and :mod:`router_rl.router.rollback`; the intervals in :mod:`router_rl.router.windows`.

Hot swap: a new version is loaded and checked against the router's model table in a worker
thread (the event loop keeps serving), then swapped in by one assignment on the event loop. A
decision picks its :class:`PolicySlot` once, so a request in flight finishes on the client it
started with; a replaced slot is closed once its calls in flight have drained.

Every decision a slot makes logs ``policy_version`` = ``<registry version>/<engine version>``
(e.g. ``v0003/lgbm@ab12cd``), or the engine version alone for a policy not from a registry.

The loaded versions themselves (:class:`~router_rl.router.policy_slot.PolicySlot`) and the
registry protocol live in :mod:`router_rl.router.policy_slot`.

Size: over 500 lines because the swap, canary and rollback operations share one lock, one state
and one set of background tasks; splitting them would spread that state over modules.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router_rl.core.errors import ConfigError
from router_rl.router.canary import CanaryConfig, in_canary, ramp_verdict
from router_rl.router.policy_client import InProcessPolicyClient, PolicyClient
from router_rl.router.policy_slot import PolicySlot, PolicySwapRefused, Registry
from router_rl.router.rollback import RollbackConfig, rollback_verdict
from router_rl.router.windows import OutcomeWindow, QualityWindow

if TYPE_CHECKING:
    from router_rl.router.telemetry import RouterMetrics

log = logging.getLogger("router_rl.router")

#: ``actor`` of the changes the router makes on its own (ramp steps, automatic rollbacks).
ROUTER_ACTOR = "router"


@dataclass
class Evidence:
    """What the router has seen of one version."""

    ramp: QualityWindow
    guard: QualityWindow
    outcomes: OutcomeWindow
    labels_at_step: int = 0
    reference: float | None = None  # quality of the version it replaced (floor_ratio of the live rule)
    rolled_back: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"feedback": self.guard.stats().to_dict(), "feedback_total": self.guard.total,
                "decisions": len(self.outcomes), "bad_decisions": self.outcomes.bad,
                "bad_ratio": self.outcomes.ratio, "labels_at_step": self.labels_at_step,
                "reference_quality": self.reference}


@dataclass
class RollbackEvent:
    """One rollback (kept for ``GET /admin/state``)."""

    role: str
    version: str
    to: str | None
    reason: str
    detail: str
    actor: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "version": self.version, "to": self.to, "reason": self.reason,
                "detail": self.detail, "actor": self.actor}


class LivePolicies:
    """The live and canary versions of the LEARNED strategy and the rules that move them.

    Args:
        live: The live version (``None``: no learned policy configured).
        check: Validates a loaded client against the router (models, state); raises
            :class:`~router_rl.core.errors.ConfigError` naming the setting.
        metrics: Router metrics (rollback counter, version info, canary share).
        canary_cfg: Canary ramp settings.
        rollback_cfg: Rollback settings.
        registry: The policy registry (``None``: versions are artifact folders).
        canary: A canary version to start with, at ``canary_share``.
        canary_share: Its share of LEARNED traffic.
    """

    def __init__(
        self,
        live: PolicySlot | None,
        check: Callable[[PolicyClient, str], None],
        metrics: RouterMetrics,
        canary_cfg: CanaryConfig,
        rollback_cfg: RollbackConfig,
        *,
        registry: Registry | None = None,
        canary: PolicySlot | None = None,
        canary_share: float = 0.0,
    ) -> None:
        self.live = live
        self.canary = canary if canary_share > 0 else None
        self.canary_share = canary_share if canary is not None else 0.0
        self._check = check
        self._metrics = metrics
        self.canary_cfg = canary_cfg
        self.rollback_cfg = rollback_cfg
        self.registry = registry
        self._history: list[PolicySlot] = []  # replaced live versions (reloaded from .source on rollback)
        self._evidence: dict[str, Evidence] = {}
        self._requests: OrderedDict[str, str] = OrderedDict()
        self._lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.rollbacks: list[RollbackEvent] = []
        self.steps: list[dict[str, Any]] = []
        self.feedback_without_version = 0
        self._pending: set[str] = set()  # labels with a rollback under way
        self._publish()

    # --- selection and evidence (event loop, synchronous) ----------------------------------
    def pick(self, request_id: str) -> PolicySlot | None:
        """The slot that decides request ``request_id`` (the canary for its hashed share)."""
        c = self.canary
        if c is not None and in_canary(self.canary_cfg.seed, request_id, self.canary_share):
            return c
        return self.live

    def evidence(self, label: str) -> Evidence:
        """The evidence of version ``label`` (created empty)."""
        ev = self._evidence.get(label)
        if ev is None:
            rc, cc = self.rollback_cfg, self.canary_cfg
            ev = self._evidence[label] = Evidence(QualityWindow(cc.window), QualityWindow(rc.window),
                                                  OutcomeWindow(rc.decision_window))
        return ev

    def on_decision(self, request_id: str, label: str) -> None:
        """Remember that version ``label`` decided ``request_id`` (feedback is attributed by it)."""
        self._requests[request_id] = label
        self._requests.move_to_end(request_id)
        while len(self._requests) > self.rollback_cfg.track_requests:
            self._requests.popitem(last=False)

    def version_of(self, request_id: str) -> str | None:
        """The version that decided ``request_id`` (``None``: a rule decided it, or no longer tracked)."""
        return self._requests.get(request_id)

    def on_outcome(self, label: str, bad: bool) -> None:
        """The end of one request decided (or attempted) by version ``label``."""
        self.evidence(label).outcomes.add(bad)
        self._judge(label)

    def on_feedback(self, labels: list[tuple[str, float]]) -> None:
        """Stored feedback ``(request_id, quality)``: added to the deciding version's windows."""
        touched: list[str] = []
        for rid, quality in labels:
            label = self._requests.get(rid)
            if label is None:
                self.feedback_without_version += 1
                continue
            ev = self.evidence(label)
            ev.ramp.add(quality)
            ev.guard.add(quality)
            if self.canary is not None and label == self.canary.label:
                ev.labels_at_step += 1
            if label not in touched:
                touched.append(label)
        for label in touched:
            self._judge(label)

    def _role(self, label: str) -> str | None:
        if self.canary is not None and self.canary.label == label:
            return "canary"
        if self.live is not None and self.live.label == label:
            return "live"
        return None

    def _judge(self, label: str) -> None:
        role = self._role(label)
        ev = self.evidence(label)
        if role is None or label in self._pending or ev.rolled_back:
            return
        if self.rollback_cfg.enabled:
            if role == "canary":
                ref = self.evidence(self.live.label).guard.stats().mean if self.live is not None else None
                live_n = self.evidence(self.live.label).guard.stats().n if self.live is not None else 0
                ref = ref if live_n >= self.rollback_cfg.min_feedback else None
            else:
                ref = ev.reference
            verdict = rollback_verdict(self.rollback_cfg, ev.guard.stats(), ev.outcomes, ref)
            if verdict is not None:
                self._auto_rollback(role, label, *verdict)
                return
        if role == "canary" and self.canary_cfg.auto_ramp and self.live is not None:
            go, why = ramp_verdict(self.canary_cfg, ev.ramp.stats(), ev.labels_at_step,
                                   self.evidence(self.live.label).ramp.stats())
            if go:
                self._step(label, why)

    # --- automatic changes -----------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            log.error("ALERT learned policy change failed: %s: %s", type(e).__name__, e)

    def _step(self, label: str, why: str) -> None:
        assert self.canary is not None
        old = self.canary_share
        new = self.canary_cfg.next_step(old)
        self.evidence(label).labels_at_step = 0
        if new >= 1.0:
            self._pending.add(label)
            log.info("canary %s: share %.2f -> 1.00, promoted to live (%s)", label, old, why)
            self._spawn(self._promote(label, why))
            return
        self.canary_share = new
        self._publish()
        step = {"version": label, "from": old, "to": new, "why": why}
        self.steps.append(step)
        log.info("canary %s: share %.2f -> %.2f (%s)", label, old, new, why)
        self._spawn(self._registry_call("set_canary", label, new, reason=f"canary ramp: {why}", actor=ROUTER_ACTOR))

    async def _promote(self, label: str, why: str) -> None:
        async with self._ops():
            c = self.canary
            self._pending.discard(label)
            if c is None or c.label != label:
                return
            self._make_live(c)
            self.canary, self.canary_share = None, 0.0
            self._publish()
            self.steps.append({"version": label, "from": None, "to": 1.0, "why": why})
            if self.registry is not None and c.registry_version is not None:
                reg = self.registry
                await asyncio.to_thread(reg.set_live, c.registry_version, reason=f"canary ramp complete: {why}",
                                        actor=ROUTER_ACTOR)
                await asyncio.to_thread(self._clear_registry_canary, c.registry_version, "canary promoted to live")

    def _clear_registry_canary(self, version: str, reason: str) -> None:
        assert self.registry is not None
        cur = self.registry.canary
        if cur is not None and getattr(cur, "version", None) == version:
            self.registry.set_canary(None, 0.0, reason=reason, actor=ROUTER_ACTOR)

    async def _registry_call(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.registry is None:
            return
        async with self._ops():
            await asyncio.to_thread(getattr(self.registry, method), *args, **kwargs)

    def _auto_rollback(self, role: str, label: str, reason: str, detail: str) -> None:
        self._pending.add(label)
        self.evidence(label).rolled_back = True
        if role == "canary":  # stop its traffic now; the registry and the close follow
            slot = self.canary
            self.canary, self.canary_share = None, 0.0
            self._publish()
            assert slot is not None
            self._alert(RollbackEvent("canary", label, self.live.label if self.live else None, reason, detail,
                                      ROUTER_ACTOR))
            self._spawn(self._finish_canary_rollback(slot, reason, detail, ROUTER_ACTOR))
        else:
            self._spawn(self._rollback_live(label, reason, detail, ROUTER_ACTOR))

    def _alert(self, ev: RollbackEvent) -> None:
        self.rollbacks.append(ev)
        self._metrics.policy_rollbacks.labels(role=ev.role, reason=ev.reason).inc()
        log.warning("ALERT policy rollback: %s version %s -> %s (%s: %s; by %s)", ev.role, ev.version,
                    ev.to or "rules", ev.reason, ev.detail, ev.actor)

    async def _finish_canary_rollback(self, slot: PolicySlot, reason: str, detail: str, actor: str) -> None:
        try:
            async with self._ops():
                if self.registry is not None and slot.registry_version is not None:
                    reg = self.registry
                    payload = {"role": "canary", "from": slot.registry_version, "to": reg.live,
                               "rollback_reason": reason, "detail": detail, "actor": actor,
                               "evidence": self.evidence(slot.label).to_dict()}
                    if getattr(reg.canary, "version", None) == slot.registry_version:
                        await asyncio.to_thread(reg.set_canary, None, 0.0, reason=f"rollback ({reason}): {detail}",
                                                actor=actor)
                    await asyncio.to_thread(reg.record, "rollback", payload)
        finally:
            self._pending.discard(slot.label)
            await slot.retire()

    async def _rollback_live(self, label: str, reason: str, detail: str, actor: str) -> str | None:
        try:
            async with self._ops():
                live = self.live
                if live is None or live.label != label:  # replaced meanwhile: nothing to roll back
                    log.info("rollback of %s skipped: it is no longer live", label)
                    return None
                details = {"role": "live", "rollback_reason": reason, "detail": detail,
                           "evidence": self.evidence(label).to_dict()}
                if self.registry is not None and live.registry_version is not None:
                    reg = self.registry
                    try:
                        to = await asyncio.to_thread(reg.rollback, reason=f"{reason}: {detail}", actor=actor,
                                                     details=details)
                    except ValueError as e:  # RegistryError: no previous version
                        raise PolicySwapRefused(f"rollback: {e}", param="role") from None
                    slot = await asyncio.to_thread(self._load, to, None, "rollback")
                    while self._history and self._history[-1].label != to:
                        self._history.pop()
                    if self._history:
                        self._history.pop()
                    if self.canary is not None:  # the registry ended it too
                        c = self.canary
                        self.canary, self.canary_share = None, 0.0
                        self._spawn(c.retire())
                else:
                    if not self._history or self._history[-1].source is None:
                        raise PolicySwapRefused(f"rollback: no previous version to return to from {label}",
                                                param="role")
                    prev = self._history.pop()
                    slot = await asyncio.to_thread(self._load, prev.registry_version, prev.source, "rollback")
                self.live = slot
                self.evidence(slot.label).rolled_back = False
                self._publish()
                self._alert(RollbackEvent("live", label, slot.label, reason, detail, actor))
                self._spawn(live.retire())
                return slot.label
        finally:
            self._pending.discard(label)

    # --- admin operations ------------------------------------------------------------------
    def _ops(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _load(self, version: str | None, policy_dir: Path | None, setting: str) -> PolicySlot:
        """Load + check one version (worker thread). Raises :class:`PolicySwapRefused`."""
        if version is not None:
            if self.registry is None:
                raise PolicySwapRefused(f"{setting}: a registry version needs learned.registry in the router config",
                                        param="version")
            try:
                policy_dir = Path(self.registry.path(version))
            except Exception as e:
                raise PolicySwapRefused(f"{setting}: unknown registry version {version!r}: {e}",
                                        param="version") from None
        elif self.registry is not None:
            raise PolicySwapRefused(f"{setting}: this router runs the registry {getattr(self.registry, 'root', '')}: "
                                    "register the artifact and give its version", param="policy_dir")
        assert policy_dir is not None
        try:
            client = InProcessPolicyClient.from_dir(policy_dir)
        except (OSError, ValueError) as e:
            raise PolicySwapRefused(f"{setting}: cannot load {policy_dir}: {e}", param="policy_dir") from None
        try:
            self._check(client, setting)
        except ConfigError as e:
            raise PolicySwapRefused(f"{setting}: {e.problem}", param="version" if version else "policy_dir") from None
        slot = PolicySlot(client, registry_version=version, source=policy_dir)
        known = [s for s in (self.live, self.canary, *self._history) if s is not None]
        if version is None and any(s.label == slot.label and s.source != slot.source for s in known):
            slot.disambiguate()
        return slot

    def _make_live(self, slot: PolicySlot) -> None:
        old = self.live
        if old is not None:
            ref = self.evidence(old.label).guard.stats()
            self.evidence(slot.label).reference = (
                ref.mean if ref.n >= self.rollback_cfg.min_feedback else self.evidence(old.label).reference)
            self._history.append(old)
            self._spawn(old.retire())
        self.live = slot

    def _fresh(self, label: str) -> None:
        self._evidence.pop(label, None)

    async def swap(self, *, version: str | None = None, policy_dir: Path | None = None, reason: str = "admin",
                   actor: str = "admin") -> dict[str, Any]:
        """Load ``version`` (registry) or ``policy_dir`` and make it live (requests in flight finish on the old one).

        Raises:
            PolicySwapRefused: bad version / artifact, models the router does not serve, or the
                router's policy is a remote endpoint.
        """
        self._check_swappable()
        async with self._ops():
            slot = await asyncio.to_thread(self._load, version, policy_dir, "policy")
            if self.canary is not None and self.canary.label == slot.label:
                old_canary = self.canary
                self.canary, self.canary_share = None, 0.0
                self._spawn(old_canary.retire())
            self._fresh(slot.label)
            self._make_live(slot)
            self._publish()
            if self.registry is not None and version is not None and self.registry.live != version:
                await asyncio.to_thread(self.registry.set_live, version, reason=reason, actor=actor)
            log.info("policy hot swap: live is now %s (by %s: %s)", slot.name, actor, reason)
            return self.state()

    async def set_canary(self, *, version: str | None = None, policy_dir: Path | None = None, share: float,
                         reason: str = "admin", actor: str = "admin") -> dict[str, Any]:
        """Start (or re-share) a canary; ``share`` 0 stops it.

        Raises:
            PolicySwapRefused: as :meth:`swap`, or a share outside [0, 1).
        """
        if not 0 <= share < 1:
            raise PolicySwapRefused(f"share: expected a value in [0, 1) (1.0 is POST /admin/policy), got {share}",
                                    param="share")
        self._check_swappable()
        async with self._ops():
            if share == 0 or (version is None and policy_dir is None):
                old = self.canary
                self.canary, self.canary_share = None, 0.0
                self._publish()
                if old is not None:
                    self._spawn(old.retire())
                    if self.registry is not None and old.registry_version is not None:
                        await asyncio.to_thread(self._clear_registry_canary, old.registry_version, reason)
                    log.info("canary %s stopped (by %s: %s)", old.label, actor, reason)
                return self.state()
            if self.canary is not None and (version is not None and self.canary.registry_version == version):
                slot = self.canary
            else:
                slot = await asyncio.to_thread(self._load, version, policy_dir, "canary")
                if self.live is not None and slot.label == self.live.label:
                    await slot.close()
                    raise PolicySwapRefused(f"canary: {slot.label} is the live version", param="version")
                self._fresh(slot.label)
            old = self.canary
            self.canary, self.canary_share = slot, float(share)
            self.evidence(slot.label).labels_at_step = 0
            self._publish()
            if old is not None and old is not slot:
                self._spawn(old.retire())
            cur = self.registry.canary if self.registry is not None else None
            already = cur is not None and (cur.version, float(cur.share)) == (version, float(share))
            if self.registry is not None and version is not None and not already:  # promote may have set it
                await asyncio.to_thread(self.registry.set_canary, version, float(share), reason=reason, actor=actor)
            log.info("canary %s at share %.2f (by %s: %s)", slot.label, share, actor, reason)
            return self.state()

    async def rollback(self, *, role: str | None = None, reason: str = "manual",
                       actor: str = "admin") -> dict[str, Any]:
        """Roll back by hand: the canary (default when one runs) or the live version.

        Raises:
            PolicySwapRefused: nothing to roll back.
        """
        self._check_swappable()
        role = role or ("canary" if self.canary is not None else "live")
        if role == "canary":
            slot = self.canary
            if slot is None:
                raise PolicySwapRefused("rollback: no canary is running", param="role")
            self._pending.add(slot.label)
            self.canary, self.canary_share = None, 0.0
            self._publish()
            self._alert(RollbackEvent("canary", slot.label, self.live.label if self.live else None, "manual",
                                      reason, actor))
            await self._finish_canary_rollback(slot, "manual", reason, actor)
        elif role == "live":
            if self.live is None:
                raise PolicySwapRefused("rollback: no live learned policy", param="role")
            if self.registry is None and not self._history:
                raise PolicySwapRefused(f"rollback: no previous version of {self.live.label} to return to",
                                        param="role")
            label = self.live.label
            self._pending.add(label)
            await self._rollback_live(label, "manual", reason, actor)
        else:
            raise PolicySwapRefused(f"role: expected 'live' or 'canary', got {role!r}", param="role")
        return self.state()

    def _check_swappable(self) -> None:
        if self.live is not None and self.live.source is None:
            raise PolicySwapRefused(
                f"the learned policy is the remote endpoint {self.live.inner.name}: hot swap, canary and rollback "
                "here need an in-process policy (learned.registry or learned.policy_dir); reconfigure the Ray "
                "Serve deployment instead")

    # --- reporting -------------------------------------------------------------------------
    def _publish(self) -> None:
        m = self._metrics
        m.policy_info.clear()
        if self.live is not None:
            m.policy_info.labels(role="live", version=self.live.name).set(1)
        if self.canary is not None:
            m.policy_info.labels(role="canary", version=self.canary.name).set(1)
        m.canary_share.set(self.canary_share)

    def state(self) -> dict[str, Any]:
        """The admin view: versions, canary share, evidence, rollbacks."""
        def ev(slot: PolicySlot | None) -> dict[str, Any] | None:
            return None if slot is None else self.evidence(slot.label).to_dict()

        return {
            "live_version": self.live.label if self.live else None,
            "live_policy_version": self.live.name if self.live else None,
            "canary_version": self.canary.label if self.canary else None,
            "canary_policy_version": self.canary.name if self.canary else None,
            "canary_share": self.canary_share,
            "previous_versions": [s.label for s in self._history],
            "rollback_count": len(self.rollbacks),
            "rollbacks": [r.to_dict() for r in self.rollbacks[-20:]],
            "canary_steps": self.steps[-20:],
            "live_evidence": ev(self.live),
            "canary_evidence": ev(self.canary),
            "feedback_without_version": self.feedback_without_version,
            "registry": str(getattr(self.registry, "root", "?")) if self.registry is not None else None,
            "pending": sorted(self._pending),
        }

    async def idle(self) -> None:
        """Wait for the background changes (registry writes, rollbacks, closes) under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish background changes and close every loaded client."""
        await self.idle()
        for slot in (self.live, self.canary):
            if slot is not None:
                await slot.close()

"""Joint operating targets: calibrate λ (cost) and ν (locality) together on validation data.

The mission is a trade-off written as one target::

    quality>=0.95,local>=0.8,budget<=0.002

read as: keep the quality at or above 95% of the reference model's (a one-sided lower bound with
the policy's safety margin, as :func:`~router_rl.policies.calibration.search_lambda` does), keep
the local share at or above 80% and the mean cost per request at or below the budget; among the
points meeting all of them, **maximise the local share, then minimise the cost**. Every part is
optional (``quality>=0.95`` alone means "as local as possible at 95% quality": the mission point);
``local>=0.8`` alone keeps the older reading of ``local=0.8`` (best quality under the local
share), so a joint target always states what it maximises:

* with a quality floor: the local share (then, among points within ``LOCAL_TOL`` of the best
  local share, the lowest cost);
* without one: the quality (then the lowest cost).

When no searched point meets every part, the result says so (``met`` False), returns the closest
reachable point (the smallest sum of the relative shortfalls) and names the parts it misses
(``unmet``). ``binding`` names the parts that hold with no slack at the chosen point (within
``BIND_TOL`` relative), i.e. what stops the point from going further.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.policies.calibration import LAMBDA_GRID, CalibrationResult, OperatingPoint

#: ν values searched by :func:`search_joint` (0 plus a log grid up to 1, where every allowed
#: request goes local: predicted qualities lie in [0, 1]).
NU_GRID: np.ndarray = np.concatenate([[0.0], np.logspace(-3, 0, 19)])
#: λ values searched by :func:`search_joint` (every second point of the single-target grid).
JOINT_LAMBDA_GRID: np.ndarray = LAMBDA_GRID[::2]
#: Local shares within this of the best feasible one count as equal (then the cheapest wins).
LOCAL_TOL = 0.005
#: A part "binds" when its slack is within this fraction of its threshold.
BIND_TOL = 0.01

_PART = re.compile(r"^\s*(quality|local|budget)\s*(>=|<=)\s*([^\s,]+)\s*$")
_OPS = {"quality": ">=", "local": ">=", "budget": "<="}


@dataclass(frozen=True)
class JointTarget:
    """A joint operating target (validated on construction).

    Attributes:
        quality: Floor on the fraction of the reference model's quality, in (0, 1], or None.
        local: Floor on the share of requests on local models, in (0, 1], or None.
        budget: Ceiling on the mean USD per request (> 0), or None.
    """

    quality: float | None = None
    local: float | None = None
    budget: float | None = None

    def __post_init__(self) -> None:
        if self.quality is None and self.local is None and self.budget is None:
            raise ConfigError("target", "a joint target needs at least one of quality>=, local>=, budget<=")
        for name in ("quality", "local"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and 0.0 < v <= 1.0):
                raise ConfigError("target", f"{name}>={v!r}: expected a fraction in (0, 1]")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget > 0):
            raise ConfigError("target", f"budget<={self.budget!r}: expected USD per request > 0")

    @property
    def kind(self) -> str:
        """``joint`` (what :class:`~router_rl.policies.calibration.Target` calls its kind)."""
        return "joint"

    @property
    def maximises(self) -> str:
        """What the search maximises among feasible points: ``local`` with a quality floor, else ``quality``."""
        return "local" if self.quality is not None else "quality"

    @classmethod
    def parse(cls, text: str) -> JointTarget:
        """Parse ``quality>=0.95,local>=0.8,budget<=0.002`` (any non-empty subset, any order).

        Raises:
            ConfigError: naming the part that is not ``KIND>=VALUE`` / ``budget<=VALUE``.
        """
        values: dict[str, float] = {}
        for part in text.split(","):
            m = _PART.match(part)
            if m is None:
                raise ConfigError(
                    "target", f"{part.strip()!r}: expected quality>=F, local>=F or budget<=USD, comma-separated"
                )
            kind, op, raw = m.groups()
            if op != _OPS[kind]:
                raise ConfigError("target", f"{part.strip()!r}: {kind} takes {_OPS[kind]}")
            if kind in values:
                raise ConfigError("target", f"{kind} given twice in {text!r}")
            try:
                values[kind] = float(raw)
            except ValueError:
                raise ConfigError("target", f"{part.strip()!r}: {raw!r} is not a number") from None
        return cls(**values)

    def __str__(self) -> str:
        parts = []
        if self.quality is not None:
            parts.append(f"quality>={self.quality:g}")
        if self.local is not None:
            parts.append(f"local>={self.local:g}")
        if self.budget is not None:
            parts.append(f"budget<={self.budget:g}")
        return ",".join(parts)


def is_joint_text(text: str) -> bool:
    """Whether a target text uses the joint syntax (``>=`` / ``<=``, commas)."""
    return ">=" in text or "<=" in text or "," in text


def search_joint(
    probs_at: Callable[[float, float], np.ndarray],
    quality: np.ndarray,
    cost: np.ndarray,
    target: JointTarget,
    *,
    reference: int,
    reference_model: str,
    is_local: np.ndarray,
    lam_grid: np.ndarray | None = None,
    nu_grid: np.ndarray | None = None,
    margin_z: float = 0.0,
    also_on: np.ndarray | None = None,
    refine_steps: int = 8,
) -> CalibrationResult:
    """Pick (λ, ν) on validation outcomes for a :class:`JointTarget` (see the module docstring).

    Args:
        probs_at: ``(λ, ν)`` -> ``(n, m)`` action distribution of the policy on the validation tasks.
        quality: ``(n, m)`` validation outcome quality.
        cost: ``(n, m)`` validation outcome cost.
        target: The joint target.
        reference: Column of the reference model.
        reference_model: Its id (reported).
        is_local: ``(m,)`` local mask.
        lam_grid: λ values (default :data:`JOINT_LAMBDA_GRID`).
        nu_grid: ν values (default :data:`NU_GRID`).
        margin_z: Safety margin of the quality floor in standard errors (as in ``search_lambda``).
        also_on: Optional ``(n,)`` row mask on which every part must hold too.
        refine_steps: Bisection steps on ν between each λ's last feasible grid value and the
            next one (0 = the grid only).

    Returns:
        The result: ``lam`` and ``nu`` chosen, ``met``, ``unmet`` / ``binding`` part names, the curve.
    """
    if not (math.isfinite(margin_z) and margin_z >= 0):
        raise ConfigError("margin_z", f"expected a number >= 0, got {margin_z!r}")
    is_local = np.asarray(is_local, dtype=bool)
    lams = JOINT_LAMBDA_GRID if lam_grid is None else np.asarray(lam_grid, dtype=np.float64)
    nus = NU_GRID if nu_grid is None else np.asarray(nu_grid, dtype=np.float64)
    n = quality.shape[0]
    if also_on is not None:
        also_on = np.asarray(also_on, dtype=bool)
        if also_on.shape != (n,) or not also_on.any():
            raise ValueError(f"search_joint: also_on must be a non-empty ({n},) boolean mask")
    ref_q = float(quality[:, reference].mean())
    ref_c = float(cost[:, reference].mean())
    masks = [np.ones(n, dtype=bool)] + ([also_on] if also_on is not None else [])

    def lower_ratio(q_row: np.ndarray, mask: np.ndarray) -> float:
        """One-sided lower bound of mean(q) / mean(q_ref) on ``mask`` (the search_lambda rule)."""
        t = target.quality if target.quality is not None else 1.0
        diff = q_row[mask] - t * quality[mask, reference]
        se = float(diff.std(ddof=1)) / math.sqrt(diff.size) if diff.size > 1 else 0.0
        lo = float(diff.mean()) - margin_z * se  # >= 0 iff the floor t holds (with the margin)
        ref = float(quality[mask, reference].mean())
        return t + lo / ref if ref > 0 else math.nan

    curve: list[OperatingPoint] = []
    shortfall: list[dict[str, float]] = []
    q_low: list[float] = []  # the quality floor's lower-bound ratio per point (all rows)

    def evaluate(lam: float, nu: float) -> bool:
        """Add the point (λ, ν) to the curve; whether it meets every part."""
        p = probs_at(lam, nu)
        q_row = (p * quality).sum(axis=1)
        c_row = (p * cost).sum(axis=1)
        l_row = p[:, is_local].sum(axis=1)
        short: dict[str, float] = {}
        q_low.append(lower_ratio(q_row, masks[0]) if target.quality is not None else math.nan)
        for mask in masks:
            if target.quality is not None:
                r = lower_ratio(q_row, mask)
                short["quality"] = max(short.get("quality", 0.0), max(0.0, (target.quality - r) / target.quality))
            if target.local is not None:
                loc = float(l_row[mask].mean())
                short["local"] = max(short.get("local", 0.0), max(0.0, (target.local - loc) / target.local))
            if target.budget is not None:
                c = float(c_row[mask].mean())
                short["budget"] = max(short.get("budget", 0.0), max(0.0, (c - target.budget) / target.budget))
        shortfall.append(short)
        curve.append(OperatingPoint(lam, float(q_row.mean()), float(c_row.mean()), float(l_row.mean()), nu=nu))
        return all(v <= 1e-12 for v in short.values())

    for lam in lams:
        ok = [evaluate(float(lam), float(nu)) for nu in nus]
        # ν past the last feasible grid value is where the local share grows but a part (the
        # quality floor) breaks: bisect that gap, so the answer does not hinge on the grid's step
        last = max((k for k, good in enumerate(ok) if good), default=None)
        if last is not None and last + 1 < len(nus) and refine_steps > 0:
            lo, hi = float(nus[last]), float(nus[last + 1])
            for _ in range(refine_steps):
                mid = 0.5 * (lo + hi)
                if evaluate(float(lam), mid):
                    lo = mid
                else:
                    hi = mid
    eps = 1e-12
    feasible = [i for i, s in enumerate(shortfall) if all(v <= eps for v in s.values())]
    if feasible:
        if target.maximises == "local":
            top = max(curve[i].local_share for i in feasible)
            near = [i for i in feasible if curve[i].local_share >= top - LOCAL_TOL]
            best = min(near, key=lambda i: (curve[i].cost, -curve[i].local_share, -curve[i].quality, i))
        else:
            best = max(feasible, key=lambda i: (curve[i].quality, -curve[i].cost, i))
        unmet: list[str] = []
    else:
        best = min(range(len(curve)), key=lambda i: (sum(shortfall[i].values()), curve[i].cost, i))
        unmet = sorted(k for k, v in shortfall[best].items() if v > eps)
    chosen = curve[best]
    return CalibrationResult(
        target=str(target),
        lam=chosen.lam,
        met=not unmet,
        point=chosen,
        reference_model=reference_model,
        reference_quality=ref_q,
        reference_cost=ref_c,
        curve=curve,
        nu=chosen.nu,
        unmet=unmet,
        binding=unmet if unmet else _binding(target, chosen, q_low[best]),
    )


def _binding(target: JointTarget, pt: OperatingPoint, q_low: float) -> list[str]:
    """Parts holding with (relative) slack under :data:`BIND_TOL` at ``pt`` (quality: its lower bound)."""
    out = []
    if target.quality is not None and q_low - target.quality <= BIND_TOL * target.quality:
        out.append("quality")
    if target.local is not None and pt.local_share - target.local <= BIND_TOL * target.local:
        out.append("local")
    if target.budget is not None and target.budget - pt.cost <= BIND_TOL * target.budget:
        out.append("budget")
    return out

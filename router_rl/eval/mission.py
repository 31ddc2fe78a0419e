"""The mission's operating point: as much traffic on local models as possible at a quality floor.

Two numbers per policy, both on the held-out split:

* **deployed**: the policy calibrated on validation to the joint target
  (``quality>=floor``: λ and the locality term ν together, see
  :mod:`router_rl.policies.joint_target`), then measured on test as it would be deployed;
* **frontier**: the best local share any (λ, ν) of the policy reaches on test at test quality >=
  the floor, i.e. what the policy's predictions allow with a perfectly tuned operating point. It
  separates the quality of a router's predictions from the noise of a small validation split.

Policies without the shared utility rule (no ``decision``) have one point: their own.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.policies.joint_target import JOINT_LAMBDA_GRID, JointTarget

if TYPE_CHECKING:
    from router_rl.policies.base import RoutingPolicy
    from router_rl.traces.matrix import OutcomeMatrix

#: ν values of the test frontier (finer than the calibration grid: it is searched exhaustively).
FRONTIER_NU: np.ndarray = np.linspace(0.0, 0.6, 61)


@dataclass(frozen=True)
class MissionPoint:
    """One policy at the mission's operating point.

    Attributes:
        policy: Policy name.
        deployed_quality_ratio: Test quality / reference test quality, as calibrated on validation.
        deployed_local_share: Test local share, as calibrated.
        deployed_cost_share: Test cost / reference test cost, as calibrated.
        deployed_met: Whether the calibrated point meets the floor on test.
        lam: Calibrated λ (None without the utility rule).
        nu: Calibrated ν (None without the utility rule).
        frontier_local_share: Best test local share at test quality >= floor over (λ, ν) (None:
            no point reaches the floor).
    """

    policy: str
    deployed_quality_ratio: float
    deployed_local_share: float
    deployed_cost_share: float
    deployed_met: bool
    lam: float | None
    nu: float | None
    frontier_local_share: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _metrics(probs: np.ndarray, test: OutcomeMatrix, ref: int, local: np.ndarray) -> tuple[float, float, float]:
    q = float((probs * test.quality).sum(axis=1).mean()) / float(test.quality[:, ref].mean())
    c = float((probs * test.cost).sum(axis=1).mean()) / float(test.cost[:, ref].mean())
    return q, c, float(probs[:, local].sum(axis=1).mean())


def mission_point(
    name: str,
    policy: RoutingPolicy,
    X_val: np.ndarray,
    val: OutcomeMatrix,
    X_test: np.ndarray,
    test: OutcomeMatrix,
    *,
    reference: str,
    floor: float = 0.95,
    margin_z: float | None = None,
) -> MissionPoint:
    """Calibrate a copy of a fitted ``policy`` to ``quality>=floor`` on validation and measure it on test.

    Args:
        name: What to call it.
        policy: A fitted policy (not modified).
        X_val: Encoded validation features.
        val: Validation outcome matrix.
        X_test: Encoded test features.
        test: Test outcome matrix.
        reference: The reference model (quality and cost ratios are to it).
        floor: The quality floor (fraction of the reference quality).
        margin_z: Calibration safety margin (default: the policy's own).
    """
    local = test.is_local()
    if local is None:
        raise ValueError("mission_point: the outcome matrix needs a catalog with model locations")
    ref = test.model_index(reference)
    if not hasattr(policy, "calibrate") or getattr(policy, "decision", None) is None:
        q, c, loc = _metrics(policy.action_distribution(X_test), test, ref, local)
        return MissionPoint(name, q, loc, c, q >= floor, None, None, loc if q >= floor else None)
    pol = copy.deepcopy(policy)
    res = pol.calibrate(X_val, val, JointTarget(quality=floor), margin_z=margin_z)
    q, c, loc = _metrics(pol.action_distribution(X_test), test, ref, local)
    best: float | None = None
    Xc = pol._check_X(X_test, "mission_point")  # type: ignore[attr-defined]
    qhat = np.clip(pol._predict_quality(Xc), 0.0, 1.0)  # type: ignore[attr-defined]
    cl = pol._cost_latency(Xc)  # type: ignore[attr-defined]
    for lam in JOINT_LAMBDA_GRID[::3]:
        for nu in FRONTIER_NU:
            p = pol._decide_from(Xc, qhat, pol.decision.with_(lam=float(lam), nu=float(nu)),  # type: ignore[attr-defined]
                                 cost_latency=cl).probs
            fq, _, fl = _metrics(p, test, ref, local)
            if fq >= floor and (best is None or fl > best):
                best = fl
    return MissionPoint(name, q, loc, c, q >= floor, res.lam, res.nu, best)


def oracle_cost_share(
    matrix: OutcomeMatrix,
    expected_quality: np.ndarray,
    *,
    reference: str,
    floor: float = 0.95,
    min_local: float = 0.8,
    lambdas: np.ndarray | None = None,
    nus: np.ndarray | None = None,
) -> float:
    """Lowest cost share a per-task router that knows each call's expected quality reaches.

    The router picks ``argmax_j q_ij − λ·c_ij/c̄_ref + ν·local_j`` over a (λ, ν) grid; the answer
    is the smallest ``mean cost / mean reference cost`` among grid points whose expected quality
    is >= ``floor`` of the reference's and whose local share is >= ``min_local``. It bounds what
    any router with this decision rule can reach on ``matrix``: ``inf`` when no point qualifies.

    Args:
        matrix: Outcomes (its ``cost`` is used as the per-call cost).
        expected_quality: ``(n_tasks, n_models)`` expected quality (e.g. a simulator's ground truth).
        reference: The reference model (quality and cost denominators).
        floor: Quality floor as a share of the reference's.
        min_local: Local-share floor.
        lambdas: Cost-weight grid (default 0..2 in 21 steps).
        nus: Locality-term grid (default 0..0.4 in 21 steps).
    """
    q = np.asarray(expected_quality, dtype=np.float64)
    if q.shape != matrix.cost.shape:
        raise ValueError(f"oracle_cost_share: expected_quality shape {q.shape} != matrix {matrix.cost.shape}")
    loc, ref = matrix.is_local(), matrix.model_index(reference)
    q_ref, c_ref = q[:, ref].mean(), matrix.cost[:, ref].mean()
    rows = np.arange(q.shape[0])
    best = np.inf
    for lam in np.linspace(0.0, 2.0, 21) if lambdas is None else lambdas:
        for nu in np.linspace(0.0, 0.4, 21) if nus is None else nus:
            ch = (q - lam * matrix.cost / c_ref + nu * loc[None, :]).argmax(1)
            if q[rows, ch].mean() >= floor * q_ref and loc[ch].mean() >= min_local:
                best = min(best, float(matrix.cost[rows, ch].mean() / c_ref))
    return best

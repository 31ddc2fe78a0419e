"""Automatic rollback of a learned policy version: its settings (``learned.rollback``) and its rule.

A version (the live one, or the canary) is rolled back when, over its sliding windows
(:mod:`router_rl.router.windows`):

* **quality**: its feedback window holds at least ``min_feedback`` labels and the *upper* bound
  of the window's 95% Wilson interval is below the floor (an interval, never one bad answer);
  the floor is the larger of ``floor`` (absolute) and ``floor_ratio`` times the reference (the
  canary: the live version's window mean; the live version: the mean its predecessor's window
  had when it was replaced, when that window held ``min_feedback`` labels);
* **errors**: its decision window holds at least ``min_decisions`` decisions and the share of bad
  ones (the request failed, the policy failed and the rule policy answered, or another model than
  the chosen one served) exceeds ``max_error_ratio``.

With all-zero labels the quality rule fires at the first ``n >= min_feedback`` with
``z^2 / (n + z^2) < floor`` (z = 1.96): :func:`labels_to_rollback` states that number.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from router_rl.router.windows import Z95, OutcomeWindow, WindowStats


class RollbackConfig(BaseModel):
    """Automatic rollback (``learned.rollback`` in ``router.yaml``).

    Attributes:
        enabled: Roll back automatically (``POST /admin/rollback`` works either way).
        window: Labels kept in each version's quality window.
        min_feedback: Labels a window needs before the quality rule may fire.
        floor: Absolute quality floor (``None``: not used).
        floor_ratio: Floor as a ratio of the reference quality (``None``: not used).
        decision_window: Decisions kept in each version's outcome window.
        min_decisions: Decisions the outcome window needs before the error rule may fire.
        max_error_ratio: Largest tolerated share of bad decisions (errors, policy failures, fallbacks).
        track_requests: Most recent learned decisions whose version is remembered for feedback
            (older request ids are counted as ``untracked`` in ``GET /admin/state``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    window: int = Field(default=200, ge=1)
    min_feedback: int = Field(default=30, ge=1)
    floor: float | None = Field(default=None, ge=0, le=1)
    floor_ratio: float | None = Field(default=0.95, gt=0, le=1)
    decision_window: int = Field(default=200, ge=1)
    min_decisions: int = Field(default=50, ge=1)
    max_error_ratio: float = Field(default=0.5, gt=0, le=1)
    track_requests: int = Field(default=100_000, ge=1)


def quality_floor(cfg: RollbackConfig, reference: float | None) -> float | None:
    """The floor of a version whose reference quality is ``reference`` (``None``: no floor applies)."""
    floors: list[float] = []
    if cfg.floor is not None:
        floors.append(cfg.floor)
    if cfg.floor_ratio is not None and reference is not None:
        floors.append(cfg.floor_ratio * reference)
    return max(floors) if floors else None


def rollback_verdict(
    cfg: RollbackConfig, quality: WindowStats, outcomes: OutcomeWindow, reference: float | None
) -> tuple[str, str] | None:
    """``(reason, detail)`` when the version must be rolled back, else ``None``.

    ``reason`` is ``quality`` or ``errors`` (the label of ``router_rl_policy_rollbacks_total``).
    """
    floor = quality_floor(cfg, reference)
    if floor is not None and quality.n >= cfg.min_feedback and quality.high < floor:
        return "quality", (f"feedback quality upper bound {quality.high:.4f} < floor {floor:.4f} "
                           f"(n={quality.n}, mean={quality.mean:.4f}, 95% Wilson)")
    if len(outcomes) >= cfg.min_decisions and outcomes.ratio > cfg.max_error_ratio:
        return "errors", (f"{outcomes.bad}/{len(outcomes)} bad decisions (errors, policy failures, fallbacks) "
                          f"> max_error_ratio {cfg.max_error_ratio}")
    return None


def labels_to_rollback(cfg: RollbackConfig, floor: float) -> int:
    """Labels of quality 0 after which the quality rule fires for a version with floor ``floor`` (> 0)."""
    if floor <= 0:
        raise ValueError(f"floor: expected > 0, got {floor}")
    z2 = Z95 * Z95
    n = max(1, math.floor(z2 * (1 - floor) / floor) + 1)  # z2 / (n + z2) < floor
    return max(cfg.min_feedback, n)

"""The canary of a learned policy: its traffic split, its ramp rule and their settings (``learned.canary``).

A canary version answers a share of the LEARNED strategy's decisions; which ones is a seeded hash
of the request id (:func:`in_canary`), so a request's assignment is deterministic and the share is
exact in expectation. The share is ramped through ``steps`` on live feedback
(:func:`ramp_verdict`): at each step the canary must collect ``min_feedback`` new labels and the
lower bound of its window's 95% interval (:mod:`router_rl.router.windows`) must clear the floor.
The floor is the larger of ``floor`` (absolute quality) and ``floor_ratio`` times the live
version's window mean (the fleet plan's 95%); the ratio needs the live window to hold
``min_feedback`` labels too, else the ramp waits.
"""

from __future__ import annotations

import itertools

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from router_rl.router.draws import uniform
from router_rl.router.windows import WindowStats


class CanaryConfig(BaseModel):
    """The canary ramp (``learned.canary`` in ``router.yaml``).

    Attributes:
        steps: Shares the canary is ramped through, increasing, ending at 1.0 (then the canary
            becomes live). ``POST /admin/canary`` may start at any share; the ramp moves to the
            next step above the current share.
        auto_ramp: Ramp on feedback; ``False`` leaves the share to ``POST /admin/canary``.
        min_feedback: New feedback labels the canary needs at a step before the next one (and
            labels the live window needs for ``floor_ratio``).
        window: Labels kept in each version's quality window.
        floor: Absolute quality floor of the canary's lower bound (``None``: not used).
        floor_ratio: Floor as a ratio of the live version's window mean (``None``: not used).
        seed: Salt of the request-id hash of the split.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[float, ...] = (0.2, 0.5, 0.8, 1.0)
    auto_ramp: bool = True
    min_feedback: int = Field(default=50, ge=1)
    window: int = Field(default=200, ge=1)
    floor: float | None = Field(default=None, ge=0, le=1)
    floor_ratio: float | None = Field(default=0.95, gt=0, le=1)
    seed: int = 0

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("expected at least one step")
        if any(not 0 < s <= 1 for s in v):
            raise ValueError(f"every step is a share in (0, 1], got {list(v)}")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"steps must increase, got {list(v)}")
        if v[-1] != 1.0:
            raise ValueError(f"the last step must be 1.0 (the canary becomes live), got {v[-1]}")
        return v

    @model_validator(mode="after")
    def _floor(self) -> CanaryConfig:
        if self.auto_ramp and self.floor is None and self.floor_ratio is None:
            raise ValueError("auto_ramp needs floor or floor_ratio")
        return self

    def next_step(self, share: float) -> float:
        """The first step above ``share`` (1.0 at the top)."""
        return next((s for s in self.steps if s > share + 1e-12), 1.0)


def in_canary(seed: int, request_id: str, share: float) -> bool:
    """Whether request ``request_id`` is decided by the canary at ``share`` (deterministic, seeded)."""
    return share > 0 and uniform(seed, "canary", request_id) <= share


def ramp_floor(cfg: CanaryConfig, live: WindowStats) -> float | None:
    """The floor the canary's lower bound must clear (``None``: not known yet, the ramp waits)."""
    floors: list[float] = []
    if cfg.floor is not None:
        floors.append(cfg.floor)
    if cfg.floor_ratio is not None:
        if live.n < cfg.min_feedback or live.mean is None:
            return None
        floors.append(cfg.floor_ratio * live.mean)
    return max(floors) if floors else None


def ramp_verdict(cfg: CanaryConfig, canary: WindowStats, labels_at_step: int, live: WindowStats) -> tuple[bool, str]:
    """``(step, why)``: whether the canary moves to its next share, and the numbers that decided.

    Args:
        cfg: The ramp settings.
        canary: The canary's window.
        labels_at_step: Labels the canary received since its current share began.
        live: The live version's window (reference of ``floor_ratio``).
    """
    if labels_at_step < cfg.min_feedback:
        return False, f"waiting for feedback: {labels_at_step}/{cfg.min_feedback} labels at this step"
    floor = ramp_floor(cfg, live)
    if floor is None:
        return False, f"waiting for live feedback: {live.n}/{cfg.min_feedback} labels (floor_ratio)"
    if canary.low < floor:
        return False, f"lower bound {canary.low:.4f} below floor {floor:.4f} (n={canary.n}, mean={canary.mean:.4f})"
    return True, f"lower bound {canary.low:.4f} >= floor {floor:.4f} (n={canary.n}, mean={canary.mean:.4f})"

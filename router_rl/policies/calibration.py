"""Operating targets and the calibration of λ on validation data, plus probability calibration.

A target is written ``quality=0.95`` (reach 95% of the reference model's validation quality at
the lowest cost), ``budget=0.002`` (mean USD per request at most 0.002, best quality under it) or
``local=0.8`` (at least 80% of requests on local models, best quality under it). Joint targets
(``quality>=0.95,local>=0.8[,budget<=X]``, λ and the locality term ν calibrated together) live in
:mod:`router_rl.policies.joint_target`; :func:`parse_target` reads either syntax.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from router_rl.core.errors import ConfigError

TargetKind = Literal["quality", "budget", "local"]
TARGET_KINDS: tuple[str, ...] = ("quality", "budget", "local")

#: λ values searched by :func:`search_lambda` (0 plus a log grid).
LAMBDA_GRID: np.ndarray = np.concatenate([[0.0], np.logspace(-3, 3, 241)])


@dataclass(frozen=True)
class Target:
    """An operating target for λ calibration (validated on construction).

    Attributes:
        kind: ``quality`` (fraction of the reference quality), ``budget`` (USD per request) or
            ``local`` (minimum share of requests on local models).
        value: The number after ``=``.
    """

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ConfigError("target", f"kind must be one of {TARGET_KINDS}, got {self.kind!r}")
        if not (isinstance(self.value, int | float) and math.isfinite(self.value)):
            raise ConfigError("target", f"{self.kind}: expected a finite number, got {self.value!r}")
        if self.kind in ("quality", "local") and not (0.0 < self.value <= 1.0):
            raise ConfigError("target", f"{self.kind}={self.value}: expected a fraction in (0, 1]")
        if self.kind == "budget" and self.value <= 0:
            raise ConfigError("target", f"budget={self.value}: expected USD per request > 0")

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``kind=value`` (e.g. ``quality=0.95``)."""
        kind, sep, val = text.partition("=")
        if not sep:
            raise ConfigError("target", f"expected KIND=VALUE with KIND in {TARGET_KINDS}, got {text!r}")
        try:
            value = float(val)
        except ValueError:
            raise ConfigError("target", f"{text!r}: {val!r} is not a number") from None
        return cls(kind.strip(), value)

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


def parse_target(text: str) -> Any:
    """A :class:`Target` (``kind=value``) or a :class:`~router_rl.policies.joint_target.JointTarget`
    (``quality>=0.95,local>=0.8``), by syntax.

    Raises:
        ConfigError: the text is neither.
    """
    from router_rl.policies.joint_target import JointTarget, is_joint_text

    return JointTarget.parse(text) if is_joint_text(text) else Target.parse(text)


@dataclass
class OperatingPoint:
    """Validation metrics of the policy at one λ (and ν, the locality term: 0 unless jointly calibrated)."""

    lam: float
    quality: float
    cost: float
    local_share: float
    nu: float = 0.0


@dataclass
class CalibrationResult:
    """Outcome of :func:`search_lambda`.

    Attributes:
        target: The target as text.
        lam: Chosen λ.
        met: Whether the chosen point meets the target on the validation data.
        point: Validation metrics at the chosen λ.
        reference_model: The reference (best single on training data) model.
        reference_quality: Its mean validation quality.
        reference_cost: Its mean validation cost per request.
        curve: All searched operating points.
        nu: Chosen ν (the locality term; joint targets only, else 0).
        unmet: Parts of a joint target the chosen point misses (empty when met).
        binding: Parts of a joint target holding with no slack at the chosen point (what stops it).
    """

    target: str
    lam: float
    met: bool
    point: OperatingPoint
    reference_model: str
    reference_quality: float
    reference_cost: float
    curve: list[OperatingPoint] = field(default_factory=list)
    nu: float = 0.0
    unmet: list[str] = field(default_factory=list)
    binding: list[str] = field(default_factory=list)

    @property
    def cost_share(self) -> float:
        """Validation cost as a fraction of the reference model's cost."""
        return self.point.cost / self.reference_cost if self.reference_cost > 0 else math.nan

    @property
    def quality_share(self) -> float:
        """Validation quality as a fraction of the reference model's quality."""
        return self.point.quality / self.reference_quality if self.reference_quality > 0 else math.nan

    def to_dict(self, *, with_curve: bool = False) -> dict[str, Any]:
        """JSON-ready summary."""
        d = {
            "target": self.target,
            "lam": self.lam,
            "met": self.met,
            "point": asdict(self.point),
            "reference_model": self.reference_model,
            "reference_quality": self.reference_quality,
            "reference_cost": self.reference_cost,
            "cost_share": self.cost_share,
            "quality_share": self.quality_share,
            "nu": self.nu,
            "unmet": list(self.unmet),
            "binding": list(self.binding),
        }
        if with_curve:
            d["curve"] = [asdict(p) for p in self.curve]
        return d


def search_lambda(
    probs_at: Callable[[float], np.ndarray],
    quality: np.ndarray,
    cost: np.ndarray,
    target: Target,
    *,
    reference: int,
    reference_model: str,
    is_local: np.ndarray | None = None,
    grid: np.ndarray | None = None,
    margin_z: float = 0.0,
    also_on: np.ndarray | None = None,
) -> CalibrationResult:
    """Pick λ on validation outcomes so that the policy meets ``target``.

    Args:
        probs_at: λ -> ``(n, m)`` action distribution of the policy on the validation tasks.
        quality: ``(n, m)`` validation outcome quality.
        cost: ``(n, m)`` validation outcome cost.
        target: What to hit.
        reference: Column of the reference model.
        reference_model: Its id (reported).
        is_local: ``(m,)`` local mask (required for ``local`` targets; reported otherwise).
        grid: λ values to try (default :data:`LAMBDA_GRID`).
        margin_z: Safety margin of quality targets, in standard errors: a λ qualifies when the
            one-sided lower bound ``mean(q_i − t·q_ref,i) − margin_z · sd/√n`` is >= 0 (0 = the
            plain point estimate). The margin shrinks as the calibration set grows.
        also_on: Optional ``(n,)`` boolean row mask: a quality target must also hold (same
            rule; budget and local targets too) on these rows alone — e.g. the validation tasks
            when they are pooled with out-of-fold training predictions. The reported point is
            on all rows.

    Returns:
        The result. Quality targets take the cheapest point meeting the target; budget and local
        targets the best-quality point meeting it. When nothing meets it, ``met`` is False and
        the closest point is returned (largest λ for budget/local, λ = 0 for quality).
    """
    if target.kind == "local" and is_local is None:
        raise ConfigError("target", "local=...: needs a model catalog with locations")
    if not (math.isfinite(margin_z) and margin_z >= 0):
        raise ConfigError("margin_z", f"expected a number >= 0, got {margin_z!r}")
    grid = LAMBDA_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    ref_q = float(quality[:, reference].mean())
    ref_c = float(cost[:, reference].mean())
    n = quality.shape[0]
    curve: list[OperatingPoint] = []
    lower: list[float] = []  # lower bound of mean(q_i - t * q_ref_i) per λ (quality targets)
    sub_oks: list[bool] = []  # budget / local targets also met on the ``also_on`` rows
    if also_on is not None:
        also_on = np.asarray(also_on, dtype=bool)
        if also_on.shape != (n,) or not also_on.any():
            raise ValueError(f"search_lambda: also_on must be a non-empty ({n},) boolean mask")

    def bound(diff: np.ndarray) -> float:
        se = float(diff.std(ddof=1)) / math.sqrt(diff.size) if diff.size > 1 else 0.0
        return float(diff.mean()) - margin_z * se

    for lam in grid:
        p = probs_at(float(lam))
        q_row = (p * quality).sum(axis=1)
        if target.kind == "quality":
            diff = q_row - target.value * quality[:, reference]
            lo = bound(diff)
            if also_on is not None:
                lo = min(lo, bound(diff[also_on]))
            lower.append(lo)
        q = float(q_row.mean())
        sub_ok = True
        if also_on is not None and target.kind == "budget":
            sub_ok = float((p[also_on] * cost[also_on]).sum(axis=1).mean()) <= target.value + 1e-12
        elif also_on is not None and target.kind == "local" and is_local is not None:
            sub_ok = float(p[also_on][:, is_local].sum(axis=1).mean()) >= target.value - 1e-12
        sub_oks.append(sub_ok)
        c = float((p * cost).sum(axis=1).mean())
        loc = float(p[:, is_local].sum(axis=1).mean()) if is_local is not None else math.nan
        curve.append(OperatingPoint(float(lam), q, c, loc))
    eps = 1e-12
    if target.kind == "quality":
        ok = [pt for pt, lo in zip(curve, lower, strict=True) if lo >= -eps]
        best = min(ok, key=lambda pt: (pt.cost, -pt.quality, pt.lam)) if ok else None
        fallback = curve[0]
    elif target.kind == "budget":
        ok = [pt for pt, so in zip(curve, sub_oks, strict=True) if so and pt.cost <= target.value + eps]
        best = max(ok, key=lambda pt: (pt.quality, -pt.cost, -pt.lam)) if ok else None
        fallback = curve[-1]
    else:
        ok = [pt for pt, so in zip(curve, sub_oks, strict=True) if so and pt.local_share >= target.value - eps]
        best = max(ok, key=lambda pt: (pt.quality, -pt.cost, -pt.lam)) if ok else None
        fallback = curve[-1]
    chosen = best if best is not None else fallback
    return CalibrationResult(
        target=str(target),
        lam=chosen.lam,
        met=best is not None,
        point=chosen,
        reference_model=reference_model,
        reference_quality=ref_q,
        reference_cost=ref_c,
        curve=curve,
    )


# --- probability calibration -------------------------------------------------------------------
def expected_calibration_error(prob: np.ndarray, label: np.ndarray, *, n_bins: int = 10) -> float:
    """ECE with equal-width bins: Σ_b (|b|/n) · |mean(label_b) − mean(prob_b)|.

    Labels may be fractional (expected quality); the definition is unchanged.
    """
    prob = np.asarray(prob, dtype=np.float64).ravel()
    label = np.asarray(label, dtype=np.float64).ravel()
    if prob.size == 0:
        return math.nan
    bins = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)
    tot = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            tot += sel.sum() / prob.size * abs(label[sel].mean() - prob[sel].mean())
    return float(tot)


def crossfit_calibrated_ece(method: str, raw: np.ndarray, label: np.ndarray, *, folds: int = 5, seed: int = 0) -> float:
    """ECE of ``method``-calibrated probabilities, the calibrator fitted on the other folds (rows of ``raw``).

    Fitting a calibrator and scoring it on the same predictions reports ~0 for isotonic
    regression whatever the model; this is the out-of-fold figure.
    """
    raw = np.asarray(raw, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    n = raw.shape[0]
    if n < 2 * folds:
        return float("nan")
    fold = np.random.default_rng(seed).permutation(n) % folds
    out = np.empty_like(raw)
    for k in range(folds):
        te = fold == k
        cal = ProbabilityCalibrator.fit(method, raw[~te].ravel(), label[~te].ravel())
        out[te] = cal(raw[te])
    return expected_calibration_error(out, label)


@dataclass
class ProbabilityCalibrator:
    """Isotonic (piecewise-linear via ``np.interp``) or Platt mapping of raw scores to probabilities.

    Attributes:
        method: ``isotonic``, ``platt`` or ``none``.
        x: Isotonic knots (raw probability) — or ``[a, b]`` Platt coefficients on the logit.
        y: Isotonic values at the knots (unused for Platt).
    """

    method: str = "none"
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.method not in ("isotonic", "platt", "none"):
            raise ConfigError("calibration", f"expected 'isotonic', 'platt' or 'none', got {self.method!r}")
        self._x = np.asarray(self.x, dtype=np.float64)
        self._y = np.asarray(self.y, dtype=np.float64)
        self._lut: tuple[np.ndarray, np.ndarray] | None = None  # built on the first large isotonic call

    @classmethod
    def fit(cls, method: str, raw: np.ndarray, label: np.ndarray) -> ProbabilityCalibrator:
        """Fit ``method`` on held-out raw probabilities and labels in [0, 1]."""
        raw = np.asarray(raw, dtype=np.float64).ravel()
        label = np.asarray(label, dtype=np.float64).ravel()
        if method == "none":
            return cls("none")
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, label)
            return cls("isotonic", iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist())
        if method == "platt":
            from sklearn.linear_model import LogisticRegression

            z = _logit(raw).reshape(-1, 1)
            # fractional labels: weight each row as a positive (w=label) and a negative (w=1-label)
            zz = np.vstack([z, z])
            yy = np.r_[np.ones(raw.size), np.zeros(raw.size)]
            ww = np.r_[label, 1.0 - label]
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(zz, yy, sample_weight=ww)
            a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
            return cls("platt", [float(a), float(b)], [])
        raise ConfigError("calibration", f"expected 'isotonic', 'platt' or 'none', got {method!r}")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Map raw probabilities to calibrated ones (same shape)."""
        if self.method == "isotonic":
            raw = np.asarray(raw, dtype=np.float64)
            if raw.size < _LUT_MIN_VALUES or self._x.size < 2 or not np.isfinite(raw).all():
                return np.interp(raw, self._x, self._y)
            return self._interp_lut(raw)
        if self.method == "platt":
            a, b = self._x
            return 1.0 / (1.0 + np.exp(-(a * _logit(raw) + b)))
        return raw

    def _interp_lut(self, raw: np.ndarray) -> np.ndarray:
        """``np.interp(raw, x, y)`` for large batches, faster (same formula, same values; ``bench/bench_policy.py``).

        A uniform grid of :data:`_LUT_CELLS` cells over [0, 1] stores the knot segment at each
        cell's left edge; a value starts there and steps right past any knot inside its cell
        (rarely more than one step) instead of a binary search per value.
        """
        x, y = self._x, self._y
        if self._lut is None:
            grid = np.arange(_LUT_CELLS, dtype=np.float64) / _LUT_CELLS
            seg = (np.searchsorted(x, grid, side="right") - 1).clip(0, x.size - 2).astype(np.intp)
            dx = np.diff(x)
            self._lut = (seg, np.diff(y) / np.where(dx > 0, dx, 1.0))
        seg, slope = self._lut
        flat = raw.ravel()
        idx = seg[np.clip(flat * _LUT_CELLS, 0, _LUT_CELLS - 1).astype(np.intp)]
        x_next = np.append(x[1:], np.inf)
        last = x.size - 2
        while True:
            step = (flat >= x_next[idx]) & (idx < last)
            if not step.any():
                break
            idx += step
        out = y[idx] + slope[idx] * (flat - x[idx])
        out = np.where(flat <= x[0], y[0], np.where(flat >= x[-1], y[-1], out))
        return out.reshape(raw.shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}


#: Isotonic maps of at least this many values use the lookup-table path of :class:`ProbabilityCalibrator`.
_LUT_MIN_VALUES = 4096
#: Cells of that lookup table over [0, 1].
_LUT_CELLS = 1 << 14


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))

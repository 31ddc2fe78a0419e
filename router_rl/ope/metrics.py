"""Routing metrics on plain arrays: per-request summaries, cost-quality frontiers, AIQ/APGR/CPT.

(Over 500 lines on purpose: one concept, routing metrics on arrays; the frontier metrics AIQ / APGR /
CPT / cost at quality share the hull helpers with the per-request summaries.)

Definitions (also in docs/evaluation.md):

* **quality ratio** = mean quality / mean quality of the *reference model* (the best single model
  on the training split) on the same rows; **cost share** = mean cost / reference mean cost;
  **cost saving** = 1 - cost share.
* **Frontier**: the (mean cost, mean quality) points of one policy swept over its cost-quality
  trade-off λ. Its *non-decreasing concave hull* is the upper convex hull of the points
  (any two operating points can be mixed at random, so every point on a chord is reachable),
  kept up to its highest point and flat afterwards.
* **AIQ** (RouterBench, Hu et al. 2024, ``evaluation/AIQ.py``): area under the hull over the
  cost interval ``[cost_min, cost_max]`` divided by its width. As in RouterBench the hull is
  extended flat to ``cost_max`` (the largest cost of all compared curves, so that AIQs are
  comparable), contributes 0 left of its cheapest point, and ``cost_min`` defaults to 0 (their
  code divides the area by ``max_x``).
* **APGR** (RouteLLM, Ong et al. 2024, ``routellm/evals/evaluate.py``): with ``x`` the cost axis
  (share of strong-model calls, or cost share vs the reference), APGR =
  ``(AUC - weak * width) / ((strong - weak) * width)`` with AUC the trapezoidal area under the
  points sorted by ``x`` over their own range — the average performance gap recovered.
* **CPT(p)**: the smallest ``x`` at which the (linearly interpolated) curve first reaches
  ``weak + p * (strong - weak)``; ``None`` when it never does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from router_rl.core.seeding import SeedLike
from router_rl.ope.bootstrap import bootstrap_column_sums, percentile_interval
from router_rl.ope.validation import OPEInputError, as_bool_vector, as_float_vector, check_alpha


# --- per-request summaries ---------------------------------------------------------------------
@dataclass(frozen=True)
class RoutingMetrics:
    """Summary of one policy's routed requests (field names are stable JSON keys).

    Attributes:
        n: Number of requests.
        mean_quality: Mean quality of the served answers.
        mean_cost: Mean USD per request (all calls made).
        latency_p50: Median latency in seconds over requests with a known latency (None: none known).
        latency_p95: 95th percentile latency.
        latency_p99: 99th percentile latency.
        latency_known_share: Share of requests whose latency is known.
        local_share: Share of requests served by a local model (None: locality unknown).
        cloud_share: ``1 - local_share`` (None: unknown).
        error_share: Share of requests whose served call failed.
        fallback_share: Share of requests answered by a fallback / escalation (more than one call).
        mean_calls: Mean number of model calls per request.
        reference_quality: Mean quality of the reference model on the same requests (None: not given).
        reference_cost: Mean cost of the reference model on the same requests.
        quality_ratio: ``mean_quality / reference_quality``.
        cost_share: ``mean_cost / reference_cost``.
        cost_saving: ``1 - cost_share``.
        oracle_quality: Mean quality of the per-request oracle (None: not given).
        oracle_gap: ``oracle_quality - mean_quality``.
    """

    n: int
    mean_quality: float
    mean_cost: float
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_known_share: float
    local_share: float | None
    cloud_share: float | None
    error_share: float
    fallback_share: float
    mean_calls: float
    reference_quality: float | None = None
    reference_cost: float | None = None
    quality_ratio: float | None = None
    cost_share: float | None = None
    cost_saving: float | None = None
    oracle_quality: float | None = None
    oracle_gap: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _safe_ratio(a: float, b: float | None) -> float | None:
    if b is None or b == 0:
        return None
    return float(a / b)


def _opt_mean(x: object, name: str, n: int) -> float | None:
    return None if x is None else float(as_float_vector(x, name, n=n).mean())


def routing_metrics(
    quality: object,
    cost: object,
    *,
    latency: object = None,
    local: object = None,
    error: object = None,
    n_calls: object = None,
    fallback: object = None,
    reference_quality: object = None,
    reference_cost: object = None,
    oracle_quality: object = None,
) -> RoutingMetrics:
    """Summarise routed requests.

    Args:
        quality: ``(n,)`` quality of each served answer.
        cost: ``(n,)`` USD spent per request.
        latency: ``(n,)`` seconds, NaN where unknown (None: all unknown).
        local: ``(n,)`` bool, served by a local model (None: unknown).
        error: ``(n,)`` bool, the served call failed (None: no errors).
        n_calls: ``(n,)`` number of model calls per request (None: 1 each).
        fallback: ``(n,)`` bool, a fallback answered (None: ``n_calls > 1``).
        reference_quality: ``(n,)`` quality of the reference model on the same requests.
        reference_cost: ``(n,)`` cost of the reference model on the same requests.
        oracle_quality: ``(n,)`` best achievable quality per request.
    """
    q = as_float_vector(quality, "quality")
    n = q.shape[0]
    if n == 0:
        raise OPEInputError("quality", "expected at least one request")
    c = as_float_vector(cost, "cost", n=n)
    lat = np.full(n, np.nan) if latency is None else as_float_vector(latency, "latency", n=n, allow_nan=True)
    known = np.isfinite(lat)
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    if known.any():
        p50, p95, p99 = (float(v) for v in np.percentile(lat[known], [50, 95, 99]))
    loc = None if local is None else as_bool_vector(local, "local", n=n)
    err = np.zeros(n, dtype=bool) if error is None else as_bool_vector(error, "error", n=n)
    calls = np.ones(n) if n_calls is None else as_float_vector(n_calls, "n_calls", n=n)
    fb = calls > 1 if fallback is None else as_bool_vector(fallback, "fallback", n=n)
    mq, mc = float(q.mean()), float(c.mean())
    rq = _opt_mean(reference_quality, "reference_quality", n)
    rc = _opt_mean(reference_cost, "reference_cost", n)
    oq = _opt_mean(oracle_quality, "oracle_quality", n)
    share = _safe_ratio(mc, rc)
    local_share = None if loc is None else float(loc.mean())
    return RoutingMetrics(
        n=n,
        mean_quality=mq,
        mean_cost=mc,
        latency_p50=p50,
        latency_p95=p95,
        latency_p99=p99,
        latency_known_share=float(known.mean()),
        local_share=local_share,
        cloud_share=None if local_share is None else 1.0 - local_share,
        error_share=float(err.mean()),
        fallback_share=float(fb.mean()),
        mean_calls=float(calls.mean()),
        reference_quality=rq,
        reference_cost=rc,
        quality_ratio=_safe_ratio(mq, rq),
        cost_share=share,
        cost_saving=None if share is None else 1.0 - share,
        oracle_quality=oq,
        oracle_gap=None if oq is None else oq - mq,
    )


def metrics_by_group(groups: object, **arrays: object) -> dict[str, RoutingMetrics]:
    """:func:`routing_metrics` per group label (category, agent type...).

    Args:
        groups: ``(n,)`` labels (None values are grouped under ``"<none>"``).
        **arrays: The arguments of :func:`routing_metrics`, each ``(n,)`` or None.

    Returns:
        ``label -> RoutingMetrics`` sorted by label.
    """
    g = np.asarray(groups, dtype=object)
    if g.ndim != 1:
        raise OPEInputError("groups", f"expected a 1-D array, got shape {g.shape}")
    labels = np.array(["<none>" if v is None else str(v) for v in g], dtype=object)
    n = labels.shape[0]
    cols: dict[str, np.ndarray | None] = {}
    for k, v in arrays.items():
        if v is None:
            cols[k] = None
            continue
        arr = np.asarray(v)
        if arr.shape[:1] != (n,):
            raise OPEInputError(k, f"expected length {n} (as groups), got shape {arr.shape}")
        cols[k] = arr
    out: dict[str, RoutingMetrics] = {}
    for lab in sorted(set(labels.tolist())):
        m = labels == lab
        sub = {k: (None if v is None else v[m]) for k, v in cols.items()}
        quality = sub.pop("quality")
        cost = sub.pop("cost")
        out[lab] = routing_metrics(quality, cost, **sub)
    return out


# --- headline numbers with bootstrap intervals -------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A point value and its ``1 - alpha`` percentile bootstrap interval."""

    value: float
    lower: float
    upper: float

    def to_dict(self) -> dict[str, float]:
        """``{"value", "lower", "upper"}``."""
        return asdict(self)


HEADLINE_FIELDS = (
    "mean_quality",
    "mean_cost",
    "local_share",
    "quality_ratio",
    "cost_share",
    "cost_saving",
    "oracle_gap",
)


def headline_intervals(
    quality: object,
    cost: object,
    *,
    local: object = None,
    reference_quality: object = None,
    reference_cost: object = None,
    oracle_quality: object = None,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    rng: SeedLike = 0,
) -> dict[str, Interval]:
    """Bootstrap intervals (paired: one set of row resamples) on the headline numbers.

    Returns:
        Subset of :data:`HEADLINE_FIELDS` that the given arrays allow, each an :class:`Interval`.
    """
    alpha = check_alpha(alpha)
    q = as_float_vector(quality, "quality")
    n = q.shape[0]
    if n == 0:
        raise OPEInputError("quality", "expected at least one request")
    cols: dict[str, np.ndarray] = {"quality": q, "cost": as_float_vector(cost, "cost", n=n)}
    if local is not None:
        cols["local"] = as_bool_vector(local, "local", n=n).astype(np.float64)
    if reference_quality is not None:
        cols["ref_q"] = as_float_vector(reference_quality, "reference_quality", n=n)
    if reference_cost is not None:
        cols["ref_c"] = as_float_vector(reference_cost, "reference_cost", n=n)
    if oracle_quality is not None:
        cols["oracle_q"] = as_float_vector(oracle_quality, "oracle_quality", n=n)
    names = list(cols)
    mat = np.stack([cols[k] for k in names], axis=1)
    pos = {k: i for i, k in enumerate(names)}

    def stats(s: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"mean_quality": s[..., pos["quality"]] / n, "mean_cost": s[..., pos["cost"]] / n}
            if "local" in pos:
                out["local_share"] = s[..., pos["local"]] / n
            if "ref_q" in pos:
                out["quality_ratio"] = s[..., pos["quality"]] / s[..., pos["ref_q"]]
            if "ref_c" in pos:
                out["cost_share"] = s[..., pos["cost"]] / s[..., pos["ref_c"]]
                out["cost_saving"] = 1.0 - out["cost_share"]
            if "oracle_q" in pos:
                out["oracle_gap"] = (s[..., pos["oracle_q"]] - s[..., pos["quality"]]) / n
        return out

    point = stats(mat.sum(axis=0))
    boot = stats(bootstrap_column_sums(mat, n_bootstrap, rng))
    res: dict[str, Interval] = {}
    for k in HEADLINE_FIELDS:
        if k not in point or not np.isfinite(point[k]):
            continue
        lo, hi = percentile_interval(boot[k], alpha)
        res[k] = Interval(float(point[k]), float(lo), float(hi))
    return res


# --- frontiers ---------------------------------------------------------------------------------
def _points(cost: object, quality: object) -> tuple[np.ndarray, np.ndarray]:
    c = as_float_vector(cost, "cost")
    q = as_float_vector(quality, "quality", n=c.shape[0])
    if c.shape[0] == 0:
        raise OPEInputError("cost", "expected at least one frontier point")
    return c, q


def nondecreasing_hull(cost: object, quality: object) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the non-decreasing concave hull of (cost, quality) points.

    Returns:
        ``(hull_cost, hull_quality)`` sorted by cost, strictly increasing in both.
    """
    c, q = _points(cost, quality)
    order = np.lexsort((-q, c))  # by cost, then best quality first
    c, q = c[order], q[order]
    keep = np.ones(c.shape[0], dtype=bool)
    keep[1:] = c[1:] != c[:-1]  # best quality per distinct cost
    c, q = c[keep], q[keep]
    hull: list[int] = []
    for i in range(c.shape[0]):  # Andrew's monotone chain, upper hull
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (c[a] - c[o]) * (q[i] - q[o]) - (q[a] - q[o]) * (c[i] - c[o])
            if cross >= 0:  # a is on or below the chord o -> i
                hull.pop()
            else:
                break
        hull.append(i)
    hc, hq = c[hull], q[hull]
    top = int(np.argmax(hq))  # first highest point; the hull is flat afterwards
    return hc[: top + 1], hq[: top + 1]


def hull_quality_at(hull_cost: np.ndarray, hull_quality: np.ndarray, cost: np.ndarray | float) -> np.ndarray:
    """Hull value at ``cost``: 0 left of the cheapest vertex, flat right of the last."""
    x = np.asarray(cost, dtype=np.float64)
    y = np.interp(x, hull_cost, hull_quality, left=0.0, right=float(hull_quality[-1]))
    return np.where(x < hull_cost[0], 0.0, y)


def aiq(cost: object, quality: object, *, cost_min: float = 0.0, cost_max: float | None = None) -> float:
    """Average Improvement in Quality (RouterBench): mean hull quality over ``[cost_min, cost_max]``.

    Args:
        cost: Frontier costs of one router (λ sweep).
        quality: Frontier qualities.
        cost_min: Left end of the cost axis (RouterBench: 0).
        cost_max: Right end; pass the max cost over all compared routers (default: this
            router's max cost).
    """
    hc, hq = nondecreasing_hull(cost, quality)
    hi = float(np.max(as_float_vector(cost, "cost"))) if cost_max is None else float(cost_max)
    lo = float(cost_min)
    if not hi > lo:
        raise OPEInputError("cost_max", f"expected > cost_min ({lo}), got {hi}")
    start = max(lo, float(hc[0]))  # the hull contributes 0 left of its cheapest point
    if start >= hi:
        return 0.0
    xs = np.unique(np.concatenate([[start, hi], hc[(hc > start) & (hc < hi)]]))
    ys = hull_quality_at(hc, hq, xs)
    area = float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))
    return area / (hi - lo)


def cost_at_quality(cost: object, quality: object, target: float) -> float | None:
    """Smallest cost at which the non-decreasing hull reaches ``target`` quality (None: never)."""
    hc, hq = nondecreasing_hull(cost, quality)
    if hq[-1] < target:
        return None
    if hq[0] >= target:
        return float(hc[0])
    j = int(np.argmax(hq >= target))
    x0, x1, y0, y1 = hc[j - 1], hc[j], hq[j - 1], hq[j]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def apgr(x: object, quality: object, *, weak_quality: float, strong_quality: float) -> float:
    """Average performance gap recovered (RouteLLM) of a curve ``quality(x)``.

    Args:
        x: Cost axis per point (share of strong calls or cost share), ideally spanning [0, 1].
        quality: Quality per point.
        weak_quality: Quality of the weak (cheap) model.
        strong_quality: Quality of the strong (reference) model; must differ from weak.
    """
    xs, q = _points(x, quality)
    if strong_quality == weak_quality:
        raise OPEInputError("strong_quality", "must differ from weak_quality (no gap to recover)")
    order = np.argsort(xs, kind="stable")
    xs, q = xs[order], q[order]
    width = float(xs[-1] - xs[0])
    if width <= 0:
        raise OPEInputError("x", "needs at least two distinct cost values")
    auc = float(np.sum(0.5 * (q[1:] + q[:-1]) * np.diff(xs)))
    return (auc - weak_quality * width) / ((strong_quality - weak_quality) * width)


def cpt(x: object, quality: object, *, weak_quality: float, strong_quality: float, fraction: float) -> float | None:
    """Cost-to-performance threshold CPT(fraction) (RouteLLM): cost ``x`` needed to recover
    ``fraction`` of the weak-to-strong quality gap (first crossing, linear interpolation).

    Returns:
        The ``x`` value, or None when the curve never reaches the target.
    """
    if not 0 <= fraction <= 1:
        raise OPEInputError("fraction", f"expected a number in [0, 1], got {fraction!r}")
    xs, q = _points(x, quality)
    order = np.argsort(xs, kind="stable")
    xs, q = xs[order], q[order]
    target = weak_quality + fraction * (strong_quality - weak_quality)
    hit = np.flatnonzero(q >= target - 1e-12)
    if hit.size == 0:
        return None
    j = int(hit[0])
    if j == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[j - 1], xs[j], q[j - 1], q[j]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


@dataclass(frozen=True)
class OperatingPoint:
    """A frontier point chosen on validation data.

    Attributes:
        index: Index of the chosen point in the sweep.
        reached: Whether the chosen point meets the target (else: the best-quality point).
    """

    index: int
    reached: bool


def calibrate_operating_point(val_cost: object, val_quality: object, target_quality: float) -> OperatingPoint:
    """Cheapest sweep point whose *validation* quality reaches ``target_quality``.

    The caller applies the chosen point's parameter unchanged to the test split. When no point
    reaches the target the highest-quality point (cheapest among ties) is returned with
    ``reached=False``.
    """
    c, q = _points(val_cost, val_quality)
    ok = np.flatnonzero(q >= target_quality)
    if ok.size:
        return OperatingPoint(int(ok[np.argmin(c[ok])]), True)
    best = np.flatnonzero(q == q.max())
    return OperatingPoint(int(best[np.argmin(c[best])]), False)


def frontier_summary(
    cost: object,
    quality: object,
    *,
    reference_quality: float,
    reference_cost: float,
    weak_quality: float,
    cost_max: float | None = None,
    quality_target: float = 0.95,
    cpt_fractions: Mapping[str, float] | None = None,
) -> dict[str, float | None]:
    """AIQ, APGR, CPT(x%) and cost share at ``quality_target`` of reference quality for one sweep.

    The APGR/CPT axis is the cost share (cost / reference cost); ``strong`` = reference model.
    """
    if not 0 < quality_target <= 1:
        raise OPEInputError("quality_target", f"expected a share in (0, 1], got {quality_target!r}")
    c, q = _points(cost, quality)
    if reference_cost <= 0:
        raise OPEInputError("reference_cost", f"expected > 0, got {reference_cost}")
    share = c / reference_cost
    fr = cpt_fractions or {"cpt50": 0.5, "cpt80": 0.8, "cpt95": 0.95}
    out: dict[str, float | None] = {"aiq": aiq(c, q, cost_max=cost_max)}
    gap = reference_quality != weak_quality and np.unique(share).size > 1
    kw = {"weak_quality": weak_quality, "strong_quality": reference_quality}
    out["apgr"] = apgr(share, q, **kw) if gap else None
    for name, f in fr.items():
        out[name] = cpt(share, q, fraction=f, **kw) if gap else None
    at = cost_at_quality(c, q, quality_target * reference_quality)
    out["cost_share_at_quality"] = None if at is None else at / reference_cost
    return out


# --- probability calibration -------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationCurve:
    """Reliability diagram of predicted success probabilities.

    Attributes:
        bin_edges: ``n_bins + 1`` equal-width edges over [0, 1].
        mean_predicted: Mean prediction per bin (None for empty bins).
        mean_observed: Mean outcome per bin (None for empty bins).
        counts: Rows per bin.
        ece: Expected calibration error ``sum_b (n_b / n) |pred_b - obs_b|``.
    """

    bin_edges: list[float]
    mean_predicted: list[float | None]
    mean_observed: list[float | None]
    counts: list[int]
    ece: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def calibration_curve(predicted: object, observed: object, *, n_bins: int = 10) -> CalibrationCurve:
    """Bin ``predicted`` probabilities and compare with the ``observed`` outcomes in [0, 1]."""
    p = as_float_vector(predicted, "predicted")
    y = as_float_vector(observed, "observed", n=p.shape[0])
    if p.shape[0] == 0:
        raise OPEInputError("predicted", "expected at least one prediction")
    if ((p < 0) | (p > 1)).any():
        i = int(np.flatnonzero((p < 0) | (p > 1))[0])
        raise OPEInputError("predicted", f"expected a probability in [0, 1], got {p[i]}", index=i)
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise OPEInputError("n_bins", f"expected an integer >= 1, got {n_bins!r}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(b, minlength=n_bins)
    sp = np.bincount(b, weights=p, minlength=n_bins)
    sy = np.bincount(b, weights=y, minlength=n_bins)
    nz = counts > 0
    ece = float(np.abs(sp[nz] - sy[nz]).sum() / p.shape[0])
    return CalibrationCurve(
        bin_edges=edges.tolist(),
        mean_predicted=[float(sp[i] / counts[i]) if nz[i] else None for i in range(n_bins)],
        mean_observed=[float(sy[i] / counts[i]) if nz[i] else None for i in range(n_bins)],
        counts=counts.astype(int).tolist(),
        ece=ece,
    )

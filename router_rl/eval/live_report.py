"""The operators' view of live traffic: the joined log (decisions + feedback) -> numbers per section.

:func:`live_report` reads a ``router-rl logs join`` table (:data:`LOGGED_SCHEMA`), optionally the
raw decision log (for the token counts, breaker states and failed attempts the joined table does
not carry) and a model catalog (locations, prices), filters it to a time window and agent types,
and computes (docs/operations.md describes every number):

* routing shares (local / cloud / emergency cloud / failed) overall and per time bucket;
* cost, and the counterfactual cost of sending every request to the reference cloud model:
  ``sum_i ref.cost(input_tokens_i, output_tokens_i)`` over the rows whose tokens are known, with
  the catalog's token prices, next to the recorded ``cost_usd`` of the same rows;
* latency percentiles (P50 / P95 / P99) per complexity and per agent type;
* quality from feedback with bootstrap intervals, and vs the reference model: on the rows the
  reference answered (feedback), and over every labeled row by off-policy evaluation of "always
  the reference" (:func:`router_rl.eval.logged.evaluate_log`, the project's estimators);
* fallbacks by reason, emergency cloud by trigger, failed attempts by kind, breaker trips and the
  uptime of each provider from the breaker states recorded with every decision;
* throughput, tokens/s in and out per model;
* the phase gates on these live numbers (:mod:`router_rl.eval.live_gates`).

Rendering (Markdown, HTML, PNG per view) lives in :mod:`router_rl.eval.live_render`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import polars as pl
from pydantic import BeforeValidator, Field

from router_rl.core.config import StrictConfig, as_tuple
from router_rl.eval.independence import IndependenceConfig
from router_rl.eval.live_inputs import (
    CLASSES,
    EMERGENCY_PREFIX,
    LiveReportError,
    attach_decisions,
    breaker_history,
    filter_window,
    model_locations,
    reference_model,
    routing_classes,
)
from router_rl.ope.bootstrap import bootstrap_column_sums, percentile_interval

if TYPE_CHECKING:
    from router_rl.eval.live_gates import LiveGates
    from router_rl.traces.catalog import ModelCatalog

#: Bucket widths (seconds) the time series may use; the first giving at most ``max_buckets`` wins.
BUCKETS_S: tuple[int, ...] = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


class LiveReportConfig(StrictConfig):
    """Settings of :func:`live_report`.

    Attributes:
        since: Keep decisions at or after this time (UTC; None: from the first).
        until: Keep decisions before this time (None: to the last).
        agent_types: Keep only these agent types (empty: all).
        reference_model: The cloud model of the counterfactual and the quality ratio (None: the
            catalog's most expensive cloud model among the logged ones, by the price of 1M input
            + 1M output tokens; without a catalog the cloud model with the highest mean logged cost).
        n_bootstrap: Bootstrap resamples of every interval.
        alpha: Interval level (0.05 = 95%).
        seed: Seed of the bootstrap and the reward models.
        ope: Estimate the reference's quality on every labeled row off-policy.
        ope_folds: Cross-fitting folds of the OPE reward model.
        ope_reward_model: ``lightgbm`` or ``ridge``.
        max_buckets: Most time buckets of the time series.
        gates: Phase thresholds (:class:`IndependenceConfig`).
    """

    since: datetime | None = None
    until: datetime | None = None
    agent_types: Annotated[tuple[str, ...], BeforeValidator(as_tuple)] = ()
    reference_model: str | None = None
    n_bootstrap: Annotated[int, Field(ge=10)] = 1000
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    seed: int = 0
    ope: bool = True
    ope_folds: Annotated[int, Field(ge=2)] = 5
    ope_reward_model: Literal["lightgbm", "ridge"] = "lightgbm"
    max_buckets: Annotated[int, Field(ge=2, le=500)] = 48
    gates: IndependenceConfig = Field(default_factory=IndependenceConfig)


@dataclass(frozen=True)
class Interval:
    """A value with its percentile-bootstrap interval (None: not computable) and the rows used."""

    value: float | None
    lower: float | None
    upper: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class LiveReport:
    """Everything :func:`live_report` measured (``to_dict`` is the ``live_report.json`` layout).

    Attributes:
        source: What was read (paths), the window and filters applied.
        counts: Rows read, kept, excluded per filter, labeled (answered, with feedback), unlabeled
            (answered, no feedback yet), no answer (quality 0 by the join rule).
        shares: Routing class -> share of the kept rows.
        series: Time series: bucket starts (ISO), per class counts, cost, counterfactual, mean
            quality, latency P50 / P95, tokens in / out.
        bucket_s: Width of a time bucket (seconds).
        cost: Recorded and counterfactual cost, saving, formula, rows used / excluded.
        per_model: Model -> requests, cost, tokens in / out, tokens/s.
        latency: ``{"overall": {...}, "complexity": {level: {...}}, "agent_type": {t: {...}},
            "task_class": {"simple": {...}, "complex": {...}}}`` (complex = complex + very_complex).
        quality: Mean feedback quality (interval) overall / per location / per agent type, and vs
            the reference (feedback and OPE).
        fallbacks: Fallback / emergency / attempt-failure counts by reason.
        providers: Provider -> trips, uptime, observed time (from breaker states).
        operations: Throughput, window length, engine utilisation note.
        gates: The phase gates on the live numbers.
        notes: Everything skipped or approximated, said once.
    """

    source: dict[str, Any]
    counts: dict[str, int]
    shares: dict[str, float]
    series: dict[str, list[Any]]
    bucket_s: int
    cost: dict[str, Any]
    per_model: dict[str, dict[str, Any]]
    latency: dict[str, Any]
    quality: dict[str, Any]
    fallbacks: dict[str, Any]
    providers: dict[str, dict[str, Any]]
    operations: dict[str, Any]
    gates: LiveGates | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = {k: getattr(self, k) for k in ("source", "counts", "shares", "series", "bucket_s", "cost", "per_model",
                                           "latency", "quality", "fallbacks", "providers", "operations", "notes")}
        d["gates"] = self.gates.to_dict() if self.gates is not None else None
        return _jsonable(d)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path``."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return p


def _jsonable(v: Any) -> Any:
    if isinstance(v, Interval):
        return v.to_dict()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return v


# --- numbers -------------------------------------------------------------------------------------
def mean_interval(values: np.ndarray, cfg: LiveReportConfig, salt: int = 0) -> Interval:
    """Mean of the finite ``values`` with a seeded percentile-bootstrap interval."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Interval(None, None, None, 0)
    boot = bootstrap_column_sums(v[:, None], cfg.n_bootstrap, np.random.default_rng([cfg.seed, 24, salt]))
    lo, hi = percentile_interval(boot[:, 0] / v.size, cfg.alpha)
    return Interval(float(v.mean()), float(lo), float(hi), int(v.size))


def ratio_interval(num: np.ndarray, num_in: np.ndarray, den: np.ndarray, den_in: np.ndarray,
                   cfg: LiveReportConfig, salt: int = 0) -> Interval:
    """``mean(num[num_in]) / mean(den[den_in])`` with rows resampled jointly (one bootstrap)."""
    cols = np.column_stack([np.where(num_in, num, 0.0), num_in, np.where(den_in, den, 0.0), den_in]).astype(float)
    s = cols.sum(axis=0)
    if s[1] == 0 or s[3] == 0 or s[2] == 0:
        return Interval(None, None, None, int(s[1]))
    boot = bootstrap_column_sums(cols, cfg.n_bootstrap, np.random.default_rng([cfg.seed, 25, salt]))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (boot[:, 0] / boot[:, 1]) / (boot[:, 2] / boot[:, 3])
    lo, hi = percentile_interval(r, cfg.alpha)
    return Interval(float((s[0] / s[1]) / (s[2] / s[3])), float(lo), float(hi), int(s[1]))


def _pct(values: np.ndarray) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"n": int(v.size), "p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(v.mean())}


def _bucket_width(span_s: float, max_buckets: int) -> int:
    for b in BUCKETS_S:
        if span_s / b < max_buckets:
            return b
    return BUCKETS_S[-1]


def live_report(
    table: pl.DataFrame,
    *,
    catalog: ModelCatalog | None = None,
    decisions: pl.DataFrame | None = None,
    config: LiveReportConfig | None = None,
    source: dict[str, Any] | None = None,
) -> LiveReport:
    """Compute the operators' report of a joined log (module docstring).

    Args:
        table: The joined table (:data:`LOGGED_SCHEMA`, e.g. :func:`read_logged`).
        catalog: Locations and prices (required for the counterfactual cost).
        decisions: The raw decision log (``read_decision_log``): tokens, breaker states, attempts.
        config: Window, filters, reference model, interval settings, gates.
        source: Recorded as is in the report (paths read).

    Raises:
        LiveReportError: no row left after the filters, models missing from the catalog, no
            reference model.
    """
    from router_rl.eval.live_gates import live_gates

    cfg = config or LiveReportConfig()
    notes: list[str] = []
    df, counts = filter_window(table, cfg.since, cfg.until, cfg.agent_types)
    if df.height == 0:
        raise LiveReportError(
            f"no decision left after the filters ({counts}); check --since / --until / --agent-type")
    if decisions is not None:
        df, absent = attach_decisions(df, decisions)
        counts["rows_missing_from_decision_log"] = absent
        if absent:
            notes.append(f"{absent} row(s) are not in the decision log: no tokens / breaker states for them")
    df = df.sort("ts", maintain_order=True)
    loc = model_locations(df, catalog)
    ref = reference_model(cfg.reference_model, df, loc, catalog)
    cls = routing_classes(df, loc)
    n = df.height
    q = df["quality"].to_numpy().astype(np.float64)
    q[~np.isfinite(q)] = np.nan
    labeled = np.isfinite(q)
    answered = df["outcome_model"].is_not_null().to_numpy()
    counts.update(labeled=int((labeled & answered).sum()), unlabeled=int((~labeled & answered).sum()),
                  no_answer=int((~answered).sum()))
    shares = {c: float((cls == c).mean()) for c in CLASSES}

    ts = df["ts"].dt.epoch("us").to_numpy() / 1e6
    t0, t1 = float(ts.min()), float(ts.max())
    span = max(t1 - t0, 0.0)
    width = _bucket_width(span, cfg.max_buckets)
    bucket = np.floor((ts - math.floor(t0 / width) * width) / width).astype(np.int64)
    starts = math.floor(t0 / width) * width + width * np.arange(int(bucket.max()) + 1)

    # --- cost -------------------------------------------------------------------------------------
    cost = df["cost_usd"].to_numpy().astype(np.float64)
    has_tok = "input_tokens" in df.columns and "output_tokens" in df.columns
    cf = np.full(n, np.nan)
    cost_info: dict[str, Any] = {"reference_model": ref, "formula": (
        "counterfactual = sum over rows of ref.cost(input_tokens, output_tokens) = (input_tokens x "
        "usd_per_m_input + output_tokens x usd_per_m_output) / 1e6 with the reference's catalog prices (plus "
        "GPU-seconds x gpu_usd_per_hour / 3600 for a local reference); saving = 1 - recorded / counterfactual "
        "over the same rows (those with known tokens and cost)")}
    if catalog is None:
        notes.append("counterfactual cost: not computed (no --catalog: the reference's prices are unknown)")
    elif not has_tok:
        notes.append("counterfactual cost: not computed (the joined table has no token counts; pass --decisions)")
    else:
        spec = catalog[ref]
        tin = df["input_tokens"].to_numpy().astype(np.float64)
        tout = df["output_tokens"].to_numpy().astype(np.float64)
        ok = np.isfinite(tin) & np.isfinite(tout)
        cf[ok] = [spec.cost(a, b) for a, b in zip(tin[ok], tout[ok], strict=True)]
        est = df["usage_estimated"].fill_null(False).to_numpy() if "usage_estimated" in df.columns else None
        cost_info["rows_usage_estimated"] = int(est[ok].sum()) if est is not None else None
    both = np.isfinite(cf) & np.isfinite(cost)
    cost_info.update(
        recorded_usd=float(np.nansum(cost)), rows_cost_known=int(np.isfinite(cost).sum()),
        rows_used=int(both.sum()), rows_excluded=int(n - both.sum()),
        recorded_usd_used=float(cost[both].sum()) if both.any() else None,
        counterfactual_usd=float(cf[both].sum()) if both.any() else None,
    )
    cost_info["saving"] = (1.0 - cost_info["recorded_usd_used"] / cost_info["counterfactual_usd"]
                           if both.any() and cost_info["counterfactual_usd"] > 0 else None)
    cost_info["cost_share"] = None if cost_info["saving"] is None else 1.0 - cost_info["saving"]
    if both.any() and cost_info["counterfactual_usd"] > 0:
        cols = np.column_stack([np.where(both, cost, 0.0), np.where(both, cf, 0.0)])
        boot = bootstrap_column_sums(cols, cfg.n_bootstrap, np.random.default_rng([cfg.seed, 26]))
        with np.errstate(divide="ignore", invalid="ignore"):
            lo, hi = percentile_interval(1.0 - boot[:, 0] / boot[:, 1], cfg.alpha)
        cost_info["saving_interval"] = [float(lo), float(hi)]

    # --- per model -----------------------------------------------------------------------------------
    per_model: dict[str, dict[str, Any]] = {}
    om = df["outcome_model"].to_list()
    for m in sorted({x for x in om if x is not None}):
        rows = np.asarray([x == m for x in om])
        d: dict[str, Any] = {"location": loc[m], "requests": int(rows.sum()), "cost_usd": float(np.nansum(cost[rows]))}
        if has_tok:
            tin = df["input_tokens"].to_numpy().astype(np.float64)[rows]
            tout = df["output_tokens"].to_numpy().astype(np.float64)[rows]
            d.update(input_tokens=int(np.nansum(tin)), output_tokens=int(np.nansum(tout)),
                     input_tokens_per_s=float(np.nansum(tin) / span) if span > 0 else None,
                     output_tokens_per_s=float(np.nansum(tout) / span) if span > 0 else None)
        per_model[m] = d

    # --- latency ------------------------------------------------------------------------------------
    lat = df["latency_s"].to_numpy().astype(np.float64)
    lat_ans = np.where(answered, lat, np.nan)
    from router_rl.eval.live_gates import COMPLEX_LEVELS

    cx_vals = df["complexity"].fill_null("none").to_numpy()
    latency: dict[str, Any] = {"overall": _pct(lat_ans), "complexity": {}, "agent_type": {}, "task_class": {
        "simple": _pct(lat_ans[cx_vals == "simple"]),
        "complex": _pct(lat_ans[np.isin(cx_vals, COMPLEX_LEVELS)])}}
    for col in ("complexity", "agent_type"):
        vals = df[col].fill_null("none").to_list()
        for g in sorted(set(vals)):
            latency[col][g] = _pct(lat_ans[np.asarray([v == g for v in vals])])

    # --- quality ------------------------------------------------------------------------------------
    quality: dict[str, Any] = {"overall": mean_interval(q, cfg, 1), "location": {}, "agent_type": {},
                               "reference_model": ref}
    om_loc = np.asarray([loc[m] if m is not None else "none" for m in om], dtype=object)
    for g in ("local", "cloud"):
        quality["location"][g] = mean_interval(np.where(om_loc == g, q, np.nan), cfg, 2 + len(g))
    ats = df["agent_type"].fill_null("none").to_list()
    for i, g in enumerate(sorted(set(ats))):
        quality["agent_type"][g] = mean_interval(np.where(np.asarray([a == g for a in ats]), q, np.nan), cfg, 10 + i)
    is_ref = np.asarray([m == ref for m in om]) & labeled
    quality["reference_feedback"] = mean_interval(np.where(is_ref, q, np.nan), cfg, 3)
    quality["ratio_feedback"] = ratio_interval(q, labeled, q, is_ref, cfg, 4)
    quality["ope"] = _ope(df, ref, cfg, catalog, loc, notes) if cfg.ope else None
    if not cfg.ope:
        notes.append("quality vs reference by OPE: not run (disabled)")

    # --- fallbacks, breakers --------------------------------------------------------------------------
    reasons = df["fallback_reason"].to_list()
    fb = df["fallback_used"].fill_null(False).to_numpy()
    by_reason: dict[str, int] = {}
    for r, f in zip(reasons, fb, strict=True):
        if f:
            key = r or "unknown"
            by_reason[key] = by_reason.get(key, 0) + 1
    emergency: dict[str, int] = {}
    for r in reasons:
        if r and r.startswith(EMERGENCY_PREFIX):
            trig = r.split(":", 1)[1] if ":" in r else "unknown"
            emergency[trig] = emergency.get(trig, 0) + 1
    attempts: dict[str, int] = {}
    if "attempts" in df.columns:
        for lst in df["attempts"].to_list():
            for a in lst or []:
                kind = a.rsplit(":", 1)[1] if ":" in a else a
                attempts[kind] = attempts.get(kind, 0) + 1
    else:
        notes.append("failed attempts: not available (the joined table has no attempts; pass --decisions)")
    fallbacks = {"fallbacks": int(fb.sum()), "fallback_share": float(fb.mean()),
                 "by_reason": dict(sorted(by_reason.items())),
                 "emergency": int(sum(emergency.values())), "emergency_by_trigger": dict(sorted(emergency.items())),
                 "failed_attempts_by_kind": dict(sorted(attempts.items())),
                 "errors": int(df["error"].is_not_null().sum()),
                 "error_share": float(df["error"].is_not_null().to_numpy().mean())}
    providers, bnotes = breaker_history(df, None)
    notes.extend(bnotes)

    # --- time series ------------------------------------------------------------------------------
    nb = len(starts)

    def per_bucket(vals: np.ndarray, fn: str) -> list[float | None]:
        out: list[float | None] = []
        for b in range(nb):
            v = vals[(bucket == b) & np.isfinite(vals)]
            if v.size == 0:
                out.append(None if fn != "sum" else 0.0)
            elif fn == "sum":
                out.append(float(v.sum()))
            elif fn == "mean":
                out.append(float(v.mean()))
            else:
                out.append(float(np.percentile(v, float(fn))))
        return out

    from datetime import UTC

    series: dict[str, list[Any]] = {
        "start": [datetime.fromtimestamp(float(s), tz=UTC).isoformat() for s in starts],
        "requests": [int((bucket == b).sum()) for b in range(nb)],
        **{c: [int(((bucket == b) & (cls == c)).sum()) for b in range(nb)] for c in CLASSES},
        "cost_usd": per_bucket(np.where(both, cost, np.nan), "sum"),
        "counterfactual_usd": per_bucket(np.where(both, cf, np.nan), "sum"),
        "quality": per_bucket(q, "mean"),
        "quality_local": per_bucket(np.where(om_loc == "local", q, np.nan), "mean"),
        "quality_cloud": per_bucket(np.where(om_loc == "cloud", q, np.nan), "mean"),
        "latency_p50": per_bucket(lat_ans, "50"),
        "latency_p95": per_bucket(lat_ans, "95"),
        "fallbacks": [int(((bucket == b) & fb).sum()) for b in range(nb)],
    }
    if has_tok:
        series["input_tokens"] = per_bucket(df["input_tokens"].to_numpy().astype(np.float64), "sum")
        series["output_tokens"] = per_bucket(df["output_tokens"].to_numpy().astype(np.float64), "sum")

    operations = {
        "window_start": datetime.fromtimestamp(t0, tz=UTC).isoformat(),
        "window_end": datetime.fromtimestamp(t1, tz=UTC).isoformat(), "window_s": span,
        "throughput_rps": float(n / span) if span > 0 else None,
        "peak_bucket_rps": float(max(series["requests"]) / width),
        "engine_utilisation": "not reported: the decision log carries no engine metrics; llama.cpp (/metrics) and "
                              "vLLM (/metrics) utilisation is scraped by the Prometheus jobs in "
                              "deploy/prometheus/prometheus.yml and shown on the operations dashboard",
        "tokens_source": "decision log (usage reported by the backend; estimated rows counted)" if has_tok else None,
        "uptime_source": "breaker states recorded with every decision (each held until the next decision)",
    }
    rep = LiveReport(
        source={**(source or {}), "since": cfg.since.isoformat() if cfg.since else None,
                "until": cfg.until.isoformat() if cfg.until else None, "agent_types": list(cfg.agent_types)},
        counts=counts, shares=shares, series=series, bucket_s=width, cost=cost_info, per_model=per_model,
        latency=latency, quality=quality, fallbacks=fallbacks, providers=providers, operations=operations,
        notes=notes,
    )
    rep.gates = live_gates(rep, cfg.gates)
    return rep


def _ope(df: pl.DataFrame, ref: str, cfg: LiveReportConfig, catalog: ModelCatalog | None,
         loc: dict[str, str], notes: list[str]) -> dict[str, Any] | None:
    """Quality of "always the reference" vs the logging policy on the labeled rows (evaluate_log)."""
    from router_rl.eval.logged import LogOPEConfig, LogOPEError, evaluate_log
    from router_rl.logs.data import LoggedData, LoggedDataError
    from router_rl.ope.validation import OPEInputError

    try:
        data = LoggedData.from_table(df, locations=loc)
    except LoggedDataError as e:
        notes.append(f"quality vs reference by OPE: not run ({e})")
        return None
    if ref not in data.models:
        notes.append(f"quality vs reference by OPE: not run (the reference {ref!r} is not in the action set "
                     f"{list(data.models)})")
        return None
    if data.n_labeled == 0:
        notes.append("quality vs reference by OPE: not run (no labeled row)")
        return None
    j = data.models.index(ref)
    target = np.zeros((data.n, data.k))
    target[:, j] = 1.0
    try:
        rep = evaluate_log(data, {f"single:{ref}": target}, config=LogOPEConfig(
            n_bootstrap=cfg.n_bootstrap, alpha=cfg.alpha, seed=cfg.seed, folds=cfg.ope_folds,
            reward_model=cfg.ope_reward_model, metrics=("quality",)))
    except (LogOPEError, OPEInputError, ValueError) as e:
        notes.append(f"quality vs reference by OPE: not run ({e})")
        return None
    ev = rep.evaluation
    pr = ev.policies[f"single:{ref}"]
    m = pr.metrics["quality"]
    logged = ev.incumbent_result.metrics["quality"].estimates["on_policy"] if ev.incumbent_result else None
    out: dict[str, Any] = {
        "n": m.n, "n_excluded": m.n_excluded, "reward_model": ev.reward_models.get("quality"),
        "estimates": {k: {"value": e.value, "lower": e.lower, "upper": e.upper} for k, e in m.estimates.items()},
        "difference": {k: {"value": e.value, "lower": e.lower, "upper": e.upper}
                       for k, e in (m.difference or {}).items()},
        "logged": None if logged is None else {"value": logged.value, "lower": logged.lower, "upper": logged.upper},
        "support_violated": bool(pr.support.violated) if pr.support else None,
        "unsupported_mass": float(pr.support.unsupported_mass) if pr.support else None,
        "warnings": list(ev.warnings), "estimator": "dr" if "dr" in m.estimates else next(iter(m.estimates)),
    }
    est = m.estimates[out["estimator"]]
    out["ratio"] = (logged.value / est.value) if logged is not None and est.value > 0 else None
    return out



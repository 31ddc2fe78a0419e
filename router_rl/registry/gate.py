"""The promotion gate: promote a candidate policy only when the log says, with confidence, it is better.

(Over 500 lines on purpose: one concept, the promotion gate: its config, its checks and the
verdict are one decision and are read together.)

:func:`evaluate_gate` judges a candidate against an incumbent (a policy, or ``"logged"``: the
logging policy itself) on a joined log, with the project's OPE on logs
(:func:`router_rl.eval.logged.evaluate_log`: every estimator with its percentile-bootstrap
interval, the **paired** difference candidate - incumbent on the same resamples, the support
check, the importance-weight diagnostics, the exact local share). Checks, each with its number
and threshold (:class:`GateCheck`):

* ``utility_gain_lower``: lower bound of the ``confidence`` interval of the paired utility
  difference (estimator ``estimator``, default DR) ``> min_utility_gain`` (default 0);
* ``quality_ratio_lower``: lower bound of the candidate's quality / the reference model's quality
  ``>= quality_floor`` (0.95). The reference is ``reference`` (a model name) or, by default, the
  log's analogue of the project's "best single model": the model whose always-choose-it policy has
  the highest estimated quality on the log (chosen once, on the point estimates; the ratio's
  interval resamples both qualities with the same rows as :func:`evaluate_log`: one
  :func:`~router_rl.ope.bootstrap.bootstrap_column_sums` call of the same seed over the same rows);
* ``local_share``: the candidate's local share (exact, from its distribution on the logged
  contexts) ``>= local_target`` (None: skipped);
* ``labeled_rows >= min_rows``; the candidate's ``ess >= min_ess`` (Kish, rows),
  ``ess_ratio >= min_ess_ratio``, ``max_weight <= max_weight``, ``unsupported_mass <=
  max_unsupported_mass``; the same diagnostics for a policy incumbent (its estimate enters the
  difference).

The candidate is promoted iff no check fails (skipped checks, threshold None, neither pass nor
fail). With fewer labeled rows than ``min_rows`` nothing is estimated: the verdict is a refusal
naming that one number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from router_rl.core.config import NonNegativeFloat, PositiveFloat, StrictConfig, UnitFloat
from router_rl.core.errors import ConfigError, RouterRLError

if TYPE_CHECKING:
    from router_rl.eval.logged import LogOPEConfig, LogOPEReport
    from router_rl.logs.data import LoggedData
    from router_rl.policies.base import RoutingPolicy

#: The incumbent that is the logging policy itself.
LOGGED = "logged"
#: Estimators the gate can decide on (``switch-dr`` is accepted for ``switch_dr``).
GATE_ESTIMATORS: tuple[str, ...] = ("dm", "ips", "snips", "dr", "switch_dr")
#: Schema version of :meth:`GateVerdict.to_dict`.
GATE_SCHEMA_VERSION = 1


class GateError(RouterRLError, ValueError):
    """The gate cannot be evaluated (a candidate that does not fit the log, a bad reference model...)."""


def _estimator_name(v: Any) -> Any:
    return v.replace("-", "_").lower() if isinstance(v, str) else v


class GateConfig(StrictConfig):
    """Thresholds and OPE settings of the promotion gate (validated on construction).

    Attributes:
        confidence: Two-sided level of every interval (0.95: the 2.5% / 97.5% percentiles).
        interval: Interval of the estimates and of the paired difference: ``percentile`` (the
            paired bootstrap, default), ``studentized`` (bootstrap-t) or ``betting`` (finite-sample,
            valid at any ESS, but its width scales with the metric's range: a utility's observed
            range makes it wide enough at gate-sized logs to refuse every real gain;
            docs/promotion.md). The quality ratio's interval is always the paired percentile one.
        estimator: Estimator the decision uses (``dm``, ``ips``, ``snips``, ``dr``, ``switch_dr``);
            every estimator is still computed and recorded.
        min_utility_gain: The utility difference's lower bound must exceed this (default 0).
        quality_floor: Minimum lower bound of candidate quality / reference quality.
        reference: Reference model of the quality ratio; None = the model with the highest
            estimated quality on the log (the "best single model").
        local_target: Minimum local share of the candidate (None, the default: not gated; the fleet's
            phase-2 target is 0.8, docs/promotion.md says why it is not the default).
        min_rows: Minimum labeled rows in the log; below it nothing is estimated (refusal).
        min_ess: Minimum Kish effective sample size (rows) of the candidate's importance weights.
        min_ess_ratio: Minimum ESS / rows (None: not gated).
        max_weight: Maximum importance weight (None: not gated).
        max_unsupported_mass: Maximum share of the candidate's decisions on models the logger gave
            a propensity below ``support_threshold`` (IPS / DR are biased there).
        n_boot: Bootstrap resamples (paired: shared by candidate, incumbent and reference).
        seed: Seed of the reward models' folds and of the bootstrap.
        lam: Cost weight of the utility ``quality - lam * cost_usd / cost_ref_usd``.
        cost_ref_usd: USD scale of the utility (None: the log's priciest model's mean cost).
        folds: Cross-fitting folds of the reward models.
        reward_model: ``lightgbm`` or ``ridge``.
        reward_model_params: Overrides of the reward model's parameters.
        support_threshold: Logging propensity under which a model counts as unsupported.
        tau: Weight threshold of switch-DR.
        canary_share: 0 = a passing candidate goes live at once; > 0 = it starts as a canary on
            this share of traffic (the router ramps it on live feedback).
    """

    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    interval: Literal["percentile", "studentized", "betting"] = "percentile"
    estimator: Annotated[Literal["dm", "ips", "snips", "dr", "switch_dr"], BeforeValidator(_estimator_name)] = "dr"
    min_utility_gain: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    quality_floor: Annotated[float, Field(gt=0, le=2)] = 0.95
    reference: Annotated[str, Field(min_length=1)] | None = None
    local_target: UnitFloat | None = None
    min_rows: Annotated[int, Field(ge=1)] = 200
    min_ess: NonNegativeFloat = 50.0
    min_ess_ratio: UnitFloat | None = None
    max_weight: PositiveFloat | None = None
    max_unsupported_mass: UnitFloat = 0.01
    n_boot: Annotated[int, Field(ge=100)] = 1000
    seed: int = 0
    lam: NonNegativeFloat = 1.0
    cost_ref_usd: PositiveFloat | None = None
    folds: Annotated[int, Field(ge=2)] = 5
    reward_model: Literal["lightgbm", "ridge"] = "lightgbm"
    reward_model_params: dict[str, Any] = Field(default_factory=dict)
    support_threshold: Annotated[float, Field(ge=0, lt=1)] = 1e-3
    tau: NonNegativeFloat = 10.0
    canary_share: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @property
    def alpha(self) -> float:
        """``1 - confidence``."""
        return 1.0 - self.confidence

    @classmethod
    def from_file(cls, path: str | Path) -> GateConfig:
        """Load a YAML (``.yaml`` / ``.yml``) or JSON file; errors name the file and the field.

        Raises:
            ConfigError: unreadable file, not a mapping, an unknown or invalid field.
        """
        import json

        import yaml

        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError("<file>", f"cannot read the gate file ({e.strerror or e})", source=str(p)) from None
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            kind = "JSON" if p.suffix.lower() == ".json" else "YAML"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError("<file>", f"invalid {kind} ({first})", source=str(p)) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(cls.__name__, f"expected a mapping of settings, got {type(data).__name__}", source=str(p))
        bad_keys = [k for k in data if not isinstance(k, str)]
        if bad_keys:
            raise ConfigError(cls.__name__, f"expected setting names, got {bad_keys!r}", source=str(p))
        try:  # the constructor (not from_dict) so that the error names ``GateConfig.field`` once
            return cls(**data)
        except ConfigError as e:
            raise ConfigError(e.setting, e.problem, source=str(p)) from None

    def ope_config(self, *, incumbent: str) -> LogOPEConfig:
        """The :class:`~router_rl.eval.logged.LogOPEConfig` the gate evaluates with."""
        from router_rl.eval.logged import LogOPEConfig

        return LogOPEConfig(
            n_bootstrap=self.n_boot,
            alpha=self.alpha,
            interval=self.interval,
            seed=self.seed,
            folds=self.folds,
            reward_model=self.reward_model,
            reward_model_params=dict(self.reward_model_params),
            lam=self.lam,
            cost_ref_usd=self.cost_ref_usd,
            support_threshold=self.support_threshold,
            tau=self.tau,
            incumbent=incumbent,
        )


@dataclass(frozen=True)
class GateCheck:
    """One threshold comparison of the gate.

    Attributes:
        name: ``utility_gain_lower``, ``quality_ratio_lower``, ``local_share``, ``labeled_rows``,
            ``ess``, ``ess_ratio``, ``max_weight``, ``unsupported_mass`` (``incumbent_...`` for
            the incumbent's diagnostics).
        value: The measured number (None: could not be computed, which fails the check).
        op: ``">"``, ``">="`` or ``"<="``.
        threshold: The gate's threshold (None: the check is skipped).
        passed: True / False, None when skipped.
        detail: What the number is (estimator, reference model, ...).
    """

    name: str
    value: float | None
    op: str
    threshold: float | None
    passed: bool | None
    detail: str = ""

    def describe(self) -> str:
        """``name = value (needs op threshold)``, e.g. ``utility_gain_lower = -0.0123 (needs > 0)``."""
        v = "n/a" if self.value is None else f"{self.value:.4g}"
        if self.threshold is None:
            return f"{self.name} = {v} (not gated)"
        verdict = {True: "ok", False: "FAIL", None: "skipped"}[self.passed]
        extra = f"; {self.detail}" if self.detail else ""
        return f"{self.name} = {v} (needs {self.op} {self.threshold:.4g}) {verdict}{extra}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "passed": self.passed,
            "detail": self.detail,
        }


def _check(name: str, value: float | None, op: str, threshold: float | None, detail: str = "") -> GateCheck:
    if threshold is None:
        return GateCheck(name, value, op, None, None, detail)
    if value is None or not math.isfinite(value):
        return GateCheck(name, None, op, float(threshold), False, detail)
    ok = {">": value > threshold, ">=": value >= threshold - 1e-12, "<=": value <= threshold + 1e-12}[op]
    return GateCheck(name, float(value), op, float(threshold), bool(ok), detail)


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision with every number behind it.

    Attributes:
        passed: Promote (every non-skipped check passed).
        checks: Every check, in a fixed order.
        estimates: Candidate / incumbent / difference / reference estimates with intervals, and
            the quality ratio (layout in docs/promotion.md).
        diagnostics: Weights and support of the candidate (and a policy incumbent).
        candidate: The candidate's name (its version).
        incumbent: ``"logged"`` or the incumbent's name.
        n_rows: Logged rows; ``n_labeled``: rows with a quality label.
        config: The gate used.
        warnings: The OPE's warnings (unsupported mass, missing reward model...).
        report: The full :class:`~router_rl.eval.logged.LogOPEReport` (None when nothing was
            estimated); not part of :meth:`to_dict`.
    """

    passed: bool
    checks: tuple[GateCheck, ...]
    estimates: dict[str, Any]
    diagnostics: dict[str, Any]
    candidate: str
    incumbent: str
    n_rows: int
    n_labeled: int
    config: GateConfig
    warnings: tuple[str, ...] = ()
    report: LogOPEReport | None = field(default=None, compare=False, repr=False)

    @property
    def failed(self) -> list[GateCheck]:
        """The checks that failed."""
        return [c for c in self.checks if c.passed is False]

    @property
    def reasons(self) -> list[str]:
        """One line per failing check (number and threshold); empty when passed."""
        return [c.describe() for c in self.failed]

    def check(self, name: str) -> GateCheck:
        """The check called ``name`` (KeyError naming the known ones)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no gate check {name!r} (checks: {[c.name for c in self.checks]})")

    def summary_lines(self) -> list[str]:
        """Human-readable verdict: the decision, then every check."""
        head = "PROMOTE" if self.passed else f"REFUSE ({len(self.failed)} failing check(s))"
        lines = [f"{head}: candidate {self.candidate} vs incumbent {self.incumbent} "
                 f"on {self.n_labeled} labeled of {self.n_rows} logged rows"]
        lines += [f"  {c.describe()}" for c in self.checks]
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-stable dict (``schema_version`` 1; non-finite numbers as None)."""
        from router_rl.registry.files import json_clean

        return json_clean(
            {
                "schema_version": GATE_SCHEMA_VERSION,
                "passed": self.passed,
                "candidate": self.candidate,
                "incumbent": self.incumbent,
                "n_rows": self.n_rows,
                "n_labeled": self.n_labeled,
                "reasons": self.reasons,
                "checks": [c.to_dict() for c in self.checks],
                "estimates": self.estimates,
                "diagnostics": self.diagnostics,
                "gate": self.config.to_dict(),
                "warnings": list(self.warnings),
            }
        )


def _name_of(policy: RoutingPolicy) -> str:
    return str(policy.metadata.get("registry_version") or policy.version)


def _estimates(metrics: Mapping[str, Any], key: str = "estimates") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mname, mr in metrics.items():
        block = getattr(mr, key)
        if block is not None:
            out[mname] = {lab: e.to_dict() for lab, e in block.items()}
    return out


def _quality_ratios(
    data: LoggedData,
    cands: Mapping[str, np.ndarray],
    gate: GateConfig,
) -> dict[str, dict[str, Any]]:
    """Reference choice and the paired bootstrap of candidate / reference quality (gate estimator).

    One column matrix (every candidate and every single-model policy) resampled by one
    :func:`bootstrap_column_sums` call seeded like :func:`router_rl.ope.logged.evaluate_logged`
    (``[seed, 17]``, the same labeled rows): the same resamples as the report's quality metric.
    """
    from router_rl.ope.bootstrap import bootstrap_column_sums, percentile_interval
    from router_rl.ope.estimators import LoggedFeedback, make_estimator
    from router_rl.ope.logged import fit_metric

    k = len(data.models)
    reference = gate.reference
    if reference is not None and reference not in data.models:
        raise GateError(f"reference: model {reference!r} is not in the log's action set {list(data.models)}")
    est = make_estimator("switch_dr", tau=gate.tau) if gate.estimator == "switch_dr" else make_estimator(gate.estimator)
    q_all = np.asarray(data.quality, dtype=np.float64)
    keep = np.isfinite(q_all)
    m = int(keep.sum())
    q_hat = None
    if gate.estimator in ("dm", "dr", "switch_dr"):  # the same fit as evaluate_log's quality metric (seed + 0)
        md = fit_metric("quality", np.asarray(data.X, dtype=np.float64), data.actions, q_all, k, folds=gate.folds,
                        kind=gate.reward_model, params=gate.reward_model_params, seed=gate.seed)
        assert md.reward_hat is not None
        q_hat = np.asarray(md.reward_hat)[keep]
    a, p = data.actions[keep], data.propensities[keep]

    def cols(target: np.ndarray) -> np.ndarray:
        fb = LoggedFeedback.from_arrays(rewards=q_all[keep], actions=a, propensities=p, target=target, reward_hat=q_hat)
        return np.asarray(est.columns(fb), dtype=np.float64)

    names = list(cands)
    blocks = [cols(cands[nm][keep]) for nm in names] + [cols(np.tile(np.eye(k)[j], (m, 1))) for j in range(k)]
    width = blocks[0].shape[1]
    allc = np.concatenate(blocks, axis=1)
    sums = allc.sum(axis=0)
    boot = bootstrap_column_sums(allc, gate.n_boot, np.random.default_rng([gate.seed, 17]))

    def val(i: int) -> tuple[float, np.ndarray]:
        sl = slice(i * width, (i + 1) * width)
        return float(est.combine(sums[sl], m)), np.asarray(est.combine(boot[:, sl], m), dtype=np.float64)

    off = len(names)
    per_model = {data.models[j]: val(off + j)[0] for j in range(k)}
    if reference is None:
        ref = max(data.models, key=lambda mm: (per_model[mm], -data.models.index(mm)))
        source = "best_estimated_quality_on_log"
    else:
        ref, source = reference, "gate.reference"
    qr, qr_b = val(off + data.models.index(ref))
    qr_lo, qr_hi = percentile_interval(qr_b, gate.alpha)
    ref_block = {
        "model": ref,
        "source": source,
        "estimator": est.label,
        "quality": {"value": qr, "lower": float(qr_lo), "upper": float(qr_hi)},
        "per_model_quality": per_model,
    }
    out: dict[str, dict[str, Any]] = {}
    for i, nm in enumerate(names):
        qc, qc_b = val(i)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_b = np.where(qr_b > 0, qc_b / qr_b, np.nan)
        ok = qr > 0 and bool(np.isfinite(ratio_b).any())
        lo, hi = percentile_interval(ratio_b, gate.alpha) if ok else (np.nan, np.nan)
        out[nm] = {
            "reference": ref_block,
            "quality_ratio": {
                "estimator": est.label,
                "candidate_quality": qc,
                "reference_quality": qr,
                "value": qc / qr if qr > 0 else None,
                "lower": float(lo) if ok else None,
                "upper": float(hi) if ok else None,
                "n": m,
            },
        }
    return out


def evaluate_gate(
    candidate: RoutingPolicy,
    incumbent: RoutingPolicy | str,
    logged: LoggedData,
    gate: GateConfig | None = None,
    *,
    groups: np.ndarray | None = None,
    group_by: Sequence[str] = (),
    log_path: str | None = None,
) -> GateVerdict:
    """Judge ``candidate`` against ``incumbent`` on a joined log (module docstring).

    Args:
        candidate: The candidate policy (fitted, on the log's encoder and models).
        incumbent: The running policy, or ``"logged"`` (the logging policy: its value is the
            on-policy mean of the logged rewards).
        logged: The joined log (:func:`router_rl.logs.data.load_logged`).
        gate: Thresholds and OPE settings (default :class:`GateConfig`).
        groups, group_by: "Similar tasks" keys of the support check
            (:func:`router_rl.eval.logged.group_keys`).
        log_path: Recorded in the OPE report.

    Raises:
        GateError: a policy that does not fit the log (encoder, models, features), an unknown
            reference model, an incumbent string other than ``"logged"``.
    """
    name = _name_of(candidate)
    return evaluate_gates(
        {name: candidate}, incumbent, logged, gate, groups=groups, group_by=group_by, log_path=log_path
    )[name]


def evaluate_gates(
    candidates: Mapping[str, RoutingPolicy],
    incumbent: RoutingPolicy | str,
    logged: LoggedData,
    gate: GateConfig | None = None,
    *,
    groups: np.ndarray | None = None,
    group_by: Sequence[str] = (),
    log_path: str | None = None,
) -> dict[str, GateVerdict]:
    """:func:`evaluate_gate` for several candidates against one incumbent, with one OPE run.

    The reward models are fitted once and every candidate's paired difference uses the same
    resamples; each candidate gets its own verdict. Arguments as :func:`evaluate_gate`.

    Returns:
        ``name -> verdict`` in the order given.
    """
    from router_rl.eval.logged import LogOPEError, evaluate_log, target_distribution

    cfg = gate or GateConfig()
    if not candidates:
        raise GateError("candidates: expected at least one candidate policy")
    if isinstance(incumbent, str) and incumbent != LOGGED:
        raise GateError(f"incumbent: expected a RoutingPolicy or {LOGGED!r}, got {incumbent!r}")
    inc_name = LOGGED if isinstance(incumbent, str) else _name_of(incumbent)
    n_labeled = logged.n_labeled
    rows_check = _check("labeled_rows", float(n_labeled), ">=", float(cfg.min_rows), "rows with a quality label")
    if not rows_check.passed:
        return {
            name: GateVerdict(
                passed=False, checks=(rows_check,), estimates={}, diagnostics={}, candidate=name,
                incumbent=inc_name, n_rows=logged.n, n_labeled=n_labeled, config=cfg,
                warnings=(f"only {n_labeled} labeled rows (< min_rows {cfg.min_rows}): nothing estimated",),
            )
            for name in candidates
        }
    keys = {name: f"candidate:{i}" for i, name in enumerate(candidates)}
    policies: dict[str, RoutingPolicy] = {keys[name]: pol for name, pol in candidates.items()}
    if not isinstance(incumbent, str):
        policies["incumbent"] = incumbent
    try:
        dists = {name: target_distribution(pol, logged, name=name) for name, pol in candidates.items()}
        if not isinstance(incumbent, str):  # a clear message naming the incumbent, before any fitting
            target_distribution(incumbent, logged, name=f"incumbent {inc_name}")
        rep = evaluate_log(
            logged,
            policies,
            config=cfg.ope_config(incumbent=LOGGED if isinstance(incumbent, str) else "incumbent"),
            groups=groups,
            group_by=group_by,
            sources={**{keys[n]: n for n in candidates}, "incumbent": inc_name},
            log_path=log_path,
        )
    except LogOPEError as e:
        raise GateError(str(e)) from e
    ratios = _quality_ratios(logged, dists, cfg)
    ev = rep.evaluation
    ires = ev.incumbent_result if isinstance(incumbent, str) else ev.policies["incumbent"]
    assert ires is not None
    lab = next(lb for lb in ev.estimators if lb.split("(")[0] == cfg.estimator)
    pct = f"{100 * cfg.confidence:g}%"
    inc_checks: list[GateCheck] = []
    inc_diag: dict[str, Any] | None = None
    if not isinstance(incumbent, str):
        iw, isup = ires.weights, ires.support
        assert iw is not None and isup is not None
        inc_checks = [
            _check("incumbent_ess", iw.ess, ">=", cfg.min_ess, "the incumbent's estimate enters the difference"),
            _check("incumbent_unsupported_mass", isup.unsupported_mass, "<=", cfg.max_unsupported_mass),
        ]
        inc_diag = {"weights": iw.to_dict(), "support": isup.to_dict()}
    out: dict[str, GateVerdict] = {}
    for name in candidates:
        cres = ev.policies[keys[name]]
        qr = ratios[name]
        util = cres.metrics["utility"]
        assert util.difference is not None
        gain = util.difference[lab]
        local = cres.metrics["local_share"].estimates["exact"].value
        w, s = cres.weights, cres.support
        assert w is not None and s is not None
        checks = [
            rows_check,
            _check("utility_gain_lower", gain.lower, ">", cfg.min_utility_gain,
                   f"{lab} {pct} lower bound of utility(candidate) - utility({inc_name}), value {gain.value:.4g}"),
            _check("quality_ratio_lower", qr["quality_ratio"]["lower"], ">=", cfg.quality_floor,
                   f"{lab} {pct} lower bound of quality / quality of {qr['reference']['model']}, "
                   f"value {_fmt(qr['quality_ratio']['value'])}"),
            _check("local_share", local, ">=", cfg.local_target, "exact, from the candidate's distribution"),
            _check("ess", w.ess, ">=", cfg.min_ess, "Kish effective sample size of the candidate's weights"),
            _check("ess_ratio", w.ess_ratio, ">=", cfg.min_ess_ratio),
            _check("max_weight", w.max_weight, "<=", cfg.max_weight),
            _check("unsupported_mass", s.unsupported_mass, "<=", cfg.max_unsupported_mass,
                   f"mass on models with logging propensity < {cfg.support_threshold:g}"),
            *inc_checks,
        ]
        diagnostics: dict[str, Any] = {"candidate": {"weights": w.to_dict(), "support": s.to_dict()}}
        if inc_diag is not None:
            diagnostics["incumbent"] = inc_diag
        estimates = {
            "estimator": lab,
            "confidence": cfg.confidence,
            "n_bootstrap": cfg.n_boot,
            "utility": {"definition": "quality - lam * cost_usd / cost_ref_usd", "lam": cfg.lam,
                        "cost_ref_usd": rep.cost_ref_usd, "cost_ref_source": rep.cost_ref_source},
            "candidate": _estimates(cres.metrics),
            "incumbent": _estimates(ires.metrics),
            "difference": _estimates(cres.metrics, "difference"),
            **qr,
        }
        mine = [wn for wn in ev.warnings if not wn.startswith("candidate:") or wn.startswith(f"{keys[name]}:")]
        out[name] = GateVerdict(
            passed=all(c.passed is not False for c in checks),
            checks=tuple(checks),
            estimates=estimates,
            diagnostics=diagnostics,
            candidate=name,
            incumbent=inc_name,
            n_rows=logged.n,
            n_labeled=n_labeled,
            config=cfg,
            warnings=tuple(wn.replace(f"{keys[name]}:", f"{name}:", 1) for wn in mine),
            report=rep,
        )
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"

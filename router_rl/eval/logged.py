"""Off-policy evaluation on the router's own logs: policy artifacts + :class:`LoggedData` -> arrays -> OPE.

The glue between :mod:`router_rl.policies` / :mod:`router_rl.logs` and :mod:`router_rl.ope.logged`
(which only sees arrays):

1. each target policy's action distribution on the logged features, in the log's action order
   (:func:`target_distribution`: the encoder fingerprint must match the log's, the policy's models
   must be models the log knows; a policy over a subset of them puts 0 on the others);
2. one reward vector per metric: ``quality`` (NaN where no label has arrived: excluded, counted),
   ``cost_usd`` and the ``utility`` ``quality - lam * cost_usd / cost_ref_usd`` (the reward of
   :class:`router_rl.envs.spec.RewardSpec` with ``cost_weight = lam``; ``cost_ref_usd`` "auto" is
   the mean logged cost of the most expensive model, the logs' analogue of the environments'
   "mean cost of the most expensive model"). Rewards are credited to ``chosen_model`` with its
   propensity, fallbacks included (docs/traces.md, *Logged feedback*);
3. a reward model per estimated metric, cross-fitted on the log
   (:func:`router_rl.ope.logged.fit_metric`), recorded in the report;
4. ``local_share`` computed exactly from each distribution and the models' locations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from router_rl.core.config import NonNegativeFloat, PositiveFloat, StrictConfig, as_tuple
from router_rl.ope.estimators import DEFAULT_TAU_GRID, SwitchDR, default_estimators
from router_rl.ope.logged import LOGGED, LoggedEvaluation, MetricData, evaluate_logged, fit_metric

if TYPE_CHECKING:
    from router_rl.logs.data import LoggedData
    from router_rl.policies.base import RoutingPolicy

#: Schema version of :meth:`LogOPEReport.to_dict` (bump on breaking field changes).
LOG_OPE_SCHEMA_VERSION = 1
#: Metrics of a report, in order (``local_share`` is exact, the others estimated).
METRICS: tuple[str, ...] = ("quality", "cost_usd", "local_share", "utility")
#: Registered policies that need no training, so they can be built from the log alone.
LOG_ONLY_POLICIES: tuple[str, ...] = ("random", "single")
#: Columns that define "similar tasks" for the support check, when the log has them.
GROUP_COLUMNS: tuple[str, ...] = ("category", "complexity")


#: Known range of the quality label (feedback is validated to [0, 1]): the betting interval's scale.
#: Cost and utility have no known range: their betting intervals use the observed one.
QUALITY_RANGE = (0.0, 1.0)


class LogOPEError(ValueError):
    """A policy or setting cannot be evaluated on this log (names the policy / setting)."""


class LogOPEConfig(StrictConfig):
    """Settings of :func:`evaluate_log`.

    Attributes:
        n_bootstrap: Bootstrap resamples (shared by every policy of a metric: paired).
        alpha: Interval level (0.05 = 95%).
        seed: Seed of the folds, the reward models and the bootstrap.
        folds: Cross-fitting folds of the reward models.
        reward_model: ``lightgbm`` (default) or ``ridge`` (only when chosen).
        reward_model_params: Overrides of the reward model's parameters
            (:data:`router_rl.ope.reward_model.DEFAULT_LGBM_PARAMS`, e.g. ``pca_components``).
        lam: Cost weight of the utility, in units of ``cost_ref_usd``.
        cost_ref_usd: USD scale of the utility's cost term (None: auto, see the module docstring).
        support_threshold: Logging propensity under which an action counts as unsupported.
        tau: Weight threshold of switch-DR.
        tuned_switch: Also report switch-DR with a data-driven threshold (``switch_dr(tuned)``,
            :class:`router_rl.ope.estimators.SwitchDR` ``tau_grid``).
        tau_grid: Candidate thresholds of the tuned switch-DR (None:
            :data:`router_rl.ope.estimators.DEFAULT_TAU_GRID`); only with ``tuned_switch``.
        interval: ``betting`` (finite-sample, valid at any ESS; default), ``studentized``
            (bootstrap-t) or ``percentile`` intervals (docs/evaluation.md).
        bias_allowance: Widen DM's and switch-DR's bootstrap intervals by their estimated bias
            (the importance-weighted held-out residuals they drop; docs/evaluation.md).
        incumbent: ``logged`` (the logging policy) or the name of one evaluated policy.
        metrics: Estimated metrics to report (subset of ``quality``, ``cost_usd``, ``utility``;
            ``local_share`` is always reported, exactly). Fewer metrics, fewer reward models.
    """

    n_bootstrap: Annotated[int, Field(ge=10)] = 1000
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    seed: int = 0
    folds: Annotated[int, Field(ge=2)] = 5
    reward_model: Literal["lightgbm", "ridge"] = "lightgbm"
    reward_model_params: dict[str, Any] = Field(default_factory=dict)
    lam: NonNegativeFloat = 1.0
    cost_ref_usd: PositiveFloat | None = None
    support_threshold: Annotated[float, Field(ge=0, lt=1)] = 1e-3
    tau: NonNegativeFloat = 10.0
    tuned_switch: bool = False
    tau_grid: Annotated[tuple[Annotated[float, Field(ge=0)], ...], Field(min_length=1)] | None = None
    interval: Literal["betting", "studentized", "percentile"] = "betting"
    bias_allowance: bool = True
    incumbent: str = LOGGED
    metrics: Annotated[tuple[Literal["quality", "cost_usd", "utility"], ...], BeforeValidator(as_tuple)] = (
        "quality",
        "cost_usd",
        "utility",
    )

    @model_validator(mode="after")
    def _grid_needs_tuning(self) -> LogOPEConfig:
        if self.tau_grid is not None and not self.tuned_switch:
            raise ValueError("tau_grid: given without tuned_switch (the grid is the tuned switch-DR's candidates)")
        return self


@dataclass(frozen=True)
class LogOPEReport:
    """Result of :func:`evaluate_log` (JSON layout in docs/evaluation.md, *OPE on the router's logs*).

    Attributes:
        evaluation: The array-level result (:class:`~router_rl.ope.logged.LoggedEvaluation`).
        config: The settings used.
        cost_ref_usd: The utility's cost scale actually used.
        cost_ref_source: ``"flag"`` or ``"auto:<model>"``.
        n_labeled: Rows with a quality label.
        n_fallback: Rows another model answered (credited to the chosen model all the same).
        locations: ``local`` / ``cloud`` per model.
        encoder_fingerprint: The log's encoder fingerprint.
        sources: ``policy name -> {spec, kind, version}``.
        log_path: Where the log was read from (None: in memory).
    """

    evaluation: LoggedEvaluation
    config: LogOPEConfig
    cost_ref_usd: float
    cost_ref_source: str
    n_labeled: int
    n_fallback: int
    locations: tuple[str, ...]
    encoder_fingerprint: str | None
    sources: dict[str, dict[str, Any]]
    log_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with stable field names (``schema_version`` 1)."""
        ev = self.evaluation
        return {
            "schema_version": LOG_OPE_SCHEMA_VERSION,
            "log": {
                "path": self.log_path,
                "n_rows": ev.n_rows,
                "n_labeled": self.n_labeled,
                "n_fallback": self.n_fallback,
                "models": list(ev.models),
                "locations": list(self.locations),
                "encoder_fingerprint": self.encoder_fingerprint,
            },
            "config": self.config.to_dict(),
            "utility": {
                "definition": "quality - lam * cost_usd / cost_ref_usd",
                "lam": self.config.lam,
                "cost_ref_usd": self.cost_ref_usd,
                "cost_ref_source": self.cost_ref_source,
            },
            "metrics": [m for m in METRICS if m in self.config.metrics or m == "local_share"],
            "estimators": list(ev.estimators),
            "reward_models": dict(ev.reward_models),
            "incumbent": {
                "name": ev.incumbent,
                "metrics": None
                if ev.incumbent_result is None
                else {k: v.to_dict() for k, v in ev.incumbent_result.metrics.items()},
            },
            "policies": {name: {**self.sources.get(name, {}), **pr.to_dict()} for name, pr in ev.policies.items()},
            "warnings": list(ev.warnings),
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented JSON (non-finite numbers written as null)."""
        from router_rl.eval.runner import _clean

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(_clean(self.to_dict()), indent=2))
        return p


def report_estimators(cfg: LogOPEConfig) -> list[Any]:
    """DM, IPS, SNIPS, DR, switch-DR (``cfg.tau``) and, with ``tuned_switch``, ``switch_dr(tuned)``."""
    ests = default_estimators(tau=cfg.tau)
    if cfg.tuned_switch:
        ests.append(SwitchDR(tau_grid=cfg.tau_grid or DEFAULT_TAU_GRID))
    return ests


# --- policies -> distributions -------------------------------------------------------------------
def target_distribution(policy: RoutingPolicy, data: LoggedData, *, name: str | None = None) -> np.ndarray:
    """The policy's ``(n, k)`` action distribution on the logged features, in the log's model order.

    Raises:
        LogOPEError: another encoder fingerprint, a model the log does not know, or a policy that
            cannot produce a distribution from features.
    """
    label = name or policy.version
    mine = policy.metadata.get("encoder_fingerprint")
    if mine is not None and data.encoder_fingerprint is not None and mine != data.encoder_fingerprint:
        raise LogOPEError(
            f"policy {label!r} was trained with feature encoder {mine}, the log's features come from encoder "
            f"{data.encoder_fingerprint}: re-train it on this encoder"
        )
    unknown = [m for m in policy.models if m not in data.models]
    if unknown:
        raise LogOPEError(
            f"policy {label!r} routes to model(s) {unknown} the log does not know (log models: {list(data.models)})"
        )
    nf = policy.n_features
    if nf is not None and nf != data.X.shape[1]:
        raise LogOPEError(f"policy {label!r} was trained on {nf} features, the log has {data.X.shape[1]}")
    try:
        pi = np.asarray(policy.action_distribution(np.asarray(data.X)), dtype=np.float64)
    except (NotImplementedError, RuntimeError, ValueError) as e:
        raise LogOPEError(f"policy {label!r}: cannot compute its distribution from the log's features ({e})") from e
    cols = [data.models.index(m) for m in policy.models]
    out = np.zeros((data.X.shape[0], len(data.models)))
    out[:, cols] = pi
    return out


def resolve_log_policy(spec: str, data: LoggedData) -> RoutingPolicy:
    """A policy from an artifact folder, or a registered policy that needs no training (``random``,
    ``single:model=M``), built over the log's models.

    Raises:
        LogOPEError: naming the spec: not an artifact, unknown name, a name that needs training.
    """
    from router_rl.eval.resolve import _parse_value
    from router_rl.policies.base import PolicyLoadError, RoutingPolicy, make_policy

    path = Path(spec)
    if path.is_dir():
        try:
            return RoutingPolicy.load(path)
        except PolicyLoadError as e:
            raise LogOPEError(f"policy {spec!r}: {e}") from e
    name, _, opts = spec.partition(":")
    if name not in LOG_ONLY_POLICIES:
        raise LogOPEError(
            f"policy {spec!r}: not an artifact folder, and only {list(LOG_ONLY_POLICIES)} can be built from a log "
            "alone (train other kinds with `router-rl policies train` and pass the artifact folder)"
        )
    kwargs: dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise LogOPEError(f"policy {spec!r}: option {item!r} is not KEY=VALUE")
        kwargs[key.strip()] = _parse_value(raw.strip())
    if name == "single" and "model" not in kwargs:
        raise LogOPEError(f"policy {spec!r}: give the model, e.g. single:model={data.models[0]}")
    try:
        policy = make_policy(name, data.models, **kwargs)
    except (KeyError, TypeError, ValueError) as e:
        raise LogOPEError(f"policy {spec!r}: {e}") from e
    policy.metadata.setdefault("version", f"{spec}@built-from-log")
    return policy


def resolve_log_policies(specs: Sequence[str], data: LoggedData) -> dict[str, RoutingPolicy]:
    """``name -> policy`` (folder name for artifacts, else the spec text)."""
    out: dict[str, RoutingPolicy] = {}
    for spec in specs:
        key = Path(spec).name if Path(spec).is_dir() else spec
        if key in out or key == LOGGED:
            raise LogOPEError(f"policy {spec!r} given twice (or named {LOGGED!r}, the logging policy)")
        out[key] = resolve_log_policy(spec, data)
    return out


# --- metrics -------------------------------------------------------------------------------------
def auto_cost_ref(data: LoggedData) -> tuple[float, str]:
    """Mean logged cost of the most expensive model (over the rows that chose it) and its name."""
    cost = np.asarray(data.cost_usd, dtype=np.float64)
    ok = np.isfinite(cost)
    best, model = 0.0, ""
    for j, m in enumerate(data.models):
        rows = ok & (data.actions == j)
        if rows.any():
            c = float(cost[rows].mean())
            if c > best:
                best, model = c, m
    if best <= 0:
        raise LogOPEError("cost_ref_usd: every logged cost is 0 or unknown; pass a positive cost scale")
    return best, model


def group_keys(
    table: Any, data: LoggedData, columns: Sequence[str] = GROUP_COLUMNS
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Per-row "similar tasks" key ``col=value,...`` from the table's ``columns`` (aligned by request id).

    Args:
        table: A polars frame with ``request_id`` and (some of) ``columns``; None = no groups.
        data: The loaded log (row order to align to).
        columns: Candidate columns.

    Returns:
        ``(keys, columns used)``; ``(None, ())`` when the table has none of the columns.
    """
    if table is None:
        return None, ()
    cols = tuple(c for c in columns if c in table.columns)
    if not cols:
        return None, ()
    sub = table.select(["request_id", *cols])
    pos = {r: i for i, r in enumerate(sub["request_id"].to_list())}
    idx = np.fromiter((pos[r] for r in data.request_ids.tolist()), dtype=np.int64, count=data.n)
    parts = [np.asarray([f"{c}={v}" for v in sub[c].to_list()], dtype=object)[idx] for c in cols]
    keys = parts[0]
    for p in parts[1:]:
        keys = np.asarray([f"{a},{b}" for a, b in zip(keys, p, strict=True)], dtype=object)
    return np.asarray(keys, dtype=str), cols


def evaluate_log(
    data: LoggedData,
    policies: Mapping[str, RoutingPolicy | np.ndarray],
    *,
    config: LogOPEConfig | None = None,
    groups: np.ndarray | None = None,
    group_by: Sequence[str] = (),
    sources: Mapping[str, str] | None = None,
    log_path: str | None = None,
) -> LogOPEReport:
    """Evaluate target policies on a log: every estimator, paired differences, support, for every metric.

    Args:
        data: The log (:class:`~router_rl.logs.data.LoggedData`).
        policies: ``name -> policy`` (or an ``(n, k)`` distribution already in the log's order).
        config: Settings.
        groups: Per-row "similar tasks" key for the support check (:func:`group_keys`).
        group_by: Columns the keys come from.
        sources: ``name -> spec`` (recorded in the report).
        log_path: Recorded in the report.

    Raises:
        LogOPEError: an incumbent that is neither ``logged`` nor an evaluated policy, a policy
            that does not fit the log (:func:`target_distribution`), no cost scale.
    """
    cfg = config or LogOPEConfig()
    if cfg.incumbent != LOGGED and cfg.incumbent not in policies:
        raise LogOPEError(
            f"incumbent: expected {LOGGED!r} or one of the evaluated policies {list(policies)}, got {cfg.incumbent!r}"
        )
    targets: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, pol in policies.items():
        if isinstance(pol, np.ndarray):
            targets[name] = pol
            info[name] = {"spec": (sources or {}).get(name, name), "kind": "distribution", "version": None}
        else:
            targets[name] = target_distribution(pol, data, name=name)
            info[name] = {"spec": (sources or {}).get(name, name), "kind": pol.kind, "version": pol.version}
    if cfg.cost_ref_usd is not None:
        cref, csrc = float(cfg.cost_ref_usd), "flag"
    else:
        cref, model = auto_cost_ref(data)
        csrc = f"auto:{model}"
    quality = np.asarray(data.quality, dtype=np.float64)
    cost = np.asarray(data.cost_usd, dtype=np.float64)
    utility = quality - cfg.lam * cost / cref
    X = np.asarray(data.X, dtype=np.float64)
    k = len(data.models)
    metrics: list[MetricData] = []
    rewards = {"quality": quality, "cost_usd": cost, "utility": utility}
    for i, mname in enumerate(("quality", "cost_usd", "utility")):
        if mname not in cfg.metrics:
            continue
        r = rewards[mname]
        if not np.isfinite(r).any():
            raise LogOPEError(f"{mname}: no logged row has a known value (no labels joined yet?)")
        metrics.append(
            fit_metric(
                mname,
                X,
                data.actions,
                r,
                k,
                folds=cfg.folds,
                kind=cfg.reward_model,
                params=cfg.reward_model_params,
                seed=cfg.seed + 7919 * i,
                reward_range=QUALITY_RANGE if mname == "quality" else None,
            )
        )
    local = np.asarray([loc == "local" for loc in data.locations], dtype=np.float64)
    ev = evaluate_logged(
        actions=data.actions,
        propensities=data.propensities,
        logging_probs=data.logging_probs,
        targets=targets,
        metrics=metrics,
        exact_metrics={"local_share": local},
        models=data.models,
        incumbent=cfg.incumbent,
        estimators=report_estimators(cfg),
        n_bootstrap=cfg.n_bootstrap,
        alpha=cfg.alpha,
        seed=cfg.seed,
        groups=groups,
        group_by=group_by,
        support_threshold=cfg.support_threshold,
        row_labels=[str(r) for r in data.request_ids.tolist()],
        interval=cfg.interval,
        bias_allowance=cfg.bias_allowance,
    )
    order = {m: i for i, m in enumerate(METRICS)}
    for pr in [*ev.policies.values(), *([ev.incumbent_result] if ev.incumbent_result else [])]:
        items = sorted(pr.metrics.items(), key=lambda kv: order.get(kv[0], len(order)))
        pr.metrics.clear()
        pr.metrics.update(items)
    return LogOPEReport(
        evaluation=ev,
        config=cfg,
        cost_ref_usd=cref,
        cost_ref_source=csrc,
        n_labeled=int(np.isfinite(quality).sum()),
        n_fallback=int(np.asarray(data.fallback, dtype=bool).sum()),
        locations=tuple(data.locations),
        encoder_fingerprint=data.encoder_fingerprint,
        sources=info,
        log_path=log_path,
    )

"""OPE over a partitioned joined log, one partition at a time: exact sums, merged (optionally on Ray).

Every estimator of :mod:`router_rl.ope.estimators` is a function of per-row column sums
(:meth:`~router_rl.ope.estimators.OffPolicyEstimator.columns` / ``combine``), so a log too large
for memory is evaluated exactly by summing the columns partition by partition and combining once.
The interval is the normal (delta-method) interval from the summed cross-products of the
columns, also exact under merging; the bootstrap intervals of ``router-rl ope`` need every row at
once and are not computed here.

* Partitions: the day / policy-version files of the joined log (:func:`router_rl.logs.partition.scan_table`),
  each loaded through :meth:`router_rl.logs.data.LoggedData.from_table` (the same checks as the flat loader).
* The target policy is a :class:`~router_rl.policies.base.RoutingPolicy` (its distribution on the
  logged features, :func:`router_rl.eval.logged.target_distribution`) or a function ``X -> (n, k)``.
* DR / DM need a reward model. Cross-fitting needs every row; here it is **held out** instead: a
  ridge reward model (:mod:`router_rl.ope.reward_model`, ``ridge``) is fitted on the rows of
  ``fit_days`` and those days are *not* evaluated (no row is predicted by a model it trained).
* Rows without a label (quality NaN) are excluded and counted, as in ``router-rl ope``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.logs.partition import DayRange, PartitionError, as_day, partition_files

if TYPE_CHECKING:
    from router_rl.logs.data import LoggedData
    from router_rl.policies.base import RoutingPolicy

Target = Callable[[np.ndarray], np.ndarray]
ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr")
_Z95 = 1.959963984540054


@dataclass
class ScaleEstimate:
    """One estimator's value over every evaluated partition, with a normal interval."""

    estimator: str
    value: float
    lower: float
    upper: float
    se: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class PartitionSums:
    """Per-estimator column sums and cross-products of one or more partitions (add them to merge)."""

    n: int = 0
    n_rows: int = 0
    n_unlabeled: int = 0
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    cross: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, other: PartitionSums) -> PartitionSums:
        """The sums of both (exact)."""
        out = PartitionSums(self.n + other.n, self.n_rows + other.n_rows, self.n_unlabeled + other.n_unlabeled)
        for k in dict.fromkeys([*self.sums, *other.sums]):
            out.sums[k] = np.asarray(self.sums.get(k, 0) + other.sums.get(k, 0))
            out.cross[k] = np.asarray(self.cross.get(k, 0) + other.cross.get(k, 0))
        return out


def _estimator(name: str) -> Any:
    from router_rl.ope.estimators import make_estimator

    return make_estimator(name)


def partition_sums(
    data: LoggedData,
    target: np.ndarray,
    *,
    reward_hat: np.ndarray | None,
    estimators: Sequence[str] = ESTIMATORS,
) -> PartitionSums:
    """Column sums (and cross-products) of each estimator on one partition's labeled rows."""
    from router_rl.ope.estimators import LoggedFeedback

    lab = data.labeled_mask
    out = PartitionSums(n=int(lab.sum()), n_rows=data.n, n_unlabeled=int((~lab).sum()))
    if not lab.any():
        return out
    fb = LoggedFeedback.from_arrays(
        rewards=data.quality[lab], actions=data.actions[lab], propensities=data.propensities[lab],
        target=target[lab], reward_hat=None if reward_hat is None else reward_hat[lab],
    )
    for name in estimators:
        if name in ("dm", "dr") and reward_hat is None:
            continue
        cols = _estimator(name).columns(fb)
        out.sums[name] = cols.sum(axis=0)
        out.cross[name] = cols.T @ cols
    return out


def combine(total: PartitionSums) -> dict[str, ScaleEstimate]:
    """Values and 95% normal intervals from merged sums (SNIPS: delta method)."""
    res: dict[str, ScaleEstimate] = {}
    n = total.n
    for name, s in total.sums.items():
        c = total.cross[name]
        value = float(_estimator(name).combine(s, n))
        if name == "snips":  # columns (w r, w): influence (w r - V w) / mean(w)
            mw = s[1] / n
            var = (c[0, 0] - 2 * value * c[0, 1] + value**2 * c[1, 1]) / n / mw**2 if mw > 0 else math.nan
        else:
            mean = s[0] / n
            var = (c[0, 0] / n - mean**2) * n / max(n - 1, 1)
        se = math.sqrt(max(var, 0.0) / n) if n else math.nan
        res[name] = ScaleEstimate(name, value, value - _Z95 * se, value + _Z95 * se, se, n)
    return res


def _distribution(target: RoutingPolicy | Target, data: LoggedData) -> np.ndarray:
    if callable(target) and not hasattr(target, "action_distribution"):
        pi = np.asarray(target(data.X), dtype=np.float64)
        if pi.shape != (data.n, data.k):
            raise PartitionError(f"target: expected an ({data.n}, {data.k}) distribution, got {pi.shape}")
        return pi
    from router_rl.eval.logged import target_distribution

    return target_distribution(target, data)  # type: ignore[arg-type]


@dataclass
class _Fit:
    X: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    k: int
    alpha: float

    def predict(self, X: np.ndarray) -> np.ndarray:
        from router_rl.ope.reward_model import _ridge_fold

        return _ridge_fold(self.X, self.actions, self.rewards, X.astype(np.float64), self.k, self.alpha)


def _load(root: str, files: Sequence[str], locations: Mapping[str, str] | Sequence[str] | None,
          models: Sequence[str] | None) -> LoggedData:
    import polars as pl

    from router_rl.logs.data import FROM_TABLE_COLUMNS, LoggedData

    cols = list(dict.fromkeys([*FROM_TABLE_COLUMNS, "action_locations", "strategy", "ts", "explored"]))
    df = pl.scan_parquet(list(files), hive_partitioning=False).select(cols).collect()
    return LoggedData.from_table(df, locations=locations, models=models, source=root)


def _eval_partition(root: str, files: Sequence[str], target: Any, fit: _Fit | None,
                    locations: Any, models: Sequence[str] | None, estimators: Sequence[str]) -> PartitionSums:
    data = _load(root, files, locations, models)
    pi = _distribution(target, data)
    q = fit.predict(data.X) if fit is not None else None
    return partition_sums(data, pi, reward_hat=q, estimators=estimators)


@dataclass
class ScaleOPEResult:
    """Result of :func:`evaluate_partitioned`."""

    estimates: dict[str, ScaleEstimate]
    n_rows: int
    n_labeled: int
    n_unlabeled: int
    partitions: int
    fit_days: list[str]
    fit_rows: int
    workers: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["estimates"] = {k: v.to_dict() for k, v in self.estimates.items()}
        return d


def evaluate_partitioned(
    root: str | Path,
    target: RoutingPolicy | Target,
    *,
    days: DayRange | None = None,
    policy_versions: Sequence[str] | None = None,
    fit_days: Sequence[str | date] | None = None,
    estimators: Sequence[str] = ESTIMATORS,
    locations: Mapping[str, str] | Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    ridge_alpha: float = 1.0,
    workers: int = 0,
) -> ScaleOPEResult:
    """Evaluate ``target`` on a partitioned joined log, one day / policy-version partition at a time.

    Args:
        root: Partitioned joined log (``router-rl logs join --partitioned``).
        target: A policy or ``X -> (n, k)`` distribution in the log's model order.
        days / policy_versions: The partitions to use (pruned by folder).
        fit_days: Days whose labeled rows fit the held-out reward model of DM / DR (not evaluated).
            Default: the first day of the range; ``[]``: no reward model (IPS / SNIPS only).
        estimators: Of ``ips``, ``snips``, ``dm``, ``dr``.
        locations / models: As :meth:`LoggedData.from_table`.
        ridge_alpha: Ridge penalty of the reward model.
        workers: 0 in process; ``>= 1`` partitions as Ray tasks on that many CPUs.

    Raises:
        PartitionError: no partition in range, or every one is a fit day; LoggedDataError: a
            partition that does not validate (named).
    """
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad:
        raise PartitionError(f"estimators: expected a subset of {list(ESTIMATORS)}, got {bad}")
    files = partition_files(root, "logged", days=days, policy_versions=policy_versions)
    if not files:
        raise PartitionError(f"{root}: no partition in the days / policy versions asked for")
    all_days = sorted({f.day for f in files})
    fdays = {as_day(d, what="fit_days") for d in fit_days} if fit_days is not None else {all_days[0]}
    groups: dict[tuple[date, str | None], list[str]] = {}
    for f in files:
        groups.setdefault((f.day, f.policy_version), []).append(str(f.path))
    fit: _Fit | None = None
    fit_rows = 0
    if fdays and any(e in ("dm", "dr") for e in estimators):
        fit_files = [p for (d, _), ps in groups.items() if d in fdays for p in ps]
        if not fit_files:
            raise PartitionError(f"fit_days: no partition on {sorted(str(d) for d in fdays)}")
        fd = _load(str(root), fit_files, locations, models).labeled()
        fit_rows = fd.n
        fit = _Fit(fd.X.astype(np.float64), fd.actions, fd.quality, fd.k, ridge_alpha)
        models = models or fd.models
    jobs = [ps for (d, _), ps in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
            if d not in fdays]
    if not jobs:
        raise PartitionError("fit_days: every partition in range is a fit day; nothing left to evaluate")
    est = [e for e in estimators if fit is not None or e not in ("dm", "dr")]
    if workers == 0:
        parts = [_eval_partition(str(root), ps, target, fit, locations, models, est) for ps in jobs]
    else:
        import ray

        from router_rl.logs.ray_pool import ensure_ray

        ensure_ray(workers)
        task = ray.remote(num_cpus=1)(_eval_partition)
        t_ref, f_ref = ray.put(target), ray.put(fit)
        parts = list(ray.get([task.remote(str(root), ps, t_ref, f_ref, locations, models, est) for ps in jobs]))
    total = PartitionSums()
    for p in parts:
        total = total.add(p)
    return ScaleOPEResult(
        estimates=combine(total), n_rows=total.n_rows, n_labeled=total.n, n_unlabeled=total.n_unlabeled,
        partitions=len(jobs), fit_days=sorted(d.isoformat() for d in fdays), fit_rows=fit_rows, workers=workers,
    )

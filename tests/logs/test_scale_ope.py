"""Partitioned OPE: merged per-partition sums equal the library's estimators on all rows; truth is covered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from router_rl.logs.data import load_logged
from router_rl.logs.partition import PartitionError, compact
from router_rl.logs.partition_join import join_partitioned
from router_rl.logs.scale_ope import evaluate_partitioned
from router_rl.logs.synthetic import SyntheticLog, logging_distribution, synthetic_log, write_parts
from router_rl.ope.estimators import LoggedFeedback, make_estimator
from router_rl.ope.reward_model import _ridge_fold


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticLog]:
    tmp = tmp_path_factory.mktemp("sope")
    log = synthetic_log(12000, days=4, seed=41, epsilon=0.2)
    write_parts(log.decisions, tmp / "decisions", rows_per_part=2000)
    write_parts(log.feedback, tmp / "feedback", rows_per_part=2000)
    compact(tmp / "decisions", tmp / "p/decisions")
    compact(tmp / "feedback", tmp / "p/feedback", table="feedback")
    join_partitioned(tmp / "p/decisions", tmp / "p/feedback", tmp / "logged")
    return tmp / "logged", log


def _target(seed: int, shape: tuple[int, int]) -> object:
    w = np.random.default_rng(seed).normal(0.0, 1.0, shape)
    return lambda X: logging_distribution(X, w, 0.2)


def test_merged_partition_sums_equal_the_estimators_on_all_rows(logged: tuple[Path, SyntheticLog]) -> None:
    root, log = logged
    tgt = _target(7, log.W.shape)
    res = evaluate_partitioned(root, tgt, locations=log.locations)
    assert res.fit_days == ["2026-11-01"] and res.partitions >= 3
    fit = load_logged(root, days=("2026-11-01", "2026-11-01"), locations=log.locations).labeled()
    ev = load_logged(root, days=("2026-11-02", None), locations=log.locations)
    assert res.n_rows == ev.n and res.n_labeled == ev.n_labeled and res.n_unlabeled == ev.n - ev.n_labeled
    lab = ev.labeled()
    q = _ridge_fold(fit.X.astype(np.float64), fit.actions, fit.quality, lab.X.astype(np.float64), lab.k, 1.0)
    data = LoggedFeedback.from_arrays(rewards=lab.quality, actions=lab.actions, propensities=lab.propensities,
                                      target=tgt(lab.X), reward_hat=q)
    for name in ("ips", "snips", "dm", "dr"):
        est = make_estimator(name)
        want = est.estimate_data(data)
        assert res.estimates[name].value == pytest.approx(want, rel=1e-10, abs=1e-12), name
        infl = est.influence(data, est.columns(data))
        se = float(np.std(infl, ddof=1 if name != "snips" else 0) / np.sqrt(lab.n))
        assert res.estimates[name].se == pytest.approx(se, rel=1e-6), name


def test_intervals_cover_the_true_value_of_two_targets(logged: tuple[Path, SyntheticLog]) -> None:
    root, log = logged
    day = log.decisions["ts"].dt.date().cast(pl.Utf8).to_numpy()
    rows = day != "2026-11-01"
    for seed in (3, 8):
        tgt = _target(seed, log.W.shape)
        truth = float((tgt(log.X[rows]) * log.mu[rows]).sum(axis=1).mean())
        res = evaluate_partitioned(root, tgt, locations=log.locations, estimators=("ips", "snips", "dr"))
        for name, e in res.estimates.items():
            assert e.lower <= truth <= e.upper, (seed, name, e, truth)
        assert res.estimates["dr"].se < res.estimates["ips"].se  # the reward model pays for itself


def test_filters_fit_days_and_errors(logged: tuple[Path, SyntheticLog]) -> None:
    root, log = logged
    tgt = _target(1, log.W.shape)
    only = evaluate_partitioned(root, tgt, locations=log.locations, policy_versions=["v0002"], fit_days=[])
    assert set(only.estimates) == {"ips", "snips"} and only.fit_rows == 0
    assert only.n_rows == int((log.decisions["policy_version"] == "v0002").sum())
    with pytest.raises(PartitionError, match="every partition in range is a fit day"):
        evaluate_partitioned(root, tgt, locations=log.locations, days=("2026-11-01", "2026-11-01"))
    with pytest.raises(PartitionError, match="estimators: expected a subset"):
        evaluate_partitioned(root, tgt, locations=log.locations, estimators=("magic",))


@pytest.mark.ray
@pytest.mark.slow
def test_ray_workers_give_the_same_numbers(logged: tuple[Path, SyntheticLog], tmp_path: Path,
                                          ray_joined: Any) -> None:
    root, log = logged
    tgt = _target(7, log.W.shape)
    local = evaluate_partitioned(root, tgt, locations=log.locations)
    on_ray = evaluate_partitioned(root, tgt, locations=log.locations, workers=2)
    dec_root = root.parent / "p" / "decisions"
    rep = join_partitioned(dec_root, root.parent / "p" / "feedback", tmp_path / "logged", workers=2)
    for name, e in local.estimates.items():
        assert on_ray.estimates[name].value == pytest.approx(e.value, rel=1e-12)
    assert rep.workers == 2 and rep.total.rows == 12000
    a = pl.read_parquet(sorted((tmp_path / "logged").rglob("part-*.parquet"))).sort("request_id")
    b = pl.read_parquet(sorted(root.rglob("part-*.parquet"))).sort("request_id")
    assert a.equals(b)

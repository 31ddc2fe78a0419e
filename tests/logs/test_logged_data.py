"""LoggedData: validated arrays, from_table (one action set, re-indexing, refusals), labeled()."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from router_rl.logs.data import LoggedData, LoggedDataError, load_logged
from router_rl.logs.simulate import LogSimulationConfig, simulate_log
from router_rl.policies.exploration import ExplorationConfig
from router_rl.traces.traceset import TraceSet


@pytest.fixture(scope="module")
def log(fleet: TraceSet, lgbm_policy: Any) -> Any:
    cfg = LogSimulationConfig(fallback_rate=0.2, no_answer_rate=0.2, feedback_rate=0.7)
    return simulate_log(fleet, lgbm_policy, n=800, exploration=ExplorationConfig(epsilon=0.2), split="test",
                        seed=2, config=cfg)


def _table(log: Any) -> pl.DataFrame:
    fb = log.feedback.select("request_id", pl.col("quality").alias("label"))
    return log.decisions.join(fb, on="request_id", how="left", maintain_order="left").with_columns(
        pl.col("label").alias("quality")
    ).drop("label")


def test_arrays_match_the_simulation(log: Any) -> None:
    d = log.logged()
    tr = log.truth
    assert d.n == 800 and d.k == 7 and d.models == tr.models and d.locations == tr.locations
    assert d.X.dtype == np.float32 and d.X.shape[0] == 800
    ar = np.arange(d.n)
    np.testing.assert_array_equal(d.propensities, d.logging_probs[ar, d.actions])
    lab = d.labeled_mask
    np.testing.assert_array_equal(d.quality[lab], tr.quality[ar, d.actions][lab])
    # unlabeled = no feedback sent; a request nobody answered carries quality 0 (labeled)
    none = tr.no_answer[ar, d.actions]
    assert (d.quality[none] == 0).all() and (d.outcome_actions[none] == -1).all()
    assert d.n_labeled == log.feedback.height + int(none.sum())
    fb = tr.failed[ar, d.actions] & ~none
    np.testing.assert_array_equal(d.fallback, fb)
    assert (d.outcome_actions[fb] == d.model_index("rnj-1:8b")).all()
    np.testing.assert_array_equal(d.outcome_actions[~fb & ~none], d.actions[~fb & ~none])
    assert d.encoder_fingerprint == log.meta["encoder_fingerprint"]
    assert d.is_local.tolist() == [loc == "local" for loc in tr.locations]
    sub = d.labeled()
    assert sub.n == d.n_labeled and not np.isnan(sub.quality).any()
    assert sub.request_ids.tolist() == d.request_ids[lab].tolist()


def test_rows_in_another_model_order_are_reindexed(log: Any) -> None:
    df = _table(log)
    models = list(log.truth.models)
    rev = models[::-1]
    # rewrite rows 1, 5, 9 with the reversed action order (same distribution)
    rows = {1, 5, 9}
    am = [rev if i in rows else m for i, m in enumerate(df["action_models"].to_list())]
    ap = [p[::-1] if i in rows else p for i, p in enumerate(df["action_probs"].to_list())]
    df2 = df.with_columns(pl.Series("action_models", am, dtype=pl.List(pl.Utf8)),
                          pl.Series("action_probs", ap, dtype=pl.List(pl.Float64)))
    a = LoggedData.from_table(df, catalog=log.catalog)
    b = LoggedData.from_table(df2, catalog=log.catalog)
    np.testing.assert_array_equal(a.logging_probs, b.logging_probs)
    np.testing.assert_array_equal(a.actions, b.actions)
    # an explicit order re-indexes everything
    c = LoggedData.from_table(df, catalog=log.catalog, models=rev)
    assert c.models == tuple(rev)
    np.testing.assert_array_equal(c.logging_probs, a.logging_probs[:, ::-1])
    assert c.locations == a.locations[::-1]


def test_another_action_set_is_refused_with_counts(log: Any) -> None:
    df = _table(log)
    models = list(log.truth.models)
    small = models[:3]
    am = [small if i in (4, 7) else m for i, m in enumerate(df["action_models"].to_list())]
    ap = [[0.2, 0.3, 0.5] if i in (4, 7) else p for i, p in enumerate(df["action_probs"].to_list())]
    ch = [small[0] if i in (4, 7) else c for i, c in enumerate(df["chosen_model"].to_list())]
    pr = [0.2 if i in (4, 7) else p for i, p in enumerate(df["propensity"].to_list())]
    df2 = df.with_columns(pl.Series("action_models", am, dtype=pl.List(pl.Utf8)),
                          pl.Series("action_probs", ap, dtype=pl.List(pl.Float64)),
                          pl.Series("chosen_model", ch), pl.Series("propensity", pr))
    with pytest.raises(LoggedDataError, match=r"'action_models'.*rows 4, 7 \(2 rows\)"):
        LoggedData.from_table(df2, catalog=log.catalog)


def test_refusals_name_column_and_rows(log: Any) -> None:
    df = _table(log)
    with pytest.raises(LoggedDataError, match="column 'features': row 3 "):
        LoggedData.from_table(df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("features")).alias("features")),
            catalog=log.catalog)
    with pytest.raises(LoggedDataError, match=r"column 'strategy': row 0 .*rejected"):
        LoggedData.from_table(df.with_columns(
            pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("rejected")).otherwise(pl.col("strategy"))
            .alias("strategy")), catalog=log.catalog)
    two = df.with_columns(pl.when(pl.int_range(pl.len()) < 10).then(pl.lit("0000aaaa0000aaaa"))
                          .otherwise(pl.col("encoder_fingerprint")).alias("encoder_fingerprint"))
    with pytest.raises(LoggedDataError, match=r"several encoders .*0000aaaa0000aaaa: 10"):
        LoggedData.from_table(two, catalog=log.catalog)
    fp = log.meta["encoder_fingerprint"]
    with pytest.raises(LoggedDataError, match=r"rows 0, 1, 2, 3, 4, \.\.\. \(10 rows\): expected " + fp):
        LoggedData.from_table(two, catalog=log.catalog, require_fingerprint=fp)
    with pytest.raises(LoggedDataError, match="require_fingerprint"):
        LoggedData.from_table(df, catalog=log.catalog, require_fingerprint="ffffffffffffffff")
    with pytest.raises(LoggedDataError, match="column 'action_locations'"):
        LoggedData.from_table(df)  # no locations anywhere
    with pytest.raises(LoggedDataError, match=r"column\(s\) \['quality'\] missing"):
        LoggedData.from_table(df.drop("quality"), catalog=log.catalog)
    bad_q = df.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(1.5).otherwise(pl.col("quality"))
                            .alias("quality"))
    with pytest.raises(LoggedDataError, match=r"LoggedData.quality: row 2 "):
        LoggedData.from_table(bad_q, catalog=log.catalog)


def test_constructor_checks_every_array(log: Any) -> None:
    d = log.logged()
    kw = {f: getattr(d, f) for f in ("models", "locations", "X", "actions", "propensities", "logging_probs",
                                      "quality", "cost_usd", "latency_s", "outcome_actions", "fallback",
                                      "request_ids")}
    LoggedData(**kw)
    with pytest.raises(LoggedDataError, match=r"propensities: row 0 .*differ"):
        LoggedData(**{**kw, "propensities": np.r_[d.propensities[0] * 0.5, d.propensities[1:]]})
    with pytest.raises(LoggedDataError, match=r"actions: .*\[0, 7\)"):
        LoggedData(**{**kw, "actions": np.r_[7, d.actions[1:]]})
    with pytest.raises(LoggedDataError, match="logging_probs: row 1 "):
        p = d.logging_probs.copy()
        p[1, 0] += 0.1
        LoggedData(**{**kw, "logging_probs": p})
    with pytest.raises(LoggedDataError, match=r"request_ids: .*repeat"):
        LoggedData(**{**kw, "request_ids": np.r_[d.request_ids[1:2], d.request_ids[1:]]})
    with pytest.raises(LoggedDataError, match="locations"):
        LoggedData(**{**kw, "locations": ("local",) * 6 + ("edge",)})
    with pytest.raises(LoggedDataError, match="X: expected a 2-D"):
        LoggedData(**{**kw, "X": d.X[:, 0]})


def test_load_logged_checks_the_schema(tmp_path: Any, log: Any) -> None:
    df = _table(log)
    p = tmp_path / "x.parquet"
    df.write_parquet(p)
    with pytest.raises(LoggedDataError, match=f"{p.name}: column 'action_locations' missing"):
        load_logged(p, catalog=log.catalog)
    with pytest.raises(FileNotFoundError):
        load_logged(tmp_path / "none.parquet")

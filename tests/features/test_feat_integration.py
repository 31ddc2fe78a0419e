"""The encoder, complexity heuristic and privacy detector on the simulated fleet and on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router_rl.features import EncoderConfig, FeatureEncoder, complexity_scores, is_sensitive


@pytest.fixture(scope="module")
def sim_tasks() -> pl.DataFrame:
    from router_rl.traces.simulate import simulate_fleet

    return simulate_fleet(1500, seed=11).matrix().tasks


def test_default_encoder_on_simulated_fleet(sim_tasks: pl.DataFrame) -> None:
    train = sim_tasks.filter(pl.col("split") == "train")
    enc = FeatureEncoder().fit(train)
    X = enc.transform(sim_tasks)
    assert X.shape == (sim_tasks.height, enc.dim) and np.isfinite(X).all()
    np.testing.assert_allclose(np.linalg.norm(X[:, :256], axis=1), 1.0, rtol=1e-5)
    sample = sim_tasks.head(200)
    np.testing.assert_array_equal(enc.transform(sample), enc.transform_records(sample.to_dicts()))


def test_privacy_detector_matches_simulated_secrets(sim_tasks: pl.DataFrame) -> None:
    truth = sim_tasks["privacy"].to_numpy()
    found = np.array([is_sensitive(p) for p in sim_tasks["prompt"].to_list()])
    assert truth.sum() > 10
    assert (found & truth).sum() / truth.sum() >= 0.95  # recall
    assert (found & ~truth).sum() <= 0.01 * (~truth).sum()  # false positives


def test_complexity_heuristic_tracks_simulated_complexity(sim_tasks: pl.DataFrame) -> None:
    order = {"SIMPLE": 0, "MODERATE": 1, "COMPLEX": 2, "VERY_COMPLEX": 3}
    sim = np.array([order[c] for c in sim_tasks["complexity"].to_list()])
    _, levels = complexity_scores(
        sim_tasks["prompt"].to_list(),
        max_tokens=sim_tasks["max_tokens"].to_list(),
        n_messages=sim_tasks["n_messages"].to_list(),
    )
    ours = np.array([lv.rank for lv in levels])
    assert np.corrcoef(sim, ours)[0, 1] > 0.7
    means = [ours[sim == k].mean() for k in range(4)]
    assert means == sorted(means)


@pytest.mark.data
@pytest.mark.slow
def test_real_routerbench_prompts(datasets_root: Path) -> None:
    from router_rl.traces.importers import import_traces

    tasks = import_traces("routerbench", datasets_root / "routerbench-subset-via-routerdc", drop_invalid=True)
    tasks_df = tasks.matrix().tasks
    prompts = tasks_df["prompt"].to_list()
    assert len(prompts) > 1000
    # benchmark questions hold no secrets: the detector must stay (almost) silent
    flagged = sum(is_sensitive(p) for p in prompts)
    assert flagged <= 0.005 * len(prompts), flagged
    enc = FeatureEncoder(EncoderConfig().restricted_to(tasks_df.columns)).fit(tasks_df)
    assert "agent_type" not in enc.config.categorical_columns
    X = enc.transform(tasks_df)
    assert np.isfinite(X).all()
    has_text = np.array([bool(p) for p in prompts])
    np.testing.assert_allclose(np.linalg.norm(X[has_text, :256], axis=1), 1.0, rtol=1e-5)

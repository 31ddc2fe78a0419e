"""experiments/target_feasibility.py: what predictive quality the RouterBench targets need."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def test_perfect_scores_reach_the_oracle_and_mixing_is_on_the_hull(load_script: Any) -> None:
    mod = load_script("experiments/target_feasibility.py")
    # model 0 = reference (always right, cost 1); model 1 = cheap (right on half, cost 0.1)
    quality = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    cost = np.tile([1.0, 0.1], (4, 1))
    exp_cost = np.array([1.0, 0.1])
    perfect = mod.cost_share_at_95(quality.copy(), quality, cost, exp_cost, 0)  # type: ignore[attr-defined]
    # oracle: cheap on the 2 it gets right, reference on the other 2 -> (0.1 + 1 + 0.1 + 1) / 4 = 0.55
    # at 95% quality: the hull between (0.1, 0.5) and (0.55, 1.0) -> 0.1 + 0.45 * 0.9 = 0.505
    assert perfect == pytest.approx(0.505)
    blind = mod.cost_share_at_95(np.tile([0.6, 0.5], (4, 1)), quality, cost, exp_cost, 0)  # type: ignore[attr-defined]
    # no information: only mixing the two single models, (0.1, 0.5) -> (1, 1): 0.1 + 0.9 * 0.9 = 0.91
    assert blind == pytest.approx(0.91)


def test_within_model_auc_and_the_needed_auc(load_script: Any) -> None:
    mod = load_script("experiments/target_feasibility.py")
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    assert mod.within_model_auc(y, y) == 1.0  # type: ignore[attr-defined]
    assert mod.within_model_auc(-y, y) == 0.0  # type: ignore[attr-defined]
    curve = [(1.0, 0.02), (0.8, 0.04), (0.7, 0.10), (0.6, None)]
    need = mod.auc_needed  # type: ignore[attr-defined]
    assert need(curve, 0.07) == pytest.approx(0.75)  # between 0.8 (4%) and 0.7 (10%)
    assert need(curve, 0.2) == pytest.approx(0.7)  # the next level never reaches 95%
    assert need(curve, 0.01) is None
    assert need([(0.5, 0.03), (0.9, 0.01)], 0.05) == 0.5


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_on_winogrande(load_script: Any, datasets_root: Path, tmp_path: Path) -> None:
    mod = load_script("experiments/target_feasibility.py")
    out = mod.main(["--quick", "--out-dir", str(tmp_path)])  # type: ignore[attr-defined]
    data = json.loads((tmp_path / "target_feasibility.json").read_text())
    (row,) = data["rows"]
    assert row["task"] == "winogrande" and row["reference_model"] == "gpt-4-1106-preview"
    curve = [p["cost_share"] for p in row["noisy_oracle"]]
    assert curve[0] == pytest.approx(row["oracle_cost_share"]) and curve[0] < 0.05
    finite = [c for c in curve if c is not None]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(finite))  # more noise never helps
    assert 0.5 < row["auc_needed"] < 0.9 and 0.4 < row["lgbm_auc"] < 0.6
    vote = out["vote_cascade"]["winogrande"]
    assert vote["train_quality_ratio"] >= 0.95 and 0 < vote["train_cost_share"] < 1
    assert "| winogrande | <= 35% |" in (tmp_path / "target_feasibility.md").read_text()

"""experiments/cost_model.py: per-task cost prediction vs means, measured with the evaluation code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_prediction_errors_skip_unknown_cells(load_script: Any) -> None:
    mod = load_script("experiments/cost_model.py")
    truth = np.array([[1.0, np.nan], [3.0, 2.0]])
    err = mod.prediction_errors(np.array([[2.0, 5.0], [2.0, 2.0]]), truth)  # type: ignore[attr-defined]
    assert err["nmae"] == pytest.approx((1.0 / 2.0 + 0.0) / 2)
    assert err["median_rel"] == pytest.approx(1.0 / 3.0)
    assert err["rmse"] == pytest.approx(np.sqrt(2.0 / 3.0))


@pytest.mark.slow
def test_quick_run_on_the_simulated_fleet(load_script: Any, tmp_path: Path) -> None:
    mod = load_script("experiments/cost_model.py")
    argv = ["--datasets", "simulated", "--seeds", "0", "--sim-tasks", "800", "--n-bootstrap", "10"]
    jobs = mod.main([*argv, "--out-dir", str(tmp_path)])  # type: ignore[attr-defined]
    v = jobs[0]["variants"]
    assert set(v) == {"mean", "auto", "predicted"}
    assert jobs[0]["cost_model"]["mode"] == "predicted"
    assert v["auto"]["cost"]["nmae"] < 0.7 * v["mean"]["cost"]["nmae"]
    saved = json.loads((tmp_path / "cost_model.json").read_text())
    assert saved["jobs"][0]["dataset"] == "simulated"
    assert "| auto |" in (tmp_path / "cost_model.md").read_text()

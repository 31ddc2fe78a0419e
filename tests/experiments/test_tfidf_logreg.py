"""experiments/tfidf_logreg.py: the TF-IDF reference router re-measured with our metric code."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_trades_quality_for_cost(load_script: Any) -> None:
    mod = load_script("experiments/tfidf_logreg.py")
    quality = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    cost = np.array([[1.0, 0.1], [1.0, 0.1], [1.0, 0.1]])
    q_hat = np.array([[0.9, 0.2], [0.9, 0.8], [0.9, 0.3]])
    cs, qs = mod.sweep(q_hat, quality, cost, np.array([1.0, 0.1]))  # type: ignore[attr-defined]
    assert (cs[0], qs[0]) == (1.0, 1.0)  # λ = 0: the better model everywhere
    assert (cs[-1], qs[-1]) == (pytest.approx(0.1), pytest.approx(1 / 3))  # huge λ: the cheap model
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(cs))  # cost never rises with λ


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_on_mbpp(load_script: Any, datasets_root: Path, tmp_path: Path) -> None:
    mod = load_script("experiments/tfidf_logreg.py")
    out = mod.main(["--quick", "--out-dir", str(tmp_path)])  # type: ignore[attr-defined]
    data = json.loads((tmp_path / "tfidf_logreg.json").read_text())
    assert data["results"] == json.loads(json.dumps(out["results"]))
    assert [r["task"] for r in data["runs"]] == ["mbpp", "mbpp"]
    assert {r["reference_model"] for r in data["runs"]} == {"gpt-4-1106-preview"}
    res = data["results"]["mbpp"]
    for key in ("cost_share_at_95", "op_test_cost_share", "op_test_quality_ratio", "aiq"):
        assert res[key]["n"] == 2 and res[key]["lo"] <= res[key]["mean"] <= res[key]["hi"]
    assert 0 < res["cost_share_at_95"]["mean"] < 1  # routing beats always calling GPT-4 at 95% quality
    assert "| mbpp | <= 20% | 29.0% |" in (tmp_path / "tfidf_logreg.md").read_text()

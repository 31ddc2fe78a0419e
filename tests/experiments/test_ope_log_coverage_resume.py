"""experiments/ope_log_coverage.py: a resumed run equals an uninterrupted one, and refuses what it cannot continue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ARGV = ["--sources", "fleet", "--epsilons", "0.2", "--n-rows", "400", "--fleet-tasks", "600",
        "--pca-components", "4"]


def _flat(o: Any, key: str = "") -> dict[str, float]:
    """Every number of a nested record, by its path."""
    if isinstance(o, dict):
        return {k2: v for k, x in o.items() for k2, v in _flat(x, f"{key}/{k}").items()}
    if isinstance(o, list):
        return {k2: v for i, x in enumerate(o) for k2, v in _flat(x, f"{key}/{i}").items()}
    return {key: float(o)} if isinstance(o, int | float) else {}


@pytest.mark.slow
def test_resume_equals_one_run_and_refuses_other_settings(load_script: Any, tmp_path: Path) -> None:
    mod = load_script("experiments/ope_log_coverage.py")
    one, two = tmp_path / "one", tmp_path / "two"
    mod.main([*ARGV, "--repeats", "3", "--out-dir", str(one), "--name", "r"])  # type: ignore[attr-defined]
    mod.main([*ARGV, "--repeats", "2", "--out-dir", str(two), "--name", "r"])  # type: ignore[attr-defined]
    mod.main([*ARGV, "--repeats", "3", "--out-dir", str(two), "--name", "r", "--resume"])  # type: ignore[attr-defined]
    a, b = (json.loads((d / "r.json").read_text()) for d in (one, two))
    assert a["complete"] and b["complete"] and b["sources"]["fleet"]["repeats_done"] == 3
    assert a["sources"]["fleet"]["repeats"] == b["sources"]["fleet"]["repeats"]
    # summaries: from the full-precision records in one run, from the written (6-digit) ones when resumed
    assert _flat(a["sources"]["fleet"]["metrics"]) == pytest.approx(_flat(b["sources"]["fleet"]["metrics"]), rel=1e-4)
    with pytest.raises(SystemExit, match=r"--resume: .* was run with n_rows=400, not 500"):
        mod.main([*[x if x != "400" else "500" for x in ARGV], "--repeats", "3", "--out-dir", str(two),  # type: ignore[attr-defined]
                  "--name", "r", "--resume"])
    with pytest.raises(SystemExit, match="--resume: no earlier run"):
        mod.main([*ARGV, "--out-dir", str(tmp_path / "none"), "--name", "r", "--resume"])  # type: ignore[attr-defined]
    # a written repeat the code no longer reproduces (here: tampered with) is refused
    rec = json.loads((two / "r.json").read_text())
    est = rec["sources"]["fleet"]["repeats"]["0.2"][0]["policies"]["logger_argmax"]["metrics"]["quality"]["estimates"]
    est["dr"][0] += 0.01
    (two / "r.json").write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match=r"repeat 0 of fleet at epsilon 0\.2 differs from the written one"):
        mod.main([*ARGV, "--repeats", "4", "--out-dir", str(two), "--name", "r", "--resume"])  # type: ignore[attr-defined]
    # --first-repeat: other logs of the same source
    three = tmp_path / "three"
    mod.main([*ARGV, "--repeats", "1", "--first-repeat", "2", "--out-dir", str(three), "--name", "r"])  # type: ignore[attr-defined]
    c = json.loads((three / "r.json").read_text())
    assert c["sources"]["fleet"]["repeats"]["0.2"][0] == a["sources"]["fleet"]["repeats"]["0.2"][2]

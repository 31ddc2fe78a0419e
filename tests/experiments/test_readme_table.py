"""The README's results table is exactly what experiments/readme_table.py renders from the committed JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_readme_results_table_is_generated_from_committed_results(load_script: Any) -> None:
    mod = load_script("experiments/readme_table.py")
    table = mod.render(json.loads((ROOT / "experiments" / "results" / "benchmark.json").read_text()))
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "README results are stale: run `python experiments/readme_table.py`"
    assert mod.main(mod.Args(check=True)) == 0


def test_render_marks_metrics_defined_in_fewer_seeds(load_script: Any) -> None:
    mod = load_script("experiments/readme_table.py")
    m = {"mean": 0.25, "lo": 0.2, "hi": 0.3, "n": 3, "n_seeds": 5}
    assert mod._fmt(m) == "25.0 ± 5.0 (3/5)"
    assert mod._fmt({"mean": 0.5, "lo": 0.5, "hi": 0.5, "n": 5, "n_seeds": 5}, pct=False) == "0.500"
    assert mod._fmt(None) == "n/a"

"""The README's results table is exactly what experiments/readme_table.py renders from the committed JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "experiments" / "readme_table.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["readme_table"] = mod  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_readme_results_table_is_generated_from_committed_results() -> None:
    mod = _module()
    table = mod.render(json.loads((ROOT / "experiments" / "results" / "benchmark.json").read_text()))
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "README results are stale: run `python experiments/readme_table.py`"
    assert mod.main(mod.Args(check=True)) == 0


def test_render_marks_metrics_defined_in_fewer_seeds() -> None:
    mod = _module()
    m = {"mean": 0.25, "lo": 0.2, "hi": 0.3, "n": 3, "n_seeds": 5}
    assert mod._fmt(m) == "25.0 ± 5.0 (3/5)"
    assert mod._fmt({"mean": 0.5, "lo": 0.5, "hi": 0.5, "n": 5, "n_seeds": 5}, pct=False) == "0.500"
    assert mod._fmt(None) == "n/a"

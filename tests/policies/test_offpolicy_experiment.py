"""experiments/offpolicy_training.py: the frontier read-out and the typed arguments."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    path = ROOT / "experiments" / "offpolicy_training.py"
    name = "router_rl_script_offpolicy_training"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_quality_at_budget_interpolates_towards_the_next_better_point(script: ModuleType) -> None:
    pts = [(1.0, 0.5), (2.0, 0.7), (4.0, 0.9), (3.0, 0.6)]
    assert script.quality_at_budget(pts, 3.0) == pytest.approx(0.8)  # halfway from (2, .7) to (4, .9)
    assert script.quality_at_budget(pts, 2.0) == pytest.approx(0.7)
    assert script.quality_at_budget(pts, 9.0) == pytest.approx(0.9)
    assert math.isnan(script.quality_at_budget(pts, 0.5))


def test_args_parse_into_the_typed_dataclass(script: ModuleType) -> None:
    a = script.parse_args(["--sizes", "300", "--epsilons", "0.2", "--corrections", "iw", "dr"])
    assert isinstance(a, script.Args)
    assert a.sizes == [300] and a.epsilons == [0.2] and a.corrections == ["iw", "dr"]
    assert script.parse_args([]).sizes == [2000, 10000, 50000]

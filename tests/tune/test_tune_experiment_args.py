"""experiments/tune.py: its typed Args and flag checks (the search itself is router_rl.tune's, tested there)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    name = "router_rl_script_tune"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / "tune.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_args_defaults_quick_and_explicit_flags_win() -> None:
    mod = _script()
    a = mod.parse_args([])
    assert (a.trainer, a.trials, a.rungs, a.seed, a.out_dir) == ("lgbm", 8, 3, 0, "runs/tune")
    q = mod.parse_args(["--quick", "--trials", "3"])
    assert (q.n_tasks, q.trials, q.rungs, q.out_dir) == (400, 3, 2, "runs/tune_quick")
    assert "num_boost_round=16" in q.fixed
    p = mod.parse_args(["--trainer", "ppo", "--space", "learning_rate=loguniform:0.0001:0.001", "--horizon", "40"])
    assert p.trainer == "ppo" and p.space == ["learning_rate=loguniform:0.0001:0.001"] and p.horizon == 40


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--trainer", "xgb"], "--trainer: expected 'lgbm' or 'ppo'"),
        (["--trials", "0"], "--trials: expected >= 1"),
        (["--reduction-factor", "1"], "--reduction-factor: expected >= 2"),
        (["--seed", "-1"], "--seed: expected >= 0"),
    ],
)
def test_bad_flags_name_the_flag(argv: list[str], needle: str) -> None:
    with pytest.raises(SystemExit, match=needle):
        _script().parse_args(argv)


def test_a_bad_space_fails_before_ray_naming_the_flag(tmp_path: Path) -> None:
    mod = _script()
    args = mod.parse_args(["--space", "num_leaves=int:9:3", "--out-dir", str(tmp_path)])
    def ray_up() -> bool:
        return "ray" in sys.modules and bool(__import__("ray").is_initialized())

    before = ray_up()  # another test of the same process may have left a Ray session
    with pytest.raises(SystemExit, match=r"^--space: num_leaves: expected LOW < HIGH"):
        mod.run(args)
    assert ray_up() == before

"""Search spaces, per-trial seeds, rung budgets and the tuned-config file (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies.lgbm_config import LGBMConfig
from router_rl.policies.ppo.config import PPOConfig
from router_rl.tune.best import (
    TunedConfig,
    TuneRecord,
    load_tuned_config,
    read_tuned_config,
    write_tuned_config,
)
from router_rl.tune.lgbm import DEFAULT_LGBM_SPACE, parse_lgbm_space
from router_rl.tune.ppo import DEFAULT_PPO_SPACE, parse_ppo_space, rollout_chunks
from router_rl.tune.runner import TuneSettings, rung_budgets
from router_rl.tune.space import SearchSpaceError, parse_dimension, sample_trials, trial_seeds


def test_dimensions_parse_and_sample_in_bounds() -> None:
    rng = np.random.default_rng(0)
    lu = parse_dimension("learning_rate=loguniform:0.01:0.3")
    it = parse_dimension("num_leaves=int:3:5")
    li = parse_dimension("num_leaves=logint:7:63")
    ch = parse_dimension("cv_folds=choice:2,3")
    xs = [lu.sample(rng) for _ in range(300)]
    assert all(0.01 <= x <= 0.3 for x in xs) and all(type(x) is float for x in xs)
    # log scale: about half the draws below the geometric mean
    assert 0.4 < np.mean(np.array(xs) < np.sqrt(0.01 * 0.3)) < 0.6
    ints = {it.sample(rng) for _ in range(200)}
    assert ints == {3, 4, 5} and all(type(v) is int for v in ints)
    assert all(7 <= li.sample(rng) <= 63 for _ in range(200))
    assert {ch.sample(rng) for _ in range(100)} == {2, 3}
    assert parse_dimension("calibration=choice:isotonic,none").values == ("isotonic", "none")
    assert lu.describe() == "loguniform:0.01:0.3" and ch.describe() == "choice:2,3"


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("num_leaves", "expected NAME=KIND:ARGS"),
        ("num_leaves=gauss:1:2", "unknown kind 'gauss'"),
        ("num_leaves=int:9:3", "expected LOW < HIGH"),
        ("learning_rate=loguniform:0:1", "needs LOW > 0"),
        ("num_leaves=int:2.5:9", "integer bounds"),
        ("learning_rate=uniform:a:1", "'a' is not a number"),
        ("learning_rate=uniform:0.1", "needs LOW:HIGH"),
        ("cv_folds=choice:", "at least one value"),
        ("leaves=int:2:9", "'leaves' is not a setting"),
    ],
)
def test_bad_dimensions_name_the_problem(item: str, needle: str) -> None:
    with pytest.raises(SearchSpaceError, match=needle):
        parse_lgbm_space([item])


def test_default_spaces_parse_and_every_draw_is_a_valid_config() -> None:
    lg = parse_lgbm_space([])
    assert set(lg) == {s.split("=")[0] for s in DEFAULT_LGBM_SPACE}
    trials = sample_trials(lg, n_trials=20, base_seed=3, fixed={}, config_cls=LGBMConfig)
    for t in trials:
        LGBMConfig.from_dict(t.config)
    pp = parse_ppo_space([])
    assert set(pp) == {s.split("=")[0] for s in DEFAULT_PPO_SPACE}
    for t in sample_trials(pp, n_trials=20, base_seed=3, fixed={"total_timesteps": 512}, config_cls=PPOConfig):
        assert PPOConfig.from_dict(t.config).total_timesteps == 512


def test_trials_and_seeds_derive_from_the_base_seed() -> None:
    space = parse_lgbm_space(["num_leaves=int:3:60", "learning_rate=loguniform:0.01:0.3"])
    a = sample_trials(space, n_trials=4, base_seed=7, fixed={"cv_folds": 2}, config_cls=LGBMConfig)
    b = sample_trials(space, n_trials=4, base_seed=7, fixed={"cv_folds": 2}, config_cls=LGBMConfig)
    c = sample_trials(space, n_trials=4, base_seed=8, fixed={"cv_folds": 2}, config_cls=LGBMConfig)
    more = sample_trials(space, n_trials=6, base_seed=7, fixed={"cv_folds": 2}, config_cls=LGBMConfig)
    assert a == b
    assert [t.seed for t in a] == trial_seeds(7, 4)
    assert len({t.seed for t in a}) == 4 and all(0 <= t.seed < 2**31 for t in a)
    assert [t.seed for t in a] != [t.seed for t in c] and [t.params for t in a] != [t.params for t in c]
    assert more[:4] == a  # adding trials never changes the earlier ones
    assert all(t.config["cv_folds"] == 2 and t.config["num_leaves"] == t.params["num_leaves"] for t in a)
    assert [t.index for t in a] == [0, 1, 2, 3]


def test_sampling_refuses_bad_combinations_naming_the_field() -> None:
    space = parse_lgbm_space(["num_leaves=int:0:1"])
    with pytest.raises(SearchSpaceError, match=r"^num_leaves: .*greater than or equal to 2.*\(drawn [01]\)$"):
        sample_trials(space, n_trials=2, base_seed=0, fixed={}, config_cls=LGBMConfig)
    with pytest.raises(SearchSpaceError, match="num_leaves: both searched and fixed"):
        sample_trials(parse_lgbm_space(["num_leaves=int:3:9"]), n_trials=2, base_seed=0, fixed={"num_leaves": 4},
                      config_cls=LGBMConfig)
    with pytest.raises(SearchSpaceError, match="batch_size: must divide"):
        sample_trials(parse_ppo_space(["batch_size=choice:7"]), n_trials=1, base_seed=0, fixed={},
                      config_cls=PPOConfig)
    with pytest.raises(SearchSpaceError, match="trials: expected >= 1"):
        sample_trials(space, n_trials=0, base_seed=0, fixed={}, config_cls=LGBMConfig)
    with pytest.raises(SearchSpaceError, match="given twice"):
        parse_lgbm_space(["num_leaves=int:3:9", "num_leaves=int:3:5"])


def test_rung_budgets_and_rollout_chunks() -> None:
    assert rung_budgets(120, 3) == [30, 60, 120]
    assert rung_budgets(5, 3) == [2, 3, 5]
    assert rung_budgets(2, 3) == [1, 2]  # too few rounds: fewer rungs (tune_lgbm refuses it)
    assert rung_budgets(7, 1) == [7]
    cfg = PPOConfig(total_timesteps=1000, n_steps=256, batch_size=64)
    assert rollout_chunks(cfg, 2) == [512, 512]  # 4 rollouts of 256 (1000 rounded up)
    assert rollout_chunks(cfg, 3) == [512, 256, 256]
    with pytest.raises(SearchSpaceError, match="total_timesteps: 1000 steps are 4 rollout"):
        rollout_chunks(cfg, 5)


def test_settings_are_strict() -> None:
    with pytest.raises(ConfigError, match=r"TuneSettings\.reduction_factor"):
        TuneSettings(reduction_factor=1)
    with pytest.raises(ConfigError, match=r"TuneSettings\.trials"):
        TuneSettings(trials=0)


def _record(**kw: object) -> TuneRecord:
    base = {"metric": "val_aiq", "mode": "max", "score": 0.5, "trial": 1, "trial_seed": 123, "base_seed": 0,
            "trials": 3, "stopped_early": 1, "rungs": 2, "scheduler": "ASHA", "data": "sim",
            "search_space": {"num_leaves": "int:3:9"}, "created": "2026-12-01T00:00:00Z"}
    return TuneRecord(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_tuned_config_round_trips_into_the_trainer_config(tmp_path: Path, suffix: str) -> None:
    tuned = TunedConfig(trainer="lgbm", config={"num_leaves": 5, "learning_rate": 0.07}, tune=_record())
    p = write_tuned_config(tmp_path / f"best{suffix}", tuned)
    assert read_tuned_config(p) == tuned
    cfg = load_tuned_config(p, "lgbm")
    assert isinstance(cfg, LGBMConfig) and cfg.num_leaves == 5 and cfg.learning_rate == 0.07
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ConfigError, match="this file tunes 'lgbm', not 'ppo'"):
        load_tuned_config(p, "ppo")


def test_tuned_config_errors_name_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"PPOConfig\.n_steps"):
        write_tuned_config(tmp_path / "x.json", TunedConfig(trainer="ppo", config={"n_steps": 0}, tune=_record()))
    bad = tmp_path / "bad.json"
    d = TunedConfig(trainer="lgbm", config={"num_leaves": 5}, tune=_record()).to_dict()
    d["config"]["num_leafs"] = 5
    bad.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"bad\.json: .*num_leafs: unknown setting"):
        read_tuned_config(bad)
    d["config"] = {"num_leaves": 5}
    d["tune"]["split"] = "test"  # a config scored on test is refused
    bad.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"TuneRecord\.split: Input should be .val."):
        read_tuned_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer: [lgbm\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: config: not valid YAML"):
        read_tuned_config(broken)
    with pytest.raises(ConfigError, match="no such file"):
        read_tuned_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_the_file_records_every_trial(tmp_path: Path, suffix: str) -> None:
    from router_rl.tune.best import tuned_from_outcome
    from router_rl.tune.runner import TrialResult, TuneOutcome

    space = parse_lgbm_space(["num_leaves=int:3:9"])
    specs = sample_trials(space, n_trials=3, base_seed=4, fixed={"num_boost_round": 8}, config_cls=LGBMConfig)
    trials = [TrialResult(specs[0], 2, {"val_aiq": 0.61}, [0.55, 0.61]),
              TrialResult(specs[1], 1, {"val_aiq": 0.41}, [0.41]),  # stopped at rung 1
              TrialResult(specs[2], 0, {}, [], error="ValueError: boom")]
    outcome = TuneOutcome(trials, trials[0], "val_aiq", "max", 2, 1, 1, str(tmp_path / "ray"))
    tuned = tuned_from_outcome(outcome, trainer="lgbm", space=space, base_seed=4, data="sim")
    log = read_tuned_config(write_tuned_config(tmp_path / f"best{suffix}", tuned)).tune.trial_log
    assert [(t.index, t.seed, t.rungs_done, t.history, t.score, t.error) for t in log] == [
        (0, specs[0].seed, 2, [0.55, 0.61], 0.61, None),
        (1, specs[1].seed, 1, [0.41], 0.41, None),
        (2, specs[2].seed, 0, [], None, "ValueError: boom"),
    ]
    assert [t.params for t in log] == [sp.params for sp in specs]
    assert _record().trial_log == []  # a file written before trials were recorded still reads

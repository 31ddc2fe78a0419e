"""EnvSpec validation and construction-time failures with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import router_rl.envs as renvs
from router_rl.core.errors import ConfigError
from router_rl.envs import EnvSpec, load_env_data, load_spec
from router_rl.envs.spec import list_spec_files

BASE = {
    "name": "tiny",
    "kind": "bandit",
    "data": {"source": "simulated", "n_tasks": 300, "seed": 3},
    "features": {"n_word_hash": 16, "n_char_hash": 16},
    "horizon": 16,
}


def _write(tmp_path: Path, data: dict, name: str = "tiny") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _with(**kw: object) -> dict:
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k].update(v)  # type: ignore[union-attr]
        else:
            d[k] = v
    return d


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"reward": {"cost_weight": -0.1}}, r"reward.cost_weight.*>= 0"),
        ({"reward": {"latency_slo_s": 0}}, r"latency_slo_s.*> 0"),
        ({"kind": "budgeted", "budget": {"usd": -1.0}}, r"budget.*>= 0"),
        ({"kind": "budgeted"}, r"needs a budget"),
        ({"kind": "budgeted", "budget": {"usd": 1.0, "per_task_usd": 0.1}}, r"exactly one"),
        ({"horizon": 0}, r"horizon"),
        ({"name": "Bad Name"}, r"name"),
        ({"data": {"source": "importer"}}, r"kind.*path"),
        ({"outage": {"default": {"p_fail": 1.5}}}, r"p_fail"),
        ({"rewards": {}}, r"rewards.*[Ee]xtra"),
    ],
)
def test_invalid_specs_fail_with_field_names(tmp_path: Path, patch: dict, match: str) -> None:
    name = patch.get("name", "tiny")
    p = _write(tmp_path, _with(**patch), name=name if name != "Bad Name" else "tiny")
    with pytest.raises(ConfigError, match=match) as ei:
        load_spec(p)
    assert str(p) in str(ei.value)


def test_name_must_match_file(tmp_path: Path) -> None:
    p = _write(tmp_path, _with(), name="other")
    with pytest.raises(ConfigError, match="must equal the file name 'other'"):
        load_spec(p)


def test_missing_parquet_and_unknown_spec_name(tmp_path: Path) -> None:
    p = _write(tmp_path, _with(data={"source": "parquet", "path": "nope/traces.parquet"}))
    with pytest.raises(FileNotFoundError, match=r"data.path: trace file not found: .*nope/traces.parquet"):
        renvs.make(p)
    with pytest.raises(FileNotFoundError, match="no environment spec named 'does-not-exist'"):
        renvs.make("does-not-exist")


def test_model_absent_from_data_fails(tmp_path: Path) -> None:
    p = _write(tmp_path, _with(data={"models": ["qwen2.5-coder:7b", "gpt-9"]}))
    with pytest.raises(ConfigError, match=r"data.models: models \['gpt-9'\] are absent from the data"):
        renvs.make(p)


def test_latency_weight_without_latency_fails(tmp_path: Path) -> None:
    import numpy as np
    from envs_helpers import hand_matrix

    m = hand_matrix(np.ones((3, 3)), np.zeros((3, 3)), np.full((3, 3), np.nan))
    with pytest.raises(ConfigError, match="unknown latency"):
        renvs.RoutingBandit(m, np.zeros((3, 1)), renvs.RewardSpec(latency_weight=0.1))


def test_saved_encoder_dimension_mismatch_fails(tmp_path: Path) -> None:
    data = load_env_data(load_spec(_write(tmp_path, _with())))
    enc_path = tmp_path / "enc.json"
    data.encoder.save(enc_path)
    ok = _write(tmp_path, _with(encoder_path=str(enc_path)))
    env = renvs.make(ok)
    assert env.observation_space.shape == (data.encoder.dim,)
    bad = _write(tmp_path, _with(encoder_path=str(enc_path), features={"n_word_hash": 32}))
    with pytest.raises(ConfigError, match=rf"encoder_path: saved encoder .* has dimension {data.encoder.dim} but"):
        renvs.make(bad)
    missing = _write(tmp_path, _with(encoder_path="no/enc.json"))
    with pytest.raises(FileNotFoundError, match="saved encoder not found"):
        renvs.make(missing)


def test_load_env_data_splits_are_disjoint_and_encoder_fitted_on_train(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, _with()))
    train, val, test, enc = load_env_data(spec)
    assert val is not None
    ids = [set(m.tasks["task_id"].to_list()) for m in (train, val, test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == 300
    assert enc.transform(train.tasks).shape == (train.n_tasks, enc.dim)
    again = load_env_data(spec)
    assert again.encoder is enc  # cached within the process


def test_with_overrides_validates() -> None:
    spec = load_spec("sim-bandit")
    assert spec.with_overrides(split="test").split.name == "test"
    with pytest.raises(ConfigError, match=r"reward\.cost_weight"):
        spec.with_overrides(reward={"cost_weight": -1})
    with pytest.raises(ConfigError, match="unknown EnvSpec field"):
        spec.with_overrides(horizn=3)


def test_every_shipped_spec_validates_and_is_registered() -> None:
    import gymnasium as gym

    files = list_spec_files()
    names = {f.stem for f in files}
    assert {"sim-bandit", "sim-budgeted"} <= names
    for f in files:
        spec = load_spec(f)
        assert isinstance(spec, EnvSpec) and spec.env_id in gym.registry
    assert any(load_spec(f).kind == "budgeted" for f in files)

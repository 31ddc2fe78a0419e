"""FedProx / FedAdam / FedYogi (Flower's strategies) and client-side-clipping DP on the in-process grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from router_rl.federated.config import FederatedConfig

pytestmark = [pytest.mark.slow, pytest.mark.federated]

AGENTS = ("test-generator", "coverage-analyzer", "code-reviewer")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> FederatedConfig:
    from router_rl.federated.tiny import build_tiny_base_model

    base = build_tiny_base_model(tmp_path_factory.mktemp("tiny-base"), seed=0)
    return FederatedConfig(
        base_model_path=base, agent_types=AGENTS, num_rounds=2, n_tasks=150, max_local_steps=4,
        max_examples_per_client=32, max_eval_examples_per_client=16, lr=2e-2, max_length=64, lora_r=4, seed=5,
    )


def _run(cfg: FederatedConfig, out: Path):
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.runner import run_local_grid

    clear_client_cache()
    return run_local_grid(cfg, out)


@pytest.fixture(scope="module")
def fedavg(cfg: FederatedConfig, tmp_path_factory: pytest.TempPathFactory):
    return _run(cfg, tmp_path_factory.mktemp("avg"))[0]


def _maxdiff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_fedprox_mu0_is_fedavg_and_mu_pulls_updates_to_the_global(cfg: FederatedConfig, fedavg,
                                                                  tmp_path: Path) -> None:
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.data import build_partition
    from router_rl.federated.lora import build_lora_model, get_adapter_arrays, load_tokenizer, set_adapter_arrays
    from router_rl.federated.runner import initial_adapter
    from router_rl.federated.train import train_local

    prox0 = _run(cfg.model_copy(update={"strategy": "fedprox"}), tmp_path / "p0")[0]
    for k, v in fedavg.arrays.items():
        np.testing.assert_array_equal(prox0.arrays[k], v)
    assert prox0.history.to_json() == fedavg.history.to_json()

    # one client's update from the same start: ||w - w0|| shrinks as mu grows
    clear_client_cache()
    seqs = build_partition(cfg, 0, load_tokenizer(cfg.base_model_path)).train
    w0 = initial_adapter(cfg)
    w0 = {k: v + 0.05 for k, v in w0.items()}  # a non-zero global adapter
    norms = []
    for mu in (0.0, 1.0, 100.0):
        model = build_lora_model(cfg)
        set_adapter_arrays(model, w0)
        c = cfg.model_copy(update={"strategy": "fedprox", "proximal_mu": mu})
        train_local(model, seqs, c, server_round=1, partition_id=0)
        new = get_adapter_arrays(model)
        norms.append(math.sqrt(sum(float(((new[k] - w0[k]) ** 2).sum()) for k in w0)))
    assert norms[0] > norms[1] > norms[2] > 0

    prox = _run(cfg.model_copy(update={"strategy": "fedprox", "proximal_mu": 100.0}), tmp_path / "p1")[0]
    assert _maxdiff(prox.arrays, fedavg.arrays) > 1e-4


def test_proximal_mu_only_with_fedprox(cfg: FederatedConfig) -> None:
    from router_rl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="proximal_mu"):
        FederatedConfig.create(**{**cfg.model_dump(), "proximal_mu": 0.1})
    with pytest.raises(ConfigError, match="strategy"):
        FederatedConfig.create(**{**cfg.model_dump(), "strategy": "fedsgd"})


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_server_optimisers_run_and_differ_from_fedavg(cfg: FederatedConfig, fedavg, tmp_path: Path,
                                                      name: str) -> None:
    res = _run(cfg.model_copy(update={"strategy": name, "server_lr": 0.05}), tmp_path / name)[0]
    assert _maxdiff(res.arrays, fedavg.arrays) > 1e-3
    assert all(np.isfinite(v).all() for v in res.arrays.values())
    assert res.history.eval_loss(2) < res.history.eval_loss(0)
    # Adam/Yogi step: every coordinate moves by at most ~eta per round from the previous global
    from router_rl.federated.runner import initial_adapter

    init = initial_adapter(cfg)
    assert max(float(np.abs(res.arrays[k] - init[k]).max()) for k in init) <= 2 * 0.05 * 1.01


def test_inprocess_runner_refuses_what_it_cannot_do(cfg: FederatedConfig, tmp_path: Path) -> None:
    from router_rl.federated.runner import run_inprocess

    with pytest.raises(ValueError, match=r"^strategy: run_inprocess runs FedAvg/FedProx only"):
        run_inprocess(cfg.model_copy(update={"strategy": "fedadam"}), tmp_path)


def test_dp_clips_every_update_and_reports_the_configured_budget(cfg: FederatedConfig, tmp_path: Path) -> None:
    from router_rl.federated.dp import gdp_delta, gdp_epsilon
    from router_rl.federated.runner import initial_adapter
    from router_rl.federated.strategy import from_array_record

    clip, z = 0.05, 1.5
    dcfg = cfg.model_copy(update={"dp": True, "dp_clipping_norm": clip, "dp_noise_multiplier": z, "dp_delta": 1e-5})
    res, grid = _run(dcfg, tmp_path / "dp")
    # every update the server received is within the clipping norm of the global adapter it was sent
    trains = grid.exchanges(message_type="train")
    assert len(trains) == 2 * 3
    sent_global = {1: initial_adapter(cfg)}
    norms = []
    for ex in trains:
        arrays = from_array_record(ex.reply.content.array_records["arrays"])
        rnd = int(ex.group_id)
        if rnd not in sent_global:
            continue
        g = sent_global[rnd]
        norms.append(math.sqrt(sum(float(((arrays[k].astype(np.float64) - g[k]) ** 2).sum()) for k in g)))
    assert len(norms) == 3 and max(norms) <= clip * (1 + 1e-5)
    assert min(norms) > 0.5 * clip  # the clip is active (unclipped updates are larger)

    p = res.privacy
    assert p is not None
    assert p["noise_multiplier"] == z and p["clipping_norm"] == clip and p["delta"] == 1e-5
    assert p["noise_stddev"] == pytest.approx(z * clip / 3)
    assert p["rounds"] == 2 and p["mu"] == pytest.approx(math.sqrt(2) / z)
    assert gdp_delta(p["epsilon"], p["mu"]) == pytest.approx(1e-5, rel=1e-3)
    assert json.loads(res.metrics_path.read_text())["privacy"]["epsilon"] == p["epsilon"]
    # the classical Gaussian-mechanism bound sigma = sqrt(2 ln(1.25/delta))/eps holds at mu = 1/z for eps < 1
    assert gdp_epsilon(1 / 5.0, 1e-5) <= math.sqrt(2 * math.log(1.25 / 1e-5)) / 5.0
    # the aggregate carries the noise: DP result differs from a noiseless run with the same clip
    assert all(np.isfinite(v).all() for v in res.arrays.values())


def test_dp_with_secagg_clips_before_masking(cfg: FederatedConfig, tmp_path: Path) -> None:
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.client_app import make_client_app
    from router_rl.federated.runner import initial_adapter, run_local_grid

    clip = 0.05
    dcfg = cfg.model_copy(update={"dp": True, "dp_clipping_norm": clip, "secure_aggregation": True, "num_rounds": 1})
    seen: list[float] = []
    g = initial_adapter(cfg)

    def hook(pid: int, rnd: int, arrays) -> None:
        seen.append(math.sqrt(sum(float(((arrays[k].astype(np.float64) - g[k]) ** 2).sum()) for k in g)))

    clear_client_cache()
    res, _ = run_local_grid(dcfg, tmp_path / "dps", client_app=make_client_app(dcfg, on_update=hook))
    assert len(seen) == 3 and max(seen) <= clip * (1 + 1e-5)
    assert res.privacy is not None and res.privacy["rounds"] == 1
    assert res.history.rounds[1]["secure_aggregation"] is True


def test_local_grid_equals_the_inprocess_loop(cfg: FederatedConfig, fedavg, tmp_path: Path) -> None:
    """The ServerApp/ClientApp over LocalGrid (Flower strategy.start loop) == the Flower-free loop, bit for bit."""
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.runner import run_inprocess

    clear_client_cache()
    ref = run_inprocess(cfg, tmp_path / "ref")
    assert ref.history.to_json() == fedavg.history.to_json()
    for k, v in ref.arrays.items():
        np.testing.assert_array_equal(fedavg.arrays[k], v)

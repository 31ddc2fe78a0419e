"""SecAgg+ (Flower's SecAggPlusWorkflow + secaggplus_mod) over the tiny local model, on the in-process grid."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from router_rl.federated.config import FederatedConfig

pytestmark = [pytest.mark.slow, pytest.mark.federated]

AGENTS = ("test-generator", "coverage-analyzer", "code-reviewer", "flaky-test-hunter")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> FederatedConfig:
    from router_rl.federated.tiny import build_tiny_base_model

    base = build_tiny_base_model(tmp_path_factory.mktemp("tiny-base"), seed=0)
    return FederatedConfig(
        base_model_path=base, agent_types=AGENTS, num_rounds=1, n_tasks=150, max_local_steps=4,
        max_examples_per_client=40, max_eval_examples_per_client=16, lr=2e-2, max_length=64, lora_r=4, seed=3,
    )


def _run(cfg: FederatedConfig, out: Path, drop: tuple[tuple[int, int], ...] = ()):
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.client_app import make_client_app
    from router_rl.federated.runner import run_local_grid

    clear_client_cache()
    updates: dict[int, dict[str, np.ndarray]] = {}

    def hook(pid: int, rnd: int, arrays) -> None:
        updates[pid] = {k: np.array(v, copy=True) for k, v in arrays.items()}

    res, grid = run_local_grid(cfg, out, client_app=make_client_app(cfg, drop=drop, on_update=hook))
    return res, grid, updates


def _received_arrays(grid) -> list[np.ndarray]:
    """Every array the server-side code was handed in a TRAIN reply (ArrayRecords and bytes in configs)."""
    from flwr.common import bytes_to_ndarray

    out = []
    for ex in grid.exchanges(message_type="train"):
        if ex.reply.has_error():
            continue
        content = ex.reply.content
        for rec in content.array_records.values():
            out += [a.numpy() for a in rec.values()]
        for rec in content.config_records.values():
            for v in rec.values():
                for b in v if isinstance(v, list) else [v]:
                    if isinstance(b, bytes):
                        with contextlib.suppress(Exception):  # keys and ciphertexts are not arrays
                            out.append(bytes_to_ndarray(b))
    return out


def test_secagg_equals_fedavg_with_a_dropout_and_server_never_sees_an_adapter(cfg: FederatedConfig,
                                                                               tmp_path: Path) -> None:
    from router_rl.federated.aggregate import weighted_fedavg

    scfg = cfg.model_copy(update={"secure_aggregation": True})
    res, grid, updates = _run(scfg, tmp_path / "s", drop=((2, 1),))
    # client 2 failed in the masked-vector stage (after sharing its keys), so it never trained
    assert sorted(updates) == [0, 1, 3]
    log = res.history.rounds[1]
    assert log["secure_aggregation"] is True
    assert log["secagg"] == {"sampled_nodes": 4, "survivors": [0, 1, 3], "dropped_nodes": 1}
    assert sorted(log["train"]) == ["0", "1", "3"]
    assert all(c["num-params-received"] == 0 for c in log["train"].values())

    # the result is FedAvg of the three survivors' plain updates within the quantisation error
    w = [float(log["train"][str(p)]["num-examples"]) for p in (0, 1, 3)]
    plain = weighted_fedavg([updates[p] for p in (0, 1, 3)], w)
    # each client's w/max_weight-scaled adapter is stochastically rounded to a grid of `step`; the sum
    # is divided by sum(w)/max_weight, so |error| < n * step * max_weight / sum(w) per element
    step = 2 * scfg.secagg_clipping_range / scfg.secagg_quantization_range
    bound = len(w) * step * scfg.secagg_max_weight / sum(w)
    worst = max(float(np.abs(res.arrays[k].astype(np.float64) - plain[k]).max()) for k in plain)
    assert worst < bound, (worst, bound, w)
    assert any(float(np.abs(v).max()) > 100 * step for v in plain.values())  # not trivially all-zero

    # no array handed to the server equals (or approximates) any client's plain update
    updates_flat = [np.concatenate([u[k].ravel() for k in u]) for u in updates.values()]
    received = _received_arrays(grid)
    assert received  # the masked vectors are there
    for arr in received:
        for u in updates.values():
            for ref in u.values():
                if arr.shape == ref.shape:
                    assert not np.allclose(arr.astype(np.float64), ref, atol=1e-3)
        for flat in updates_flat:
            if arr.size == flat.size:
                assert not np.allclose(arr.ravel().astype(np.float64), flat, atol=1e-3)
    # and no TRAIN reply carried an ArrayRecord with content
    for ex in grid.exchanges(message_type="train"):
        if not ex.reply.has_error():
            assert all(len(r) == 0 for r in ex.reply.content.array_records.values())


def test_plain_run_hands_the_server_each_adapter(cfg: FederatedConfig, tmp_path: Path) -> None:
    """Counter-check of the instrument above: without SecAgg+ the server does receive the plain updates."""
    res, grid, updates = _run(cfg, tmp_path / "p")
    received = _received_arrays(grid)
    for u in updates.values():
        assert any(arr.shape == ref.shape and np.array_equal(arr, ref) for ref in u.values() for arr in received)
    assert all(c["num-params-received"] > 0 for c in res.history.rounds[1]["train"].values())


def test_secagg_halts_loudly_when_too_many_drop(cfg: FederatedConfig, tmp_path: Path) -> None:
    scfg = cfg.model_copy(update={"secure_aggregation": True, "secagg_reconstruction_threshold": 1.0})
    with pytest.raises(RuntimeError, match=r"round 1: SecAgg\+ halted"):
        _run(scfg, tmp_path / "h", drop=((0, 1),))


def test_secagg_needs_three_sampled_clients(cfg: FederatedConfig) -> None:
    from router_rl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="secure_aggregation"):
        FederatedConfig.create(**{**cfg.model_dump(), "agent_types": AGENTS[:2], "secure_aggregation": True})


def test_bytes_per_client_plain_vs_secagg(cfg: FederatedConfig, tmp_path: Path) -> None:
    from router_rl.federated.bytes import bytes_per_client_round

    _, plain_grid, _ = _run(cfg, tmp_path / "bp")
    _, sec_grid, _ = _run(cfg.model_copy(update={"secure_aggregation": True}), tmp_path / "bs")
    plain = bytes_per_client_round(plain_grid)
    sec = bytes_per_client_round(sec_grid)
    n_params = 2 * 2 * 2 * 4 * 48
    for pid in range(4):
        assert plain[(pid, "1")]["up"] > 4 * n_params  # float32 adapter
        assert sec[(pid, "1")]["up"] > plain[(pid, "1")]["up"]  # masked int vectors + keys + shares

"""End-to-end federated LoRA runs on a tiny local model: in-process loop and the real Flower simulation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from router_rl.federated.config import FederatedConfig

pytestmark = [pytest.mark.slow, pytest.mark.federated]

AGENTS = ("test-generator", "coverage-analyzer", "code-reviewer")


@pytest.fixture(scope="module")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from router_rl.federated.tiny import build_tiny_base_model

    return build_tiny_base_model(tmp_path_factory.mktemp("tiny-base"), seed=0)


@pytest.fixture(scope="module")
def cfg(base_path: Path) -> FederatedConfig:
    return FederatedConfig(
        base_model_path=base_path, agent_types=AGENTS, num_rounds=2, n_tasks=150, max_local_steps=5,
        max_examples_per_client=40, max_eval_examples_per_client=16, lr=2e-2, max_length=64, lora_r=4, seed=7,
    )


@pytest.fixture(scope="module")
def inproc(cfg: FederatedConfig, tmp_path_factory: pytest.TempPathFactory):
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.runner import run_inprocess

    clear_client_cache()
    return run_inprocess(cfg, tmp_path_factory.mktemp("fed-a"))


def test_tiny_model_is_small_and_offline_loadable(base_path: Path) -> None:
    from router_rl.federated.lora import count_parameters, load_base_model, load_tokenizer

    _, total = count_parameters(load_base_model(base_path))
    assert 20_000 < total < 200_000
    tok = load_tokenizer(base_path)
    ids = tok("Write pytest unit tests for `parse_config`", add_special_tokens=False)["input_ids"]
    assert 0 < len(ids) < 40 and tok.pad_token_id is not None


def test_missing_base_model_fails_clearly(tmp_path: Path) -> None:
    from router_rl.federated.lora import BaseModelNotFoundError, build_lora_model, load_base_model

    missing = tmp_path / "no-such-model"
    with pytest.raises(BaseModelNotFoundError, match=r"no-such-model.*does not exist.*no hub download"):
        load_base_model(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseModelNotFoundError, match=r"incomplete: missing \['config.json'"):
        build_lora_model(FederatedConfig(base_model_path=tmp_path / "empty"))
    # a hub-style id is treated as a local path, never downloaded
    with pytest.raises(BaseModelNotFoundError, match=re.escape("meta-llama/Llama-3.2-1B")):
        load_base_model("meta-llama/Llama-3.2-1B")


def test_bad_target_module_is_named(cfg: FederatedConfig) -> None:
    from router_rl.federated.lora import build_lora_model

    with pytest.raises(ValueError, match=r"target_modules: \['c_attn'\]"):
        build_lora_model(cfg.model_copy(update={"target_modules": ("c_attn",)}))


def test_only_adapter_tensors_are_exchanged(cfg: FederatedConfig, inproc) -> None:
    from router_rl.federated.aggregate import is_adapter_key
    from router_rl.federated.lora import build_lora_model, count_parameters

    model = build_lora_model(cfg)
    trainable, total = count_parameters(model)
    # 2 layers x (q_proj, v_proj) x (A: r x 48, B: 48 x r) with r=4
    assert trainable == 2 * 2 * 2 * 4 * 48
    assert all(is_adapter_key(k) for k in inproc.arrays)
    assert sum(a.size for a in inproc.arrays.values()) == trainable
    for r in (1, 2):
        log = inproc.history.rounds[r]
        assert log["num_params_exchanged"] == trainable
        for client in log["train"].values():
            assert client["num-params-sent"] == client["num-params-received"] == trainable
    assert trainable < 0.05 * total


def test_federation_learns_saves_and_reloads(cfg: FederatedConfig, inproc) -> None:
    import torch

    from router_rl.federated.lora import build_lora_model, load_saved_adapter, set_adapter_arrays

    h = inproc.history
    assert sorted(h.rounds) == [0, 1, 2]
    assert h.eval_loss(2) < h.eval_loss(1) < h.eval_loss(0)
    for pid in ("0", "1", "2"):  # every client's held-out loss improves
        assert h.rounds[2]["evaluate"][pid]["eval-loss"] < h.rounds[0]["evaluate"][pid]["eval-loss"]
    # FedAvg weights are the clients' example counts
    train = h.rounds[1]["train"]
    w = np.array([train[p]["num-examples"] for p in ("0", "1", "2")], float)
    losses = np.array([train[p]["train-loss"] for p in ("0", "1", "2")])
    assert h.rounds[1]["train_loss"] == pytest.approx(float(losses @ w / w.sum()))

    payload = json.loads(inproc.metrics_path.read_text())
    assert [r["round"] for r in payload["rounds"]] == [0, 1, 2]
    assert payload["rounds"][2]["eval_perplexity"] == pytest.approx(np.exp(h.eval_loss(2)))
    assert "prompt" not in inproc.metrics_path.read_text()

    assert (inproc.adapter_dir / "adapter_config.json").is_file()
    loaded = load_saved_adapter(cfg, inproc.adapter_dir)
    mem = build_lora_model(cfg)
    set_adapter_arrays(mem, inproc.arrays)
    mem.eval()
    ids = torch.tensor([[1, 5, 9, 40, 77, 2], [1, 8, 8, 100, 3, 2]])
    with torch.no_grad():
        a, b = loaded(input_ids=ids).logits, mem(input_ids=ids).logits
        base = build_lora_model(cfg)(input_ids=ids).logits
    assert torch.equal(a, b)
    assert not torch.allclose(a, base)  # the adapter actually changes the model


def test_deterministic_with_fixed_seed(cfg: FederatedConfig, inproc, tmp_path: Path) -> None:
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.runner import run_inprocess

    clear_client_cache()
    again = run_inprocess(cfg, tmp_path / "b")
    assert again.history.to_json() == inproc.history.to_json()
    for k, v in inproc.arrays.items():
        np.testing.assert_array_equal(again.arrays[k], v)
    clear_client_cache()
    other = run_inprocess(cfg.model_copy(update={"seed": 8}), tmp_path / "c")
    assert other.history.eval_loss(2) != inproc.history.eval_loss(2)


def test_fraction_train_samples_clients(cfg: FederatedConfig, tmp_path: Path) -> None:
    from router_rl.federated.runner import run_inprocess

    res = run_inprocess(cfg.model_copy(update={"fraction_train": 0.5, "num_rounds": 1}), tmp_path)
    assert len(res.history.rounds[1]["train"]) == 2  # ceil(0.5 * 3)
    assert len(res.history.rounds[1]["evaluate"]) == 3


def test_flower_simulation_matches_inprocess(cfg: FederatedConfig, inproc, tmp_path: Path) -> None:
    """The real Flower ServerApp/ClientApp over Ray give bit-identical adapters to the in-process loop."""
    from router_rl.federated.simulation import run_flower_simulation

    res = run_flower_simulation(cfg, tmp_path / "sim")
    assert res.history.eval_loss(2) < res.history.eval_loss(0)
    assert res.history.to_json() == inproc.history.to_json()
    for k, v in inproc.arrays.items():
        np.testing.assert_array_equal(res.arrays[k], v)
    assert (res.adapter_dir / "adapter_model.safetensors").is_file()
    # the ArrayRecords the clients sent held only the LoRA tensors
    for client in res.history.rounds[1]["train"].values():
        assert client["num-params-received"] == sum(a.size for a in inproc.arrays.values())

"""`flwr run` end to end: a real SuperLink and one SuperNode per agent type on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router_rl.federated.config import FederatedConfig

pytestmark = [pytest.mark.slow, pytest.mark.federated]

ROOT = Path(__file__).resolve().parents[2]


# SecAgg+ only: it runs everything a plain round does (the pyproject app, SuperLink + SuperNodes by PID,
# partition ids, the metrics and the adapter) plus the SecAgg+ stages; each message costs a
# `flwr-clientapp` process start (torch + transformers imports), so a second, plain run would add ~2-4 min
# to the suite for no path of its own. Plain FedAvg over Flower's runtime is covered by the simulation
# test (test_federation.py) and the in-process grid.
@pytest.mark.parametrize("secure", [True], ids=["secagg"])
def test_flwr_run_with_the_pyproject_app(tmp_path: Path, secure: bool) -> None:
    from router_rl.federated.deployment import LocalDeployment, write_app
    from router_rl.federated.tiny import build_tiny_base_model

    base = build_tiny_base_model(tmp_path / "base", seed=0)
    cfg = FederatedConfig.from_pyproject(
        ROOT / "pyproject.toml", base_model_path=str(base),
        agent_types="test-generator,coverage-analyzer,code-reviewer",
        num_rounds=1, n_tasks=150, max_local_steps=2, max_examples_per_client=16, max_eval_examples_per_client=8,
        max_length=64, lora_r=4, seed=7, secure_aggregation=secure,
    )
    out = tmp_path / "out"
    app = write_app(ROOT / "pyproject.toml", tmp_path / "app", cfg, out)
    dep = LocalDeployment(cfg.num_clients, flwr_home=tmp_path / "flwr-home", log_dir=tmp_path / "logs")
    try:
        dep.start()
        res = dep.run(app, timeout=900)
    finally:
        codes = dep.stop()
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    # every process we started is gone, with what it spawned (SuperExec, flwr-serverapp/-clientapp)
    assert len(codes) == 1 + cfg.num_clients and all(c is not None for c in codes)
    assert len(dep.seen) > len(codes)
    assert dep.live_processes() == []
    payload = json.loads((out / "metrics.json").read_text())
    rounds = payload["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["eval_loss"] < rounds[0]["eval_loss"]
    assert sorted(rounds[1]["train"]) == ["0", "1", "2"]  # partition ids from --node-config
    assert rounds[1]["secure_aggregation"] is secure
    if secure:
        assert all(c["num-params-received"] == 0 for c in rounds[1]["train"].values())
    assert (out / "global_adapter" / "adapter_model.safetensors").is_file()

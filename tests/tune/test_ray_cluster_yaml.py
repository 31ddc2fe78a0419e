"""ray_cluster.yaml validates against the installed Ray's cluster schema, as `ray up` checks it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "ray_cluster.yaml"


def _schema() -> dict[str, Any]:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _config() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER.read_text())


def _validate_raw(cfg: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(cfg, _schema())


def _validate_as_ray_up(cfg: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before launching: fill the provider's defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_validates_against_the_installed_schema() -> None:
    cfg = _config()
    _validate_raw(cfg)
    prepared = _validate_as_ray_up(cfg)
    assert prepared["provider"]["type"] == "local"
    node_types = prepared["available_node_types"]
    assert list(node_types) == [prepared["head_node_type"]]
    assert node_types[prepared["head_node_type"]]["max_workers"] == len(cfg["provider"]["worker_ips"])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda c: c.update(min_workers=0), "'min_workers' was unexpected"),
        (lambda c: c.update(max_workers="two"), "'two' is not of type 'integer'"),
        (lambda c: c["provider"].pop("type"), "'type' is a required property"),
        (lambda c: c.update(file_mounts=["."]), "is not of type 'object'"),
    ],
)
def test_a_broken_copy_fails(change: Any, needle: str) -> None:
    import jsonschema

    cfg = _config()
    change(cfg)
    with pytest.raises(jsonschema.ValidationError) as err:
        _validate_raw(cfg)
    assert needle in err.value.message


def test_dashboard_datasets_and_traces() -> None:
    cfg = _config()
    head = " ".join(cfg["head_start_ray_commands"])
    # the job-submission and Serve REST APIs live on the dashboard: it must be on, on a known port
    assert "--include-dashboard=true" in head and "--dashboard-port=8265" in head
    assert "--include-dashboard=false" not in head
    mounts = cfg["file_mounts"]
    repo = next(r for r, local in mounts.items() if local == ".")
    # datasets land at ../shared/datasets of the checkout, where router_rl.core.paths looks, and the env says so
    data_remote = next(r for r, local in mounts.items() if local == "../shared/datasets")
    assert Path(data_remote) == Path(repo).parent / "shared" / "datasets"
    assert "ROUTER_RL_DATASETS=$HOME/shared/datasets" in head
    assert Path(data_remote) == Path("/home") / cfg["auth"]["ssh_user"] / "shared" / "datasets"
    assert "ROUTER_RL_DATASETS=$HOME/shared/datasets" in " ".join(cfg["worker_start_ray_commands"])
    # trace parquets are gitignored (the code sync honours .gitignore), so they have their own mount
    assert mounts[str(Path(repo) / "runs" / "traces")] == "./runs/traces"
    assert ".gitignore" in cfg["rsync_filter"]
    assert "*.parquet" in (ROOT / ".gitignore").read_text().splitlines()

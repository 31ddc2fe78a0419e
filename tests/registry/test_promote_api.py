"""promote(): judge, register, record, go live / start the canary; refusals leave the live version alone."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_GATE

from router_rl.registry import GateConfig, GateError, PolicyRegistry, RegistryError, promote

pytestmark = pytest.mark.slow


def test_promotion_lifecycle(world: dict[str, Any], tmp_path: Path) -> None:
    reg = PolicyRegistry.create(tmp_path / "reg")
    paths, log = world["paths"], world["log"]
    g = GateConfig(**FAST_GATE)
    # 1. nothing live yet: judged against the logging policy, promoted, live
    r1 = promote(reg, paths["good"], log, g, actor="test")
    assert (r1.version, r1.incumbent, r1.action, r1.passed, r1.promoted) == ("v0001", "logged", "set_live", True, True)
    assert reg.live == "v0001" and reg.previous is None
    rec = reg.records("promotion")[-1]
    assert rec["candidate"] == "v0001" and rec["incumbent"] == "logged" and rec["live_before"] is None
    assert rec["log"]["sha256"] == hashlib.sha256(Path(log).read_bytes()).hexdigest()
    assert rec["log"]["n_rows"] == 2000 and rec["log"]["n_labeled"] == 2000
    assert rec["passed"] is True and rec["why"] == "gate passed" and rec["actor"] == "test"
    assert rec["verdict"]["candidate"] == "v0001"
    util = rec["verdict"]["estimates"]["difference"]["utility"]["dr"]
    assert util["lower"] > 0 and util["lower"] <= util["value"] <= util["upper"]
    live = reg.records("set_live")[-1]
    assert live["version"] == "v0001" and live["promotion_record"] == r1.record_path.name
    # 2. a corrupted model against the live one: refused, registered, live unchanged
    r2 = promote(reg, paths["shuffled"], log, g)
    assert (r2.version, r2.incumbent, r2.action, r2.promoted) == ("v0002", "v0001", "refused", False)
    assert reg.live == "v0001"
    rec2 = reg.records("promotion")[-1]
    assert rec2["passed"] is False and "utility_gain_lower = " in rec2["why"] and "(needs > 0) FAIL" in rec2["why"]
    assert rec2["verdict"]["reasons"] == r2.verdict.reasons
    assert [v.version for v in reg.versions()] == ["v0001", "v0002"]
    # 3. a canary gate: a pass starts the canary, the live version stays
    r3 = promote(reg, paths["good"], log, g.replace(canary_share=0.25), incumbent="logged")
    assert (r3.version, r3.action, r3.canary_share) == ("v0003", "canary", 0.25)
    c = reg.canary
    assert c is not None and (c.version, c.share) == ("v0003", 0.25) and reg.live == "v0001"
    assert reg.records("canary")[-1]["promotion_record"] == r3.record_path.name
    assert [r["seq"] for r in reg.records()] == list(range(1, len(reg.records()) + 1))


def test_inputs_that_cannot_be_judged_register_nothing(world: dict[str, Any], tmp_path: Path) -> None:
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy

    reg = PolicyRegistry.create(tmp_path / "reg")
    g = GateConfig(**FAST_GATE)
    with pytest.raises(GateError, match=r"nope\.parquet: no such file"):
        promote(reg, world["paths"]["good"], tmp_path / "nope.parquet", g)
    with pytest.raises(RegistryError, match="not a loadable policy artifact"):
        promote(reg, tmp_path, world["log"], g)
    with pytest.raises(RegistryError, match="missing: not a folder"):
        promote(reg, tmp_path / "missing", world["log"], g)
    tr = world["fleet"].matrix().split("train")
    other = make_policy("random", world["models"])
    other.attach_encoder(FeatureEncoder(EncoderConfig(n_word_hash=32).restricted_to(tr.tasks.columns)).fit(tr.tasks))
    with pytest.raises(GateError, match="was trained with feature encoder"):
        promote(reg, other.save(tmp_path / "other"), world["log"], g)
    with pytest.raises(KeyError, match="unknown version 'v0009'"):
        promote(reg, world["paths"]["good"], world["log"], g, incumbent="v0009")
    assert reg.versions() == [] and reg.records() == []

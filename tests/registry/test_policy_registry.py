"""PolicyRegistry: versions, live / previous / canary state, records, atomicity under concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
from pathlib import Path

import pytest

from router_rl.registry import PolicyRegistry, RegistryError, UnknownVersionError

MODELS = ("a", "b", "c")


def _artifact(d: Path, kind: str = "random", **kwargs: object) -> Path:
    from router_rl.policies import make_policy

    make_policy(kind, MODELS, **kwargs).save(d)
    return d


@pytest.fixture()
def reg(tmp_path: Path) -> PolicyRegistry:
    return PolicyRegistry.create(tmp_path / "reg")


def test_open_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"nope: not a policy registry \(does not exist\)"):
        PolicyRegistry(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    with pytest.raises(RegistryError, match="plain: not a policy registry"):
        PolicyRegistry(tmp_path / "plain")
    with pytest.raises(RegistryError, match="non-empty folder that is not a policy registry"):
        PolicyRegistry.create(tmp_path / "plain")


def test_create_is_idempotent_and_keeps_state(tmp_path: Path) -> None:
    r = PolicyRegistry.create(tmp_path / "reg")
    v = r.register(_artifact(tmp_path / "art"))
    r.set_live(v, reason="first", actor="test")
    again = PolicyRegistry.create(tmp_path / "reg")
    assert again.live == v
    assert [i.version for i in again.versions()] == [v]


def test_register_copies_validates_and_describes(reg: PolicyRegistry, tmp_path: Path) -> None:
    v1 = reg.register(_artifact(tmp_path / "r"), source="unit")
    v2 = reg.register(_artifact(tmp_path / "s", "single", model="b"))
    assert (v1, v2) == ("v0001", "v0002")
    infos = reg.versions()
    assert [i.version for i in infos] == ["v0001", "v0002"]
    assert infos[0].kind == "random" and infos[1].kind == "single"
    assert infos[0].models == MODELS
    assert infos[0].source == "unit"
    assert infos[1].source == str((tmp_path / "s").resolve())
    assert set(infos[0].files_sha256) == {"policy.json"}
    assert len(infos[0].files_sha256["policy.json"]) == 64
    assert infos[1].policy_version is not None and infos[1].policy_version.startswith("single@")
    assert reg.path(v2) == reg.root / "versions" / "v0002"
    assert reg.verify(v1) == []
    # the copy is independent of the source
    (tmp_path / "r" / "policy.json").write_text("{}")
    assert reg.load(v1).kind == "random"
    assert reg.load(v2).metadata["registry_version"] == "v0002"
    # a tampered copy is detected
    (reg.path(v1) / "policy.json").write_text((reg.path(v1) / "policy.json").read_text() + " ")
    assert reg.verify(v1) == ["policy.json"]
    assert [r["version"] for r in reg.records("register")] == ["v0001", "v0002"]


def test_register_refuses_what_does_not_load(reg: PolicyRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="missing: not a folder"):
        reg.register(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "policy.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"bad: not a loadable policy artifact .*invalid JSON"):
        reg.register(bad)
    assert reg.versions() == []
    assert not any(p.name.startswith("v") for p in (reg.root / "versions").iterdir())


def test_unknown_version_names_it_and_the_known_ones(reg: PolicyRegistry, tmp_path: Path) -> None:
    reg.register(_artifact(tmp_path / "r"))
    with pytest.raises(UnknownVersionError, match=r"unknown version 'v0042' \(known: \['v0001'\]\)") as ei:
        reg.path("v0042")
    assert isinstance(ei.value, KeyError)
    with pytest.raises(KeyError, match="v0007"):
        reg.set_live("v0007", reason="x", actor="t")
    with pytest.raises(KeyError, match="v0009"):
        reg.load("v0009")


def test_set_live_rollback_round_trip(reg: PolicyRegistry, tmp_path: Path) -> None:
    vs = [reg.register(_artifact(tmp_path / f"a{i}")) for i in range(3)]
    assert reg.live is None and reg.previous is None and reg.canary is None
    with pytest.raises(RegistryError, match="no live version yet"):
        reg.load_live_policy()
    with pytest.raises(RegistryError, match="no previous version to roll back to"):
        reg.rollback(reason="x", actor="t")
    reg.set_live(vs[0], reason="first", actor="t")
    reg.set_live(vs[1], reason="better", actor="t")
    reg.set_live(vs[2], reason="even better", actor="t")
    assert reg.live == "v0003" and reg.previous == "v0002" and reg.previous_stack == ["v0001", "v0002"]
    assert reg.load_live_policy().metadata["registry_version"] == "v0003"
    assert reg.rollback(reason="bad quality", actor="router") == "v0002"
    assert reg.live == "v0002" and reg.previous_stack == ["v0001"]
    assert reg.rollback(reason="again", actor="cli") == "v0001"
    assert reg.previous is None
    with pytest.raises(RegistryError, match=r"no previous version to roll back to \(live: v0001\)"):
        reg.rollback(reason="x", actor="t")
    # setting the live version again changes nothing but is recorded
    reg.set_live("v0001", reason="noop", actor="t")
    assert reg.previous_stack == []
    lives = reg.records("set_live")
    assert [(r["version"], r["previous_live"]) for r in lives] == [
        ("v0001", None), ("v0002", "v0001"), ("v0003", "v0002"), ("v0001", "v0001")
    ]
    rbs = reg.records("rollback")
    assert [(r["from"], r["to"], r["reason"], r["actor"]) for r in rbs] == [
        ("v0003", "v0002", "bad quality", "router"), ("v0002", "v0001", "again", "cli")
    ]
    seqs = [r["seq"] for r in reg.records()]
    assert seqs == list(range(1, len(seqs) + 1))
    st = json.loads((reg.root / "state.json").read_text())
    assert st["last_record"] == f"{seqs[-1]:06d}-set_live.json"


def test_canary_start_ramp_end_and_promotion(reg: PolicyRegistry, tmp_path: Path) -> None:
    v1, v2 = (reg.register(_artifact(tmp_path / f"a{i}")) for i in range(2))
    reg.set_live(v1, reason="first", actor="t")
    with pytest.raises(RegistryError, match="is the live version already"):
        reg.set_canary(v1, 0.2, reason="x", actor="t")
    for bad in (0.0, 1.5, -0.1, True):
        with pytest.raises(RegistryError, match=r"share: expected a number in \(0, 1\]"):
            reg.set_canary(v2, bad, reason="x", actor="t")  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="takes share 0"):
        reg.set_canary(None, 0.5, reason="x", actor="t")
    reg.set_canary(v2, 0.2, reason="start", actor="t")
    c = reg.canary
    assert c is not None and (c.version, c.share) == ("v0002", 0.2)
    reg.set_canary(v2, 0.5, reason="ramp", actor="t")
    c2 = reg.canary
    assert c2 is not None and c2.share == 0.5 and c2.started_at == c.started_at
    reg.set_canary(None, reason="stop", actor="t")
    assert reg.canary is None
    reg.set_canary(v2, 0.8, reason="again", actor="t")
    reg.set_live(v2, reason="ramped to 100%", actor="t")
    assert reg.live == "v0002" and reg.canary is None and reg.previous == "v0001"
    assert reg.records("set_live")[-1]["canary_ended"]["share"] == 0.8
    # a rollback ends a running canary too
    v3 = reg.register(_artifact(tmp_path / "a3"))
    reg.set_canary(v3, 0.1, reason="start", actor="t")
    reg.rollback(reason="regression", actor="router")
    assert reg.live == "v0001" and reg.canary is None
    assert [r["share"] for r in reg.records("canary")] == [0.2, 0.5, 0.0, 0.8, 0.1]


def test_records_validate_kind_and_payload(reg: PolicyRegistry) -> None:
    p = reg.record("alert", {"window": 200, "quality": float("nan"), "models": ("a", "b")})
    assert p.name == "000001-alert.json"
    rec = json.loads(p.read_text())
    assert rec["kind"] == "alert" and rec["seq"] == 1 and rec["quality"] is None and rec["models"] == ["a", "b"]
    for bad in ("Alert", "a-b", "", "1x"):
        with pytest.raises(RegistryError, match="kind: expected a lowercase identifier"):
            reg.record(bad, {})
    with pytest.raises(RegistryError, match=r"keys \['seq'\] are reserved"):
        reg.record("alert", {"seq": 3})
    with pytest.raises(RegistryError, match="not JSON-able: object"):
        reg.record("alert", {"x": object()})
    with pytest.raises(RegistryError, match="reason: expected a non-empty text"):
        reg.set_canary(None, reason=" ", actor="t")
    assert len(reg.records()) == 1 and reg.records("other") == []


def _hammer(root: str, worker: int, n: int, version: str) -> None:
    r = PolicyRegistry(root)
    for i in range(n):
        if i % 2:
            r.set_canary(version, round(0.1 + 0.8 * (i / n), 3), reason=f"w{worker}-{i}", actor=f"w{worker}")
        else:
            r.record("probe", {"worker": worker, "i": i})


def _watch(root: str, stop: threading.Event, seen: list[int], errors: list[str]) -> None:
    p = Path(root) / "state.json"
    while not stop.is_set():
        try:
            st = json.loads(p.read_text())
            assert {"live", "previous", "canary"} <= set(st)
            seen.append(1)
        except Exception as e:  # any failure to parse is the bug under test
            errors.append(repr(e))


@pytest.mark.slow
def test_concurrent_processes_and_threads_lose_nothing(reg: PolicyRegistry, tmp_path: Path) -> None:
    v1, v2 = (reg.register(_artifact(tmp_path / f"a{i}")) for i in range(2))
    reg.set_live(v1, reason="first", actor="t")
    n = 40
    stop = threading.Event()
    seen: list[int] = []
    errors: list[str] = []
    watcher = threading.Thread(target=_watch, args=(str(reg.root), stop, seen, errors))
    watcher.start()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(reg.root), w, n, v2)) for w in range(2)]
    threads = [threading.Thread(target=_hammer, args=(str(reg.root), 10 + w, n, v2)) for w in range(2)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    stop.set()
    watcher.join()
    assert errors == []
    assert seen  # the watcher did read the state while the writers ran
    recs = reg.records()
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    probes = {(r["worker"], r["i"]) for r in reg.records("probe")}
    assert probes == {(w, i) for w in (0, 1, 10, 11) for i in range(0, n, 2)}
    canaries = reg.records("canary")
    assert len(canaries) == 4 * (n // 2)
    c = reg.canary
    assert c is not None and c.version == v2
    assert reg.state()["last_record"] == f"{canaries[-1]['seq']:06d}-canary.json"
    assert not list(reg.root.glob(".tmp-*")) and not list(reg.records_dir.glob(".tmp-*"))


def test_example_gate_file_loads() -> None:
    from router_rl.registry import GateConfig

    g = GateConfig.from_file(Path(__file__).resolve().parents[2] / "examples" / "gate.yaml")
    assert g == GateConfig()

"""``POST /v1/feedback`` against a real router on 127.0.0.1: request ids, validation, idempotency, storage."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from _router_helpers import API_TOKEN, SIMPLE_PROMPT, router_config

from router_rl.core.errors import ConfigError
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import load_config, parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.decision_log import read_decision_log
from router_rl.traces.parts import read_parts
from router_rl.traces.schema import FEEDBACK_SCHEMA

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
AUTH = {"authorization": f"Bearer {API_TOKEN}"}
CHAT = {"model": "router-rl/auto", "messages": [{"role": "user", "content": SIMPLE_PROMPT}]}


class Srv:
    def __init__(self, srv: RouterServer, root: Path) -> None:
        self.srv = srv
        self.root = root
        self.http = httpx.Client(base_url=srv.base_url, timeout=20, headers=AUTH)

    def chat(self, **headers: str) -> httpx.Response:
        r = self.http.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert r.status_code == 200, r.text
        return r

    def rid(self) -> str:
        return self.chat().headers["x-request-id"]

    def fb(self, body: Any, **headers: str) -> httpx.Response:
        return self.http.post("/v1/feedback", json=body, headers=headers)

    def rows(self) -> pl.DataFrame:
        return read_parts(self.root / "feedback", schema=FEEDBACK_SCHEMA, what="feedback")


def _start(backends: Backends, root: Path, **overrides: Any) -> tuple[HybridRouter, RouterServer]:
    local, cloud = backends
    cfg = parse_config(router_config(
        local.base_url, cloud.base_url,
        logging={"decision_log_dir": str(root / "decisions"), "batch_size": 1000, "flush_interval_s": 60},
        **overrides,
    ))
    router = HybridRouter.from_config(cfg)
    return router, RouterServer(build_server_app(router))


@pytest.fixture
def s(backends: Backends, tmp_path: Path) -> Iterator[Srv]:
    _, srv = _start(backends, tmp_path)
    with srv:
        h = Srv(srv, tmp_path)
        yield h
        h.http.close()


# --- request ids ---------------------------------------------------------------------------
def test_every_response_carries_its_request_id_stream_too(s: Srv) -> None:
    r = s.chat()
    rid = r.headers["x-request-id"]
    assert len(rid) == 32 and r.json()["id"] == f"chatcmpl-{rid}"
    own = s.chat(**{"x-request-id": "agent-7-task-3"})
    assert own.headers["x-request-id"] == "agent-7-task-3" and own.json()["id"] == "chatcmpl-agent-7-task-3"
    for given in (None, "agent-7-stream-1"):
        extra = {"x-request-id": given} if given else {}
        with s.http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=extra) as st:
            assert st.status_code == 200
            hid = st.headers["x-request-id"]
            chunks = [json.loads(line[6:]) for line in st.iter_lines() if line.startswith("data: {")]
        assert given is None or hid == given
        assert len(chunks) >= 3 and {c["id"] for c in chunks} == {f"chatcmpl-{hid}"}
    bad = s.http.post("/v1/chat/completions", json={"model": "router-rl/auto"}, headers={"x-request-id": "bad-1"})
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "bad-1"
    noauth = httpx.post(s.srv.base_url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert noauth.status_code == 401 and len(noauth.headers["x-request-id"]) == 32
    s.srv.app.state.router.decision_log.flush()
    logged = set(read_decision_log(s.root / "decisions")["request_id"])
    assert {rid, "agent-7-task-3", "agent-7-stream-1", hid, "bad-1", noauth.headers["x-request-id"]} <= logged


# --- the single form ---------------------------------------------------------------------------
def test_feedback_is_stored_once_on_disk_before_the_answer(s: Srv) -> None:
    rid = s.rid()
    ev = {"request_id": rid, "quality": 0.75, "source": "judge:pytest", "details": {"passed": 3, "failed": 1},
          "ts": "2026-11-30T10:00:00Z"}
    r = s.fb(ev)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "feedback" and out["status"] == "stored" and out["request_id"] == rid
    assert out["id"].startswith("sha256:") and out["redacted"] == []
    rows = s.rows()  # read while the server runs: acknowledged means on disk
    assert rows.height == 1
    row = rows.row(0, named=True)
    assert (row["feedback_id"], row["request_id"], row["quality"], row["source"]) == (out["id"], rid, 0.75,
                                                                                      "judge:pytest")
    assert json.loads(row["details"]) == {"failed": 1, "passed": 3}
    assert row["ts"].isoformat() == "2026-11-30T10:00:00+00:00" and row["received_ts"] > row["ts"]
    # the decision log (batch 1000, 60 s) was flushed before the feedback part: its row is on disk too
    assert rid in set(read_decision_log(s.root / "decisions")["request_id"])
    again = s.fb({**ev, "details": {"failed": 1, "passed": 3}})  # same event, keys in another order
    assert again.status_code == 200 and again.json()["status"] == "duplicate" and again.json()["id"] == out["id"]
    assert s.rows().height == 1


def test_several_sources_and_repeated_observations_are_kept(s: Srv) -> None:
    rid = s.rid()
    got = [s.fb(ev).json()["status"] for ev in (
        {"request_id": rid, "quality": 1.0, "source": "judge:pytest"},
        {"request_id": rid, "quality": 0.2, "source": "human"},
        {"request_id": rid, "quality": 1.0, "source": "judge:pytest"},  # same, no ts: the same feedback
        {"request_id": rid, "quality": 1.0, "source": "judge:pytest", "ts": time.time() - 5},  # a new observation
        {"request_id": f"chatcmpl-{rid}", "quality": 0.5, "source": "agent"},  # the completion id works too
    )]
    assert got == ["stored", "stored", "duplicate", "stored", "stored"]
    rows = s.rows()
    assert rows.height == 4 and set(rows["request_id"]) == {rid}
    assert sorted(rows["source"]) == ["agent", "human", "judge:pytest", "judge:pytest"]


def test_idempotency_key_body_or_header_and_reuse_with_other_content(s: Srv) -> None:
    rid = s.rid()
    ev = {"request_id": rid, "quality": 0.4, "source": "agent"}
    r1 = s.fb({**ev, "idempotency_key": "k-1"})
    assert r1.json() | {"redacted": []} == {"object": "feedback", "id": "k-1", "request_id": rid, "source": "agent",
                                            "status": "stored", "redacted": []}
    assert s.fb({**ev, "ts": time.time()}, **{"Idempotency-Key": "k-1"}).json()["status"] == "duplicate"
    reused = s.fb({**ev, "quality": 0.9, "idempotency_key": "k-1"})
    assert reused.status_code == 409
    err = reused.json()["error"]
    assert err["code"] == "idempotency_key_reused" and err["param"] == "idempotency_key"
    mismatch = s.fb({**ev, "idempotency_key": "k-2"}, **{"Idempotency-Key": "k-3"})
    assert mismatch.status_code == 422 and mismatch.json()["error"]["param"] == "idempotency_key"
    assert s.rows()["feedback_id"].to_list() == ["k-1"]


def test_unknown_and_rejected_request_ids(s: Srv, backends: Backends) -> None:
    r = s.fb({"request_id": "never-seen-1", "quality": 1, "source": "agent"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert (err["code"], err["param"], err["type"]) == ("unknown_request_id", "request_id", "not_found_error")
    assert "never-seen-1" in err["message"]
    bad = s.http.post("/v1/chat/completions", json={"model": "router-rl/auto"}, headers={"x-request-id": "rej-1"})
    assert bad.status_code == 400
    r = s.fb({"request_id": "rej-1", "quality": 1, "source": "agent"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "request_not_routed"
    assert "refused before routing" in r.json()["error"]["message"]
    unknown_model = s.http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"},
                                headers={"x-request-id": "unk-model-1"})
    assert unknown_model.status_code == 404
    assert s.fb({"request_id": "unk-model-1", "quality": 1, "source": "agent"}).status_code == 409
    assert s.rows().height == 0
    for srv in backends:  # decided, but no model could answer: the decision can be labelled
        srv.backend.faults.replace([{"kind": "http_5xx"}])
    failed = s.http.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "failed-1"})
    assert failed.status_code == 503
    assert s.fb({"request_id": "failed-1", "quality": 0, "source": "agent"}).json()["status"] == "stored"


@pytest.mark.parametrize(
    ("patch", "status", "param", "msg"),
    [
        ({"quality": 1.5}, 422, "quality", "expected a number in [0, 1]"),
        ({"quality": -0.01}, 422, "quality", "[0, 1]"),
        ({"quality": "0.5"}, 422, "quality", "[0, 1]"),
        ({"quality": True}, 422, "quality", "[0, 1]"),
        ({"quality": None}, 422, "quality", "required"),
        ({"source": ""}, 422, "source", "1-64 characters"),
        ({"source": "has space"}, 422, "source", "1-64 characters"),
        ({"source": "x" * 65}, 422, "source", "1-64 characters"),
        ({"source": "AKIAIOSFODNN7EXAMPLE"}, 422, "source", "privacy screen"),
        ({"request_id": 7}, 422, "request_id", "non-empty string"),
        ({"details": ["a"]}, 422, "details", "expected a JSON object"),
        ({"details": {"log": "x" * 20_000}}, 422, "details", "larger than 16384 bytes"),
        ({"ts": time.time() + 3600}, 422, "ts", "in the future"),
        ({"ts": time.time() * 1000}, 422, "ts", "not milliseconds"),
        ({"ts": "2026-11-30 10:00:00"}, 422, "ts", "with an offset"),
        ({"ts": "yesterday"}, 422, "ts", "RFC 3339"),
        ({"ts": "1999-12-31T23:59:59Z"}, 422, "ts", "before 2000"),
        ({"ts": False}, 422, "ts", "RFC 3339"),
        ({"idempotency_key": "has space"}, 422, "idempotency_key", "1-128 characters"),
        ({"timestamp": "2026-11-30T10:00:00Z"}, 422, "timestamp", "unknown field"),
    ],
)
def test_bad_values_are_refused_naming_the_field(
    s: Srv, patch: dict[str, Any], status: int, param: str, msg: str
) -> None:
    ev = {"request_id": "whatever", "quality": 0.5, "source": "agent", **patch}
    r = s.fb(ev)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and msg in err["message"] and set(err) == {"message", "type", "param", "code"}
    assert s.rows().height == 0


def test_body_level_refusals_and_auth(s: Srv) -> None:
    nan = s.http.post("/v1/feedback", content=b'{"request_id": "x", "quality": NaN, "source": "a"}',
                      headers={"content-type": "application/json"})
    assert nan.status_code == 400 and nan.json()["error"]["param"] == "quality"
    assert s.http.post("/v1/feedback", content=b"{nope").status_code == 400
    assert s.fb([1, 2]).status_code == 422
    noauth = httpx.post(s.srv.base_url + "/v1/feedback", json={"request_id": "x", "quality": 1, "source": "a"})
    assert noauth.status_code == 401 and noauth.json()["error"]["code"] == "invalid_api_key"


def test_secrets_in_details_are_redacted_never_stored_or_logged(s: Srv, caplog: pytest.LogCaptureFixture) -> None:
    rid = s.rid()
    secret, pwd = "AKIAIOSFODNN7EXAMPLE", "hunter2hunter2"
    details = {"passed": 12, "failed": 3, "note": f"creds {secret}", "cfg": {"password": pwd},
               "runs": [{"out": "fine"}, {"out": "mail me at bob.smith@corp-mail.com"}], "ok": True}
    with caplog.at_level(logging.DEBUG):
        r = s.fb({"request_id": rid, "quality": 0.8, "source": "judge:pytest", "details": details})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["redacted"]) == ["details.cfg.password", "details.note", "details.runs[1].out"]
    stored = json.loads(s.rows()["details"][0])
    assert stored == {"passed": 12, "failed": 3, "note": "[redacted]", "cfg": {"password": "[redacted]"},
                      "runs": [{"out": "fine"}, {"out": "[redacted]"}], "ok": True}
    blobs = b"".join(p.read_bytes() for p in (s.root / "feedback").glob("part-*.parquet"))
    logs = "\n".join(rec.getMessage() for rec in caplog.records)
    for text in (secret, pwd, "bob.smith", "fine", "passed"):
        assert text not in logs
    for text in (secret, pwd, "bob.smith"):
        assert text.encode() not in blobs
    flagged_key = s.fb({"request_id": rid, "quality": 0.8, "source": "agent", "details": {secret: 1}})
    assert flagged_key.status_code == 422 and flagged_key.json()["error"]["param"] == "details"
    assert secret not in flagged_key.text


# --- the batch form ----------------------------------------------------------------------------
def test_batch_is_all_or_nothing_and_names_the_item(s: Srv) -> None:
    a, b = s.rid(), s.rid()
    good = [{"request_id": a, "quality": 1, "source": "judge:pytest"},
            {"request_id": b, "quality": 0, "source": "human"}]
    bad_value = s.fb({"items": [*good, {"request_id": a, "quality": 2, "source": "agent"}]})
    assert bad_value.status_code == 422 and bad_value.json()["error"]["param"] == "items[2].quality"
    unknown = s.fb({"items": [good[0], {"request_id": "nope-9", "quality": 0, "source": "agent"}]})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "items[1].request_id"
    assert s.rows().height == 0  # nothing of a refused batch was stored
    ok = s.fb({"items": [*good, good[0]]})
    assert ok.status_code == 200
    body = ok.json()
    assert [d["status"] for d in body["data"]] == ["stored", "stored", "duplicate"]
    assert (body["stored"], body["duplicate"], body["data"][0]["id"]) == (2, 1, body["data"][2]["id"])
    assert s.rows().height == 2
    conflict = s.fb({"items": [{**good[0], "idempotency_key": "bk"}, {**good[1], "idempotency_key": "bk"}]})
    assert conflict.status_code == 409 and conflict.json()["error"]["param"] == "items[1].idempotency_key"
    assert s.fb({"items": []}).json()["error"]["param"] == "items"
    assert s.fb({"items": good, "extra": 1}).json()["error"]["param"] == "items"
    hdr = s.fb({"items": good}, **{"Idempotency-Key": "x"})
    assert hdr.status_code == 422 and hdr.json()["error"]["param"] == "Idempotency-Key"
    assert s.rows().height == 2


def test_batch_size_is_bounded(backends: Backends, tmp_path: Path) -> None:
    _, srv = _start(backends, tmp_path, feedback={"max_batch": 3})
    with srv:
        h = Srv(srv, tmp_path)
        rid = h.rid()
        r = h.fb({"items": [{"request_id": rid, "quality": 0.1 * i, "source": "agent"} for i in range(4)]})
        assert r.status_code == 422 and r.json()["error"]["param"] == "items" and "at most 3" in r.text
        assert h.fb({"items": [{"request_id": rid, "quality": 0.1 * i, "source": "agent"}
                               for i in range(3)]}).json()["stored"] == 3


# --- concurrency -------------------------------------------------------------------------------
def _threads(n: int, fn: Any) -> list[Any]:
    out: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        with httpx.Client(timeout=30, headers=AUTH) as c:
            barrier.wait()
            out[i] = fn(c, i)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_twenty_concurrent_duplicates_are_stored_once(s: Srv) -> None:
    rid = s.rid()
    url = s.srv.base_url + "/v1/feedback"
    keyed = _threads(20, lambda c, i: c.post(url, json={"request_id": rid, "quality": 0.5, "source": "agent",
                                                           "idempotency_key": "same-key"}))
    hashed = _threads(20, lambda c, i: c.post(url, json={"request_id": rid, "quality": 0.25, "source": "human"}))
    for resps in (keyed, hashed):
        assert [r.status_code for r in resps] == [200] * 20
        st = sorted(r.json()["status"] for r in resps)
        assert st == ["duplicate"] * 19 + ["stored"] and len({r.json()["id"] for r in resps}) == 1
    rows = s.rows()
    assert rows.height == 2 and sorted(rows["source"]) == ["agent", "human"]
    distinct = _threads(20, lambda c, i: c.post(url, json={"request_id": rid, "quality": i / 20, "source": "agent",
                                                              "idempotency_key": f"k{i}"}))
    assert [r.json()["status"] for r in distinct] == ["stored"] * 20
    assert s.rows().height == 22 and s.rows()["feedback_id"].n_unique() == 22


# --- metrics, disabled, config -------------------------------------------------------------------
def test_feedback_counter_by_source_and_outcome(s: Srv) -> None:
    rid = s.rid()
    s.fb({"request_id": rid, "quality": 1, "source": "judge:pytest"})
    s.fb({"request_id": rid, "quality": 1, "source": "judge:pytest"})
    s.fb({"request_id": "nope", "quality": 1, "source": "agent"})
    s.fb({"request_id": rid, "quality": 7, "source": "agent"})
    text = s.http.get("/metrics").text
    for line in ('router_rl_feedback_total{outcome="stored",source="judge:pytest"} 1.0',
                 'router_rl_feedback_total{outcome="duplicate",source="judge:pytest"} 1.0',
                 'router_rl_feedback_total{outcome="rejected",source="agent"} 1.0',
                 'router_rl_feedback_total{outcome="rejected",source="invalid"} 1.0'):
        assert line in text


def test_without_a_decision_log_feedback_answers_501_naming_the_setting(backends: Backends) -> None:
    local, cloud = backends
    router = HybridRouter.from_config(parse_config(router_config(local.base_url, cloud.base_url)))
    with RouterServer(build_server_app(router)) as srv:
        r = httpx.post(srv.base_url + "/v1/feedback", json={"request_id": "x", "quality": 1, "source": "a"},
                       headers=AUTH)
    assert r.status_code == 501 and r.json()["error"]["code"] == "feedback_disabled"
    assert "logging.decision_log_dir" in r.json()["error"]["message"]


def test_feedback_enabled_false_answers_501(backends: Backends, tmp_path: Path) -> None:
    _, srv = _start(backends, tmp_path, feedback={"enabled": False})
    with srv:
        r = httpx.post(srv.base_url + "/v1/feedback", json={"request_id": "x", "quality": 1, "source": "a"},
                       headers=AUTH)
    assert r.status_code == 501 and "feedback.enabled" in r.json()["error"]["message"]
    assert not (tmp_path / "feedback").exists()


def test_feedback_folder_config(backends: Backends, tmp_path: Path) -> None:
    import yaml

    local, cloud = backends
    with pytest.raises(ConfigError, match=r"feedback\.dir"):
        parse_config(router_config(local.base_url, cloud.base_url, logging={"decision_log_dir": str(tmp_path / "d")},
                                   feedback={"dir": str(tmp_path / "d")}))
    with pytest.raises(ConfigError, match=r"feedback\.max_batch"):
        parse_config(router_config(local.base_url, cloud.base_url, feedback={"max_batch": 0}))
    cfg = parse_config(router_config(local.base_url, cloud.base_url, logging={"decision_log_dir": str(tmp_path / "d")}))
    assert cfg.feedback_dir() == tmp_path / "feedback"
    assert parse_config(router_config(local.base_url, cloud.base_url)).feedback_dir() is None
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(router_config(
        local.base_url, cloud.base_url, logging={"decision_log_dir": "logs/dl"}, feedback={"dir": "labels"})))
    loaded = load_config(tmp_path / "router.yaml", check_credentials=False)
    assert loaded.feedback_dir() == tmp_path / "labels"
    other = loaded.model_copy(update={"feedback": loaded.feedback.model_copy(update={"max_batch": 5})})
    assert other.fingerprint() == loaded.fingerprint()  # feedback settings decide nothing


def test_restart_keeps_dedupe_and_known_ids(backends: Backends, tmp_path: Path) -> None:
    _, srv = _start(backends, tmp_path)
    with srv:
        h = Srv(srv, tmp_path)
        rid = h.rid()
        assert h.fb({"request_id": rid, "quality": 0.5, "source": "agent"}).json()["status"] == "stored"
        rid2 = h.rid()  # routed, never got feedback: its decision row is flushed at shutdown
    _, srv = _start(backends, tmp_path)
    with srv:
        h = Srv(srv, tmp_path)
        assert h.fb({"request_id": rid, "quality": 0.5, "source": "agent"}).json()["status"] == "duplicate"
        assert h.fb({"request_id": rid2, "quality": 0.9, "source": "human"}).json()["status"] == "stored"
        assert h.fb({"request_id": "other", "quality": 0.9, "source": "human"}).status_code == 404
    assert h.rows().height == 2


def test_an_unreadable_part_fails_start_up_naming_the_setting(backends: Backends, tmp_path: Path) -> None:
    (tmp_path / "feedback").mkdir()
    (tmp_path / "feedback" / "part-x.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match=r"feedback\.dir: .*part-x\.parquet"):
        _start(backends, tmp_path)


def test_an_error_answer_names_its_logged_request(s: Srv) -> None:
    r = s.http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
    assert r.status_code == 404
    rid = r.headers["x-request-id"]
    fb = s.fb({"request_id": rid, "quality": 0.5, "source": "agent"})
    assert fb.status_code == 409, fb.text  # logged, but refused before routing: never served

"""Grafana dashboards and Prometheus rules read only series a running router exports (or the rules record)."""

from __future__ import annotations

import json

import pytest
import yaml
from _ops_helpers import DEPLOY, LiveFleet, exported_series, promql_series, recorded_series

from router_rl.eval.live_render import VIEWS

DASHBOARDS = DEPLOY / "grafana" / "dashboards"
#: Series of the local engines' own /metrics (scrape jobs llamacpp / vllm in prometheus.yml).
ENGINE_SERIES = {"llamacpp:kv_cache_usage_ratio", "llamacpp:requests_processing", "vllm:gpu_cache_usage_perc",
                 "vllm:num_requests_running", "vllm:num_requests_waiting"}
#: Series Prometheus itself writes per target.
PROMETHEUS_SERIES = {"up"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name of a real running router's /metrics, after traffic and feedback."""
    with LiveFleet(tmp_path_factory.mktemp("dash")) as fleet:
        fleet.traffic(1)
        fleet.feedback()
        return exported_series(fleet.metrics_text())


def _dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def test_promql_series_parses_names_not_functions_labels_or_numbers() -> None:
    expr = ('(sum by (le, complexity) (rate(router_rl_task_latency_seconds_bucket{agent_type!="x"}[5m])) * 3 / 1e6)'
            ' / ignoring(location) group_left sum(router_rl:cost_usd:rate1h offset 1h) and on() vector(0)')
    assert promql_series(expr) == {"router_rl_task_latency_seconds_bucket", "router_rl:cost_usd:rate1h"}


def test_four_views_with_valid_structure_and_provisioning() -> None:
    boards = _dashboards()
    assert set(boards) == set(VIEWS) == {"executive", "operations", "quality", "routing"}
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "router-rl.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert ds["datasources"][0]["type"] == "prometheus"
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "router-rl.yml").read_text())
    assert prov["providers"][0]["type"] == "file" and prov["providers"][0]["options"]["path"]
    assert len({b["uid"] for b in boards.values()}) == 4
    for name, b in boards.items():
        assert b["title"] and b["panels"], name
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in b["panels"]:
            assert p["datasource"]["uid"] == uid and p["targets"], (name, p["title"])
            assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)) and all(t["expr"].strip() for t in p["targets"])


def test_every_dashboard_query_reads_an_existing_series(exported: set[str]) -> None:
    known = exported | recorded_series() | ENGINE_SERIES | PROMETHEUS_SERIES
    missing = {}
    for name, b in _dashboards().items():
        for p in b["panels"]:
            for t in p["targets"]:
                bad = promql_series(t["expr"]) - known
                if bad:
                    missing[f"{name}/{p['title']}"] = sorted(bad)
    assert not missing, missing
    # the engine series are documented where they are scraped
    scrape = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert all(s in scrape for s in ENGINE_SERIES)
    # and the check can fail: a made-up series is caught
    assert promql_series("sum(rate(router_rl_nope_total[5m]))") - known == {"router_rl_nope_total"}


def test_every_rule_reads_an_exported_or_earlier_recorded_series(exported: set[str]) -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())["groups"]
    recorded = recorded_series()
    needed = set()
    for g in groups:
        for r in g["rules"]:
            needed |= promql_series(r["expr"])
    assert needed - exported - recorded - PROMETHEUS_SERIES == set()
    # the operations series of the router are all used by a rule or a dashboard
    ops = {"router_rl_tokens_total", "router_rl_requests_by_class_total", "router_rl_task_latency_seconds_bucket",
           "router_rl_feedback_quality_sum", "router_rl_feedback_quality_count", "router_rl_provider_up",
           "router_rl_breaker_transitions_total", "router_rl_provider_down_seconds_total"}
    assert ops <= exported
    used = needed | {s for b in _dashboards().values() for p in b["panels"] for t in p["targets"]
                     for s in promql_series(t["expr"])}
    assert ops <= used, ops - used


"""`router-rl report --log`: the operators' report from a real router's decision log and feedback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _ops_helpers import CLOUD_PRICE, LiveFleet, catalog
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.eval.live_inputs import LiveReportError, read_logged
from router_rl.eval.live_report import LiveReportConfig, live_report
from router_rl.logs.join import join_logs
from router_rl.traces.decision_log import read_decision_log

runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Traffic through a real router (with a local outage, fallbacks, a breaker trip), feedback, the join."""
    root = tmp_path_factory.mktemp("live")
    with LiveFleet(root) as fleet:
        fleet.traffic(3)
        fleet.outage(3)
        fleet.traffic(1, tag="o")
        time.sleep(0.7)  # past the breaker's reset timeout: the next local call probes and closes it
        fleet.traffic(1, tag="p")
        n_fb = fleet.feedback(skip_last=10)
        sent = list(fleet.sent)
    cat = catalog()
    cat.save(root / "catalog.json")
    table, rep = join_logs(root / "decisions", root / "feedback", catalog=cat)
    table.write_parquet(root / "logged.parquet")
    return {"root": root, "sent": sent, "n_feedback": n_fb, "join": rep}


def _run(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def test_report_on_a_live_log_has_the_numbers_of_the_log(live: dict[str, Any]) -> None:
    root = live["root"]
    out = root / "report"
    text = _run(["report", "--log", str(root / "logged.parquet"), "--catalog", str(root / "catalog.json"),
                 "--decisions", str(root / "decisions"), "-o", str(out), "--n-bootstrap", "200"])
    for name in ("report.md", "report.html", "live_report.json", "executive.png", "operations.png", "quality.png",
                 "routing.png"):
        assert (out / name).stat().st_size > 0, name
    rep = json.loads((out / "live_report.json").read_text())
    dec = read_decision_log(root / "decisions")
    n = len(live["sent"])
    assert rep["counts"]["rows"] == n == dec.height
    assert rep["counts"]["labeled"] == live["n_feedback"] and rep["counts"]["unlabeled"] == 10
    # shares: what served each request, from the router's own answers
    served = [s["served"] for s in live["sent"]]
    local = sum(m is not None and m != "cloud-large" for m in served) / n
    failed = sum(m is None for m in served)
    assert failed >= 1 and rep["counts"]["no_answer"] == failed  # the outage: 503 when no local model answers
    assert rep["shares"]["local"] == pytest.approx(local)
    assert rep["shares"]["failed"] == pytest.approx(failed / n)
    assert rep["shares"]["cloud"] + rep["shares"]["emergency"] == pytest.approx(1 - local - failed / n)
    # cost: recorded = the log's cost_usd; counterfactual = the reference's prices on the recorded tokens
    assert rep["cost"]["reference_model"] == "cloud-large"
    ok = dec.filter(pl.col("input_tokens").is_not_null() & pl.col("cost_usd").is_not_null())
    assert rep["cost"]["rows_used"] == ok.height == n - failed and rep["cost"]["rows_excluded"] == failed
    cf = float((ok["input_tokens"] * CLOUD_PRICE[0] + ok["output_tokens"] * CLOUD_PRICE[1]).sum()) / 1e6
    assert rep["cost"]["counterfactual_usd"] == pytest.approx(cf, rel=1e-9)
    assert rep["cost"]["recorded_usd_used"] == pytest.approx(float(ok["cost_usd"].sum()), rel=1e-9)
    assert rep["cost"]["saving"] == pytest.approx(1 - float(ok["cost_usd"].sum()) / cf, rel=1e-9)
    assert 0 < rep["cost"]["saving"] < 1
    # the outage: fallbacks counted, the local breaker tripped and its uptime is below 100%
    fb = int(dec["fallback_used"].sum())
    assert fb >= 1 and rep["fallbacks"]["fallbacks"] == fb
    emergency = int(dec["fallback_reason"].str.starts_with("emergency_cloud").sum())
    assert emergency >= 1 and rep["fallbacks"]["emergency"] == emergency
    assert rep["shares"]["emergency"] == pytest.approx(emergency / n)
    assert sum(rep["fallbacks"]["by_reason"].values()) == fb
    assert rep["fallbacks"]["failed_attempts_by_kind"].get("http_5xx", 0) >= 2
    assert rep["providers"]["local"]["trips"] >= 1 and rep["providers"]["local"]["uptime"] < 1.0
    assert rep["providers"]["cloud"]["trips"] == 0 and rep["providers"]["cloud"]["uptime"] == 1.0
    # latency percentiles per complexity / agent type over the answered rows
    lat = dec.filter(pl.col("served_model").is_not_null())["latency_s"].to_numpy()
    assert rep["latency"]["overall"]["p95"] == pytest.approx(float(np.percentile(lat, 95)))
    assert set(rep["latency"]["agent_type"]) == {"test-generation", "coverage-analysis"}
    assert sum(v["n"] for v in rep["latency"]["complexity"].values()) == lat.size
    # quality: the mean of what was fed back, with an interval around it
    logged = pl.read_parquet(root / "logged.parquet")
    q = logged["quality"].drop_nulls().to_numpy()  # feedback, and 0 for the failed requests
    ov = rep["quality"]["overall"]
    assert ov["value"] == pytest.approx(float(q.mean())) and ov["lower"] < ov["value"] < ov["upper"]
    ope = rep["quality"]["ope"]
    assert ope is not None and ope["n"] == live["n_feedback"] + failed
    # "always cloud-large" scores 0.95 on unit tasks and 0.9 on race tasks: the OPE estimate is near
    dr = ope["estimates"]["dr"]
    assert dr["lower"] - 0.03 < 0.925 < dr["upper"] + 0.03
    # gates: numbers and the binding check of each phase
    g = rep["gates"]
    assert [p["phase"] for p in g["phases"]] == ["phase1", "phase2", "phase4"]
    p2 = {c["metric"]: c for c in g["phases"][1]["checks"]}
    assert p2["local_share"]["value"] == pytest.approx(local)
    # SIMPLE tasks were sent; no COMPLEX ones: the overall P95 stands in, labelled as such
    assert "latency_p50_simple" in p2 and "latency_p95_all" in p2
    p4 = {c["metric"]: c for c in g["phases"][2]["checks"]}
    assert p4["quality_ratio"]["threshold"] == 0.95 and p4["phase2.cost_saving"]["origin"] == "from phase2"
    for p in g["phases"]:
        margins = [c["margin"] for c in p["checks"] if c["margin"] is not None]
        assert p["binding"]["margin"] == min(margins)
    md = (out / "report.md").read_text()
    assert "## Phase gates on live data" in md and "counterfactual" in md and "![routing](routing.png)" in md
    assert "highest phase passed" in text


def test_window_and_agent_type_filters(live: dict[str, Any]) -> None:
    table = read_logged(live["root"] / "logged.parquet")
    ts = table.sort("ts")["ts"]
    mid = ts[ts.len() // 2]
    rep = live_report(table, catalog=catalog(), config=LiveReportConfig(since=mid, ope=False, n_bootstrap=50))
    assert rep.counts["rows"] == int((table["ts"] >= mid).sum()) and rep.counts["excluded_before_since"] > 0
    one = live_report(table, catalog=catalog(),
                      config=LiveReportConfig(agent_types=["coverage-analysis"], ope=False, n_bootstrap=50))
    assert one.counts["rows"] == sum(s["agent_type"] == "coverage-analysis" for s in live["sent"])
    assert set(one.latency["agent_type"]) == {"coverage-analysis"}
    # without the decision log there are no tokens: said, not guessed
    assert one.cost["counterfactual_usd"] is None and any("pass --decisions" in x for x in one.notes)
    with pytest.raises(LiveReportError, match="no decision left"):
        live_report(table, catalog=catalog(), config=LiveReportConfig(agent_types=["nobody"], ope=False))


def test_report_modes_are_exclusive_one_line_errors(live: dict[str, Any], tmp_path: Path) -> None:
    root = live["root"]
    both = runner.invoke(app, ["report", "--log", str(root / "logged.parquet"), "--traces", "x.parquet",
                               "-p", "random", "-o", str(tmp_path / "o")])
    neither = runner.invoke(app, ["report", "-o", str(tmp_path / "o")])
    live_flag_offline = runner.invoke(app, ["report", "--traces", "x.parquet", "-p", "random", "--since",
                                            "2026-01-01", "-o", str(tmp_path / "o")])
    bad_time = runner.invoke(app, ["report", "--log", str(root / "logged.parquet"), "--since", "yesterday",
                                   "-o", str(tmp_path / "o")])
    missing = runner.invoke(app, ["report", "--log", str(tmp_path / "none.parquet"), "-o", str(tmp_path / "o")])
    for res, flag, words in ((both, "--log", "not both"), (neither, "--log", "give --log"),
                             (live_flag_offline, "--since", "only with --log"),
                             (bad_time, "--since", "ISO time"), (missing, "--log", "no such file")):
        assert res.exit_code == 2, res.output
        assert flag in res.output and words in res.output and "Traceback" not in res.output

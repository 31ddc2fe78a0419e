"""``router-rl loop`` end to end on 127.0.0.1, small: 2 rounds x 300 requests, a bad candidate in round 2.

Real replay backends, a real router (rules + exploration, then the promoted version), the traffic
driver over HTTP, the oracle's feedback through ``POST /v1/feedback``, ``logs join``, off-policy
LightGBM, OPE, the gate, the swap, and the report files.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.loop.report import ROUND_COLUMNS
from router_rl.traces.decision_log import read_decision_log

pytestmark = [pytest.mark.slow, pytest.mark.cli]


def test_loop_two_rounds_small(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(app, [
        "loop", "--rounds", "2", "--requests-per-round", "300", "--seed", "3", "--out", str(out),
        "--fleet-tasks", "600", "--n-bootstrap", "50", "--bad-candidate-round", "2", "--candidate-kind", "corrupted",
        "--min-ess", "5",
    ])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    s = rep["summary"]
    assert s["requests"] == 600 and s["failed_requests"] == 0
    rounds = rep["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert {"utility_gain_lower", "quality_ratio_lower", "labeled_rows", "ess", "unsupported_mass"} <= set(
            r["gate"]["checks"])
        assert (r["promoted"] is not None) == r["gate"]["passed"]  # every decision recorded, promotion iff pass
        assert r["oracle"]["sent"] == 300 and r["oracle"]["mismatches"] == 0 and not r["oracle"]["errors"]
        assert r["live"]["labeled"] == 300
        # the truth from the matrix is in a sane band, and the near-on-policy estimate is close to it
        assert 0.5 < r["true_live"]["quality"] <= 1.0
        q = r["ope_live"]["quality"]
        assert abs(q["value"] - q["truth"]) < 0.1 and q["lower"] <= q["value"] <= q["upper"]
    assert rounds[1]["candidate"]["kind"] == "corrupted" and rounds[1]["candidate"]["bad"]
    # refused, whatever the live policy is by then: the corrupted candidate is usually truly worse, but when
    # round 1's promotion was rolled back on live feedback the live rules can be weaker still (the gate is
    # then conservative, which is allowed; promoting a bad candidate is not)
    assert rounds[1]["promoted"] is None
    assert s["bad_candidates_promoted"] == 0
    assert s["promotions"] + s["refusals"] == 2

    # every decision row carries the registry version that made it: the rules (v0001) in round 1; in
    # round 2 the promoted version after its hot swap under load (request 20), with no failed request
    dec = read_decision_log(out / "decisions")
    assert dec.height == 600
    reg = pl.col("policy_version").str.split("/").list.first()
    dec = dec.with_columns(reg.alias("reg"), pl.col("request_id").str.slice(-5).cast(pl.Int64).alias("i"))
    r1 = dec.filter(pl.col("request_id").str.contains("-r01-"))
    r2 = dec.filter(pl.col("request_id").str.contains("-r02-")).sort("i")
    assert r1.height == r2.height == 300
    assert set(r1["reg"].to_list()) == {"v0001"} and r1["policy_version"].str.contains("/rules@").all()
    assert rounds[0]["live_version"] == "v0001"
    if rounds[0]["promoted"]:
        v = rounds[0]["promoted"]
        assert rounds[1]["live_version"] == v and rounds[1]["candidate"]["swap"]["version"] == v
        assert set(r2.filter(pl.col("i") < 4)["reg"].to_list()) == {"v0001"}  # sent before the swap (16 in flight)
        rb = rounds[1]["rollbacks"]  # the router may roll it back on its live feedback (quality floor)
        end = rb[0]["first_request_on_previous"] if rb else 300
        assert set(r2.filter((pl.col("i") >= 100) & (pl.col("i") < end - 50))["reg"].to_list()) <= {v}
        if rb:
            assert rb[0]["from"] == v and rb[0]["to"] == "v0001" and rb[0]["actor"] == "router"
            assert set(r2.filter(pl.col("i") >= end + 50)["reg"].to_list()) == {"v0001"}
    else:
        assert set(r2["reg"].to_list()) == {"v0001"}
    from router_rl.registry import PolicyRegistry

    registry = PolicyRegistry(out / "registry")
    decisions = registry.records("promotion") + registry.records("refusal")
    assert sorted(d["round"] for d in decisions) == [1, 2]
    assert all(d["log"].endswith(f"logged-r0{d['round']}.parquet") and d["verdict"]["checks"] for d in decisions)
    rbs = [b for r in rounds for b in r["rollbacks"]]
    expected = rounds[1]["promoted"] or (rbs[-1]["to"] if rbs else None) or rounds[0]["promoted"] or "v0001"
    assert registry.live == expected

    md = (out / "report.md").read_text()
    assert "| " + " | ".join(ROUND_COLUMNS) + " |" in md
    assert rep["rounds_table"]["columns"] == list(ROUND_COLUMNS) and len(rep["rounds_table"]["rows"]) == 2
    assert (out / "report.png").stat().st_size > 10_000
    assert (out / "logged-r02.parquet").is_file() and (out / "gate-r02.json").is_file()

    # refitting round 1's learner on its own log with the loop's seed gives the loop's candidate back
    from router_rl.loop.refit import HeldOutScorer, refit_round
    from router_rl.loop.rounds import rescore
    from router_rl.policies.base import RoutingPolicy

    re = refit_round(out, 1, {"loop": {}, "more rounds": {"reward_rounds": 150}}, [3 * 1000 + 1, 7])
    assert re["rows"] == 300 and set(re["settings"]) == {"loop", "more rounds"}
    assert re["settings"]["more rounds"]["config"]["reward_rounds"] == 150
    fits = re["settings"]["loop"]["fits"]
    assert [f["seed"] for f in fits] == [3001, 7] and all(abs(f["quality_gap_points"]) < 30 for f in fits)
    saved = HeldOutScorer(out).score(RoutingPolicy.load(out / "candidates" / "r01"))
    assert saved == pytest.approx({k: v for k, v in fits[0].items() if k != "seed"}, rel=1e-9, abs=1e-12)
    assert HeldOutScorer(out).reference == pytest.approx(rescore(out)["baseline_test"], rel=1e-12)
    with pytest.raises(FileNotFoundError, match="no joined log of round 3"):
        refit_round(out, 3, {"loop": {}}, [0])


@pytest.mark.cli
def test_loop_cli_errors_name_the_flag(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["loop", "--candidate-kind", "worst", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--candidate-kind" in r.output
    r = CliRunner().invoke(app, ["loop", "--traces", str(tmp_path / "nope.parquet"), "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--traces" in r.output
    r = CliRunner().invoke(app, ["loop", "--epsilon", "0", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--epsilon" in r.output

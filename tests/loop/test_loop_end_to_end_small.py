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
        "--fleet-tasks", "600", "--n-bootstrap", "50", "--bad-candidate-round", "2", "--candidate-kind", "random",
    ])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    s = rep["summary"]
    assert s["requests"] == 600 and s["failed_requests"] == 0
    rounds = rep["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert set(r["gate"]["checks"]) == {"utility_gain", "quality_floor", "support", "ess"}
        assert (r["promoted"] is not None) == r["gate"]["passed"]  # every decision recorded, promotion iff pass
        assert r["oracle"]["sent"] == 300 and r["oracle"]["mismatches"] == 0 and not r["oracle"]["errors"]
        assert r["live"]["labeled"] == 300
        # the truth from the matrix is in a sane band, and the near-on-policy estimate is close to it
        assert 0.5 < r["true_live"]["quality"] <= 1.0
        q = r["ope_live"]["quality"]
        assert abs(q["value"] - q["truth"]) < 0.1 and q["lower"] <= q["value"] <= q["upper"]
    assert rounds[1]["candidate"]["kind"] == "random" and rounds[1]["candidate"]["bad"]
    assert rounds[1]["promoted"] is None and not rounds[1]["candidate"]["truly_better"]
    assert s["bad_candidates_promoted"] == 0
    assert s["promotions"] + s["refusals"] == 2

    # every decision row carries the version that made it: rules in round 1, the live version in round 2
    dec = read_decision_log(out / "decisions")
    assert dec.height == 600
    r1 = dec.filter(pl.col("request_id").str.contains("-r01-"))
    r2 = dec.filter(pl.col("request_id").str.contains("-r02-"))
    assert r1.height == r2.height == 300
    assert r1["policy_version"].str.starts_with("rules@").all()
    if rounds[0]["promoted"]:
        from router_rl.policies.base import RoutingPolicy

        v = RoutingPolicy.load(Path(rep["versions"][rounds[0]["promoted"]])).version
        assert set(r2["policy_version"].to_list()) == {v} and rounds[1]["live_version"] == rounds[0]["promoted"]
    else:
        assert r2["policy_version"].str.starts_with("rules@").all()

    md = (out / "report.md").read_text()
    assert "| " + " | ".join(ROUND_COLUMNS) + " |" in md
    assert rep["rounds_table"]["columns"] == list(ROUND_COLUMNS) and len(rep["rounds_table"]["rows"]) == 2
    assert (out / "report.png").stat().st_size > 10_000
    assert (out / "logged-r02.parquet").is_file() and (out / "ope-r02.json").is_file()


@pytest.mark.cli
def test_loop_cli_errors_name_the_flag(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["loop", "--candidate-kind", "worst", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--candidate-kind" in r.output
    r = CliRunner().invoke(app, ["loop", "--traces", str(tmp_path / "nope.parquet"), "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--traces" in r.output
    r = CliRunner().invoke(app, ["loop", "--epsilon", "0", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--epsilon" in r.output

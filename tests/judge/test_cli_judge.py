"""``router-rl judge tests``: JSON output and one-line errors naming the flag."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from router_rl.cli.main import app


def test_json_output(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    r = CliRunner().invoke(app, ["judge", "tests", "--code", str(code), "--tests", str(tests), "--max-mutants", "3",
                                 "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "tests" and 0.0 < out["score"] <= 1.0
    assert out["details"]["mutation"]["sampled"] == 3


def test_human_output(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    r = CliRunner().invoke(app, ["judge", "tests", "--code", str(code), "--tests", str(tests), "--no-mutation"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("score 1.0000  (judge:tests)")


def test_errors_are_one_line_naming_the_flag(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    cases = [
        (["--code", str(tmp_path / "nope.py"), "--tests", str(tests)], "--code"),
        (["--code", str(code), "--tests", str(tmp_path / "nope.py")], "--tests"),
        (["--code", str(code), "--tests", str(tests), "--max-mutants", "0"], "--max-mutants"),
    ]
    bad_cfg = tmp_path / "judge.yaml"
    bad_cfg.write_text("weights:\n  mutation: -1\n")
    cases.append((["--code", str(code), "--tests", str(tests), "--config", str(bad_cfg)], "--config"))
    for args, flag in cases:
        r = CliRunner().invoke(app, ["judge", "tests", *args])
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {flag}:"), r.output


def test_flaky_and_gaps_commands(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    hist = tmp_path / "h.json"
    hist.write_text(json.dumps({"runs": [
        {"test": "a", "commit": "c", "outcome": "passed"}, {"test": "a", "commit": "c", "outcome": "failed"},
        {"test": "b", "commit": "c", "outcome": "passed"},
    ]}))  # fmt: skip
    named = tmp_path / "named.txt"
    named.write_text("a\nb\n")
    r = CliRunner().invoke(app, ["judge", "flaky", "--history", str(hist), "--named", str(named)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "flaky" and out["details"]["precision"] == 0.5 and out["details"]["recall"] == 1.0

    hist.write_text(json.dumps({"runs": [{"test": "a", "commit": "c", "outcome": "maybe"}]}))
    r = CliRunner().invoke(app, ["judge", "flaky", "--history", str(hist), "--named", str(named)])
    assert r.exit_code == 2 and r.output.strip().startswith("error: --history:")
    assert len(r.output.strip().splitlines()) == 1

    gaps = tmp_path / "gaps.json"
    gaps.write_text(json.dumps(["tiny.py:1-30"]))
    r = CliRunner().invoke(app, ["judge", "gaps", "--code", str(code), "--tests", str(tests), "--gaps", str(gaps)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "coverage-gaps" and out["details"]["reported_missing_lines"] == 0 and out["score"] == 0.0
    gaps.write_text("[not json")
    r = CliRunner().invoke(app, ["judge", "gaps", "--code", str(code), "--tests", str(tests), "--gaps", str(gaps)])
    assert r.exit_code == 2 and r.output.strip().startswith("error: --gaps:")

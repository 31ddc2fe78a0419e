"""``router-rl judge ...``: score QE agents' work (generated tests) with the judge."""

from __future__ import annotations

from pathlib import Path

import typer

judge_app = typer.Typer(help="QE quality judge: score generated tests in a sandbox.", no_args_is_help=True)


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


@judge_app.command("tests")
def tests_cmd(
    code: Path = typer.Option(..., "--code", help="Code under test: a .py module or a package folder."),
    tests: Path = typer.Option(..., "--tests", help="The generated pytest file."),
    config: Path | None = typer.Option(None, "--config", help="Judge config YAML (weights, limits, mutation)."),
    no_mutation: bool = typer.Option(False, "--no-mutation", help="Skip mutation testing."),
    max_mutants: int | None = typer.Option(None, "--max-mutants", help="Override mutation.max_mutants."),
    workers: int | None = typer.Option(None, "--workers", help="Override mutation.workers."),
    as_json: bool = typer.Option(False, "--json", help="Print the judgement as JSON."),
) -> None:
    """Run the test file against the code in a sandbox; print the score and its breakdown."""
    from rich.markup import escape

    from router_rl.core.errors import ConfigError
    from router_rl.judge.config import JudgeConfig
    from router_rl.judge.tests_judge import judge_tests

    if not code.exists():
        _fail(f"--code: no such file or folder: {escape(str(code))}")
    if code.is_file() and code.suffix != ".py":
        _fail(f"--code: expected a .py module or a package folder, got {escape(str(code))}")
    if not tests.is_file():
        _fail(f"--tests: no such file: {escape(str(tests))}")
    try:
        cfg = JudgeConfig.from_yaml(config) if config is not None else JudgeConfig()
        overrides: dict[str, object] = {}
        if no_mutation:
            overrides["enabled"] = False
        if max_mutants is not None:
            overrides["max_mutants"] = max_mutants
        if workers is not None:
            overrides["workers"] = workers
        if overrides:
            cfg = JudgeConfig.from_dict(
                {**cfg.model_dump(), "mutation": {**cfg.mutation.model_dump(), **overrides}},
                source="command line",
            )
    except ConfigError as e:
        flag = "--config" if config is not None and e.source != "command line" else {
            "mutation.max_mutants": "--max-mutants", "mutation.workers": "--workers"
        }.get(e.setting, "--config")
        _fail(f"{flag}: {escape(str(e))}")
        return
    from router_rl.judge.sandbox import SandboxError

    try:
        judgement = judge_tests(code, tests, cfg)
    except SandboxError as e:
        _fail(f"sandbox: {escape(str(e))}")
        return
    except ValueError as e:
        text = str(e)
        flag = "--tests" if text.startswith("test file") else "--code"
        _fail(f"{flag}: {escape(text)}")
        return
    if as_json:
        typer.echo(judgement.to_json())
        return
    d = judgement.details
    typer.echo(f"score {judgement.score:.4f}  ({judgement.source})")
    if d.get("reason"):
        typer.echo(f"reason: {d['reason']}")
    t = d.get("tests")
    if t:
        typer.echo(
            f"tests: {t['collected']} collected, {t['passed']} passed, {t['failed']} failed, {t['error']} errors, "
            f"{t['skipped']} skipped, {t['not_run']} not run"
        )
    for name, value in (d.get("components") or {}).items():
        typer.echo(f"  {name:16s} {'n/a' if value is None else f'{value:.4f}'}")
    checks = d["checks"]
    if checks["tests_without_assertions"]:
        typer.echo(f"tests without assertions: {', '.join(checks['tests_without_assertions'])}")


@judge_app.command("flaky")
def flaky_cmd(
    history: Path = typer.Option(..., "--history", help="Labelled run history JSON (see router_rl.judge.flaky)."),
    named: Path = typer.Option(..., "--named", help="Tests the agent calls flaky: a JSON list or one id a line."),
    beta: float = typer.Option(1.0, "--beta", help="F-beta's beta (recall weight)."),
) -> None:
    """Score a flaky-test classification against a labelled history; print the judgement JSON."""
    import json

    from router_rl.judge.config import RetrievalConfig
    from router_rl.judge.flaky import HistoryError, judge_flaky, load_history

    try:
        hist = load_history(history)
    except HistoryError as e:
        _fail(f"--history: {e}")
        return
    try:
        text = named.read_text()
    except OSError as e:
        _fail(f"--named: cannot read {named} ({e.strerror})")
        return
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            ids = json.loads(stripped)
        except json.JSONDecodeError as e:
            _fail(f"--named: {named}: invalid JSON ({e.msg}, line {e.lineno})")
            return
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            _fail(f"--named: {named}: expected a JSON list of test ids")
    else:
        ids = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not (beta > 0 and beta < float("inf")):
        _fail(f"--beta: expected a finite number > 0, got {beta}")
    typer.echo(judge_flaky(ids, hist, RetrievalConfig(beta=beta)).to_json())


@judge_app.command("gaps")
def gaps_cmd(
    code: Path = typer.Option(..., "--code", help="Code under test: a .py module or a package folder."),
    tests: Path = typer.Option(..., "--tests", help="The existing test file."),
    gaps: Path = typer.Option(..., "--gaps", help="The agent's gap report: JSON list 'file.py:A-B' or mapping."),
) -> None:
    """Score a coverage-gap report against coverage.py's missing lines; print the judgement JSON."""
    import json

    from router_rl.judge.gaps import GapReportError, judge_gaps

    if not code.exists():
        _fail(f"--code: no such file or folder: {code}")
    if not tests.is_file():
        _fail(f"--tests: no such file: {tests}")
    try:
        report = json.loads(gaps.read_text())
    except OSError as e:
        _fail(f"--gaps: cannot read {gaps} ({e.strerror})")
        return
    except json.JSONDecodeError as e:
        _fail(f"--gaps: {gaps}: invalid JSON ({e.msg}, line {e.lineno})")
        return
    try:
        typer.echo(judge_gaps(code, tests, report).to_json())
    except GapReportError as e:
        _fail(f"--gaps: {e}")
    except ValueError as e:
        _fail(f"--tests: {e}")


def register(app: typer.Typer) -> None:
    """Add the ``judge`` command group to the root app."""
    app.add_typer(judge_app, name="judge")

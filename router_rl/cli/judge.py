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
    try:
        judgement = judge_tests(code, tests, cfg)
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


def register(app: typer.Typer) -> None:
    """Add the ``judge`` command group to the root app."""
    app.add_typer(judge_app, name="judge")

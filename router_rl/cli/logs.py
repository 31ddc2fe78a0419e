"""``router-rl logs ...``: join the router's decision log with its feedback into logged bandit data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from router_rl.logs.join import JoinReport

#: Report lines in print order: (field, label).
_REPORT_LINES: tuple[tuple[str, str], ...] = (
    ("decisions", "decision rows read"),
    ("rejected", "rejected requests excluded (never executed)"),
    ("duplicate_decisions", "duplicate decision rows excluded (request id repeated)"),
    ("excluded_no_features", "rows excluded: no feature vector (--drop-unusable)"),
    ("excluded_fingerprint", "rows excluded: other encoder fingerprint (--drop-unusable)"),
    ("rows", "rows written"),
    ("labeled", "labeled from feedback"),
    ("no_answer", "no model answered (quality 0)"),
    ("unlabeled", "no label yet (quality null)"),
    ("fallbacks", "fallbacks (outcome model != chosen model)"),
    ("no_features", "rows without features"),
    ("fingerprint_mismatches", "rows with another encoder fingerprint"),
    ("no_fingerprint", "rows with features but no encoder fingerprint"),
    ("feedback_rows", "feedback rows read"),
    ("duplicate_feedback_ids", "duplicate feedback ids (stored once)"),
    ("orphan_feedback", "feedback for unknown request ids"),
    ("feedback_for_rejected", "feedback for rejected requests"),
    ("feedback_for_excluded", "feedback for excluded rows"),
    ("feedback_on_no_answer", "feedback for requests no model answered (ignored)"),
    ("superseded_feedback", "older feedback of the same (request, source)"),
    ("unused_source_feedback", "feedback of sources outside --source-priority"),
)


def print_join_report(rep: JoinReport, console: Any) -> None:
    """Print a :class:`JoinReport` as a two-column table (records when the terminal is narrow)."""
    from rich.table import Table

    from router_rl.cli.console import print_table

    table = Table(title=f"logs join (label rule: {rep.label_rule})")
    table.add_column("count")
    table.add_column("rows", justify="right")
    d = rep.to_dict()
    for key, label in _REPORT_LINES:
        table.add_row(label, str(d[key]))
    print_table(console, table)
    if rep.sources:
        console.print("feedback sources: " + ", ".join(f"{s}={c}" for s, c in rep.sources.items()))
    if rep.fingerprints:
        console.print(
            f"encoder fingerprints (reference {rep.reference_fingerprint}): "
            + ", ".join(f"{s}={c}" for s, c in rep.fingerprints.items())
        )


def register(app: typer.Typer) -> None:
    """Add the ``logs`` command group to the root app."""
    logs_app = typer.Typer(help="Logged feedback: join the decision log with its feedback (bandit data).",
                           no_args_is_help=True)
    app.add_typer(logs_app, name="logs")

    @logs_app.command("join")
    def join_cmd(
        decision_dir: Annotated[Path, typer.Argument(help="Decision-log folder (part files).")],
        out: Annotated[Path, typer.Option("-o", "--out", help="Output .parquet (LOGGED_SCHEMA).")],
        feedback: Annotated[Path | None, typer.Option("--feedback", help="Feedback folder (part files).")] = None,
        label_rule: Annotated[str, typer.Option("--label-rule", help="mean | newest | priority")] = "mean",
        source_priority: Annotated[
            list[str] | None, typer.Option("--source-priority", help="Source, in priority order (repeatable).")
        ] = None,
        catalog: Annotated[Path | None, typer.Option("--catalog", help="catalog.json: fills action_locations.")]
        = None,
        expect_fingerprint: Annotated[
            str | None, typer.Option("--expect-fingerprint", help="Encoder fingerprint the rows should carry.")
        ] = None,
        drop_unusable: Annotated[
            bool, typer.Option("--drop-unusable", help="Exclude (and count) rows without features / other encoder.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Join decisions with feedback: one labeled row per decision, every exclusion counted."""
        import json

        from rich.markup import escape

        from router_rl.cli.console import make_console
        from router_rl.cli.options import load_catalog_option
        from router_rl.logs.join import LABEL_RULES, JoinError, join_logs
        from router_rl.traces.decision_log import DecisionLogError
        from router_rl.traces.feedback import FeedbackError

        console = make_console()
        if label_rule not in LABEL_RULES:
            raise typer.BadParameter(f"expected one of {list(LABEL_RULES)}, got {label_rule!r}",
                                     param_hint="--label-rule")
        if label_rule == "priority" and not source_priority:
            raise typer.BadParameter("label rule 'priority' needs at least one source", param_hint="--source-priority")
        if label_rule != "priority" and source_priority:
            raise typer.BadParameter("only used with --label-rule priority", param_hint="--source-priority")
        if not decision_dir.is_dir():
            raise typer.BadParameter(f"{decision_dir}: no such folder", param_hint="DECISION_DIR")
        if feedback is not None and not feedback.is_dir():
            raise typer.BadParameter(f"{feedback}: no such folder", param_hint="--feedback")
        cat = load_catalog_option(catalog)
        try:
            table, rep = join_logs(decision_dir, feedback, label_rule=label_rule, source_priority=source_priority,
                                   catalog=cat, expect_fingerprint=expect_fingerprint, drop_unusable=drop_unusable)
        except JoinError as e:
            hint = "--catalog" if str(e).startswith("catalog") else "--label-rule"
            raise typer.BadParameter(str(e), param_hint=hint) from e
        except (DecisionLogError, FeedbackError) as e:
            console.print(f"[red]error:[/red] {escape(str(e))}")
            raise typer.Exit(code=1) from e
        out.parent.mkdir(parents=True, exist_ok=True)
        table.write_parquet(out)
        if as_json:
            typer.echo(json.dumps({**rep.to_dict(), "out": str(out)}, sort_keys=True))
            return
        print_join_report(rep, console)
        console.print(f"wrote {table.height} rows to {escape(str(out))}")

    @logs_app.command("info")
    def info_cmd(
        file: Annotated[Path, typer.Argument(help="Joined .parquet (router-rl logs join).")],
        catalog: Annotated[Path | None, typer.Option("--catalog", help="catalog.json (when not joined with one).")]
        = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Summarise logged data: rows, labels, fallbacks, local share, smallest propensity."""
        import json

        from rich.markup import escape

        from router_rl.cli.console import make_console
        from router_rl.cli.options import load_catalog_option
        from router_rl.logs.data import LoggedDataError, load_logged

        console = make_console()
        cat = load_catalog_option(catalog)
        try:
            data = load_logged(file, catalog=cat)
        except (LoggedDataError, FileNotFoundError) as e:
            console.print(f"[red]error:[/red] {escape(str(e))}")
            raise typer.Exit(code=1) from e
        s = data.summary()
        if as_json:
            typer.echo(json.dumps({**s, "models": list(data.models)}, sort_keys=True))
            return
        for k, v in s.items():
            console.print(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")

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


def _refuse_partitioned(folder: Path, hint: str) -> None:
    """A partitioned folder given to the flat join would read as empty: refuse it (one line)."""
    if not any(folder.glob("part-*.parquet")) and any(folder.glob("day=*")):
        raise typer.BadParameter(f"{folder}: a partitioned folder (day=... folders); pass --partitioned",
                                 param_hint=hint)


def _join_partitioned(decision_dir: Path, feedback: Path | None, out: Path, *, days: str | None, workers: int,
                      feedback_skew_days: int, as_json: bool, **kw: Any) -> None:
    import json

    from rich.markup import escape

    from router_rl.cli.console import make_console
    from router_rl.logs.join import JoinError
    from router_rl.logs.partition import PartitionError, parse_day_range
    from router_rl.logs.partition_join import join_partitioned
    from router_rl.traces.decision_log import DecisionLogError
    from router_rl.traces.feedback import FeedbackError

    console = make_console()
    try:
        rng = parse_day_range(days)
    except PartitionError as e:
        raise typer.BadParameter(str(e), param_hint="--days") from None
    if workers < 0:
        raise typer.BadParameter(f"expected >= 0, got {workers}", param_hint="--workers")
    if feedback_skew_days < 0:
        raise typer.BadParameter(f"expected >= 0, got {feedback_skew_days}", param_hint="--feedback-skew-days")
    if out.suffix == ".parquet":
        raise typer.BadParameter(f"{out}: with --partitioned the output is a folder", param_hint="--out")
    try:
        rep = join_partitioned(decision_dir, feedback, out, days=rng, workers=workers,
                               feedback_skew_days=feedback_skew_days, **kw)
    except JoinError as e:
        hint = "--catalog" if str(e).startswith("catalog") else "--label-rule"
        raise typer.BadParameter(str(e), param_hint=hint) from None
    except (PartitionError, DecisionLogError, FeedbackError) as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(code=1) from e
    if as_json:
        typer.echo(json.dumps({**rep.to_dict(), "out": str(out)}, sort_keys=True))
        return
    print_join_report(rep.total, console)
    console.print(f"days joined: {len(rep.days)} ({', '.join(rep.days)}); cross-day duplicate decisions "
                  f"{rep.cross_day_duplicates}; feedback read from {rep.feedback_from}: {rep.feedback_scanned} rows, "
                  f"{rep.feedback_outside_days} outside the joined days")
    console.print(f"wrote {rep.total.rows} rows in {len(rep.files)} files under {escape(str(out))}")


def register(app: typer.Typer) -> None:
    """Add the ``logs`` command group to the root app."""
    logs_app = typer.Typer(help="Logged feedback: join the decision log with its feedback (bandit data); partitions "
                           "(compact, join --partitioned, slice) and scheduled retraining (docs/scale.md).",
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
        partitioned: Annotated[
            bool, typer.Option("--partitioned", help="Inputs are partitioned folders (logs compact); -o is a folder.")
        ] = False,
        days: Annotated[
            str | None, typer.Option("--days", help="With --partitioned: days to (re)join, e.g. 2026-11-24.. .")
        ] = None,
        workers: Annotated[int, typer.Option("--workers", help="With --partitioned: Ray workers (0: in process).")]
        = 0,
        feedback_skew_days: Annotated[
            int, typer.Option("--feedback-skew-days", help="With --partitioned: feedback days read before --days.")
        ] = 1,
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
        if partitioned:
            _join_partitioned(decision_dir, feedback, out, label_rule=label_rule, source_priority=source_priority,
                              catalog=cat, expect_fingerprint=expect_fingerprint, drop_unusable=drop_unusable,
                              days=days, workers=workers, feedback_skew_days=feedback_skew_days, as_json=as_json)
            return
        for flag, given in (("--days", days is not None), ("--workers", workers != 0)):
            if given:
                raise typer.BadParameter("only used with --partitioned", param_hint=flag)
        _refuse_partitioned(decision_dir, "DECISION_DIR")
        if feedback is not None:
            _refuse_partitioned(feedback, "--feedback")
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

    @logs_app.command("compact")
    def compact_cmd(
        source: Annotated[Path, typer.Argument(help="The router's part-file folder (decisions/ or feedback/).")],
        out: Annotated[Path, typer.Option("-o", "--out", help="Partitioned folder (day=/policy_version=).")],
        table: Annotated[str, typer.Option("--table", help="decisions | feedback")] = "decisions",
        remove_sources: Annotated[
            bool, typer.Option("--remove-sources", help="Delete the source parts once committed.")
        ] = False,
        max_rows_per_file: Annotated[int, typer.Option("--max-rows-per-file", help="Rows per output file.")]
        = 1_000_000,
        batch_rows: Annotated[int, typer.Option("--batch-rows", help="Rows read per committed batch (memory).")]
        = 2_000_000,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Compact part files into day / policy-version partitions (atomic, idempotent, counted)."""
        import json

        from rich.markup import escape

        from router_rl.cli.console import make_console
        from router_rl.logs.partition import PartitionError, compact
        from router_rl.traces.parts import PartFileError

        console = make_console()
        if table not in ("decisions", "feedback"):
            raise typer.BadParameter(f"expected decisions or feedback, got {table!r}", param_hint="--table")
        if not source.is_dir():
            raise typer.BadParameter(f"{source}: no such folder", param_hint="SOURCE")
        if max_rows_per_file < 1:
            raise typer.BadParameter(f"expected >= 1, got {max_rows_per_file}", param_hint="--max-rows-per-file")
        if batch_rows < 1:
            raise typer.BadParameter(f"expected >= 1, got {batch_rows}", param_hint="--batch-rows")
        try:
            rep = compact(source, out, table=table, remove_sources=remove_sources,
                          max_rows_per_file=max_rows_per_file, batch_rows=batch_rows)
        except PartitionError as e:
            raise typer.BadParameter(str(e), param_hint="--out") from None
        except PartFileError as e:
            console.print(f"[red]error:[/red] {escape(str(e))}")
            raise typer.Exit(code=1) from e
        if as_json:
            typer.echo(json.dumps(rep.to_dict(), sort_keys=True))
            return
        console.print(
            f"{table}: {rep.source_parts} part files listed, {rep.already_compacted} compacted before, "
            f"{rep.parts_read} read ({rep.rows_read} rows) -> {rep.rows_written} rows in {rep.files_written} files; "
            f"recovered batches {rep.recovered_batches}, temporaries removed {rep.removed_temporaries}, "
            f"sources removed {rep.sources_removed}"
        )
        for k, v in rep.partitions.items():
            console.print(f"  {escape(k)}: {v}")

    @logs_app.command("slice")
    def slice_cmd(
        logged: Annotated[Path, typer.Argument(help="Partitioned joined log (logs join --partitioned).")],
        out: Annotated[Path, typer.Option("-o", "--out", help="Output .parquet (LOGGED_SCHEMA).")],
        days: Annotated[str | None, typer.Option("--days", help="Days, e.g. 2026-11-24..2026-11-30.")] = None,
        policy_version: Annotated[
            list[str] | None, typer.Option("--policy-version", help="Keep this logging version (repeatable).")
        ] = None,
        labeled_only: Annotated[bool, typer.Option("--labeled-only", help="Keep rows with a label only.")] = False,
    ) -> None:
        """Write the rows of some days / policy versions as one file (for ope --log, train --log, promote)."""
        import polars as pl

        from router_rl.cli.console import make_console
        from router_rl.logs.partition import PartitionError, parse_day_range, scan_table

        console = make_console()
        if not logged.is_dir():
            raise typer.BadParameter(f"{logged}: no such folder", param_hint="LOGGED")
        try:
            rng = parse_day_range(days)
        except PartitionError as e:
            raise typer.BadParameter(str(e), param_hint="--days") from None
        try:
            lf = scan_table(logged, "logged", days=rng, policy_versions=policy_version)
        except (PartitionError, FileNotFoundError) as e:
            raise typer.BadParameter(str(e), param_hint="LOGGED") from None
        total = int(lf.select(pl.len()).collect().item())
        if labeled_only:
            lf = lf.filter(pl.col("quality").is_not_null())
        df = lf.collect()
        out.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(out)
        console.print(f"wrote {df.height} rows to {out} ({total} in the selected partitions, "
                      f"{total - df.height} without a label left out)" if labeled_only
                      else f"wrote {df.height} rows to {out}")

    @logs_app.command("retrain")
    def retrain_cmd(
        config: Annotated[Path, typer.Option("--config", help="Retrain schedule (YAML / JSON, RetrainConfig).")],
        state: Annotated[Path, typer.Option("--state", help="State file (written atomically).")],
        now: Annotated[str | None, typer.Option("--now", help="Current time, ISO-8601 (default: UTC now).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Run even when not due.")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide only; write and run nothing.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Run the retraining command when due (>= N new labeled rows, or a cron minute passed)."""
        import json
        from datetime import UTC, datetime

        from router_rl.core.errors import ConfigError
        from router_rl.logs.partition import PartitionError
        from router_rl.logs.retrain import RetrainConfig, RetrainError, run_scheduled

        try:
            cfg = RetrainConfig.from_file(config)
        except ConfigError as e:
            raise typer.BadParameter(str(e).splitlines()[0], param_hint="--config") from None
        when = None
        if now is not None:
            try:
                when = datetime.fromisoformat(now)
            except ValueError:
                raise typer.BadParameter(f"expected an ISO-8601 time, got {now!r}", param_hint="--now") from None
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
        try:
            res = run_scheduled(cfg, state, now=when, force=force, dry_run=dry_run)
        except RetrainError as e:
            raise typer.BadParameter(str(e), param_hint="--state") from None
        except (PartitionError, FileNotFoundError) as e:
            raise typer.BadParameter(f"logged: {e}", param_hint="--config") from None
        if as_json:
            typer.echo(json.dumps(res.to_dict(), sort_keys=True))
        else:
            verdict = "due" if res.due else "not due"
            typer.echo(f"{verdict}: {res.reason} (labeled rows {res.labeled}, new {res.new_labeled})")
            if res.ran:
                typer.echo(f"ran in {res.run_dir} on {res.rows} labeled rows: exit {res.returncode}")
        if res.ran and res.returncode != 0:
            raise typer.Exit(code=1)

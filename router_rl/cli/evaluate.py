"""``router-rl evaluate`` and ``router-rl report``: offline evaluation of routing policies.

Heavy imports (polars/pyarrow trace loading, policies, LightGBM, matplotlib) happen inside the
commands so that ``router-rl --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from router_rl.eval.runner import EvaluationResult

TracesOpt = Annotated[
    Path, typer.Option("--traces", "-t", help="Trace file (parquet from `router-rl traces`, or CSV).")
]
PoliciesOpt = Annotated[
    list[str],
    typer.Option(
        "--policies",
        "-p",
        help="Policy artifact folders or registered names (trained on the train split), e.g. -p lgbm -p random.",
    ),
]
MoreArg = Annotated[
    list[str] | None,
    typer.Argument(help="More policies: `--policies P1 P2 P3` works (P2, P3 land here).", show_default=False),
]
SplitOpt = Annotated[str, typer.Option("--split", help="Split to evaluate on (train/val/test).")]
BootOpt = Annotated[int, typer.Option("--n-bootstrap", help="Bootstrap resamples of the intervals.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of training, routing and the bootstrap.")]
DropOpt = Annotated[
    bool, typer.Option("--drop-invalid", help="CSV traces: drop invalid rows/tasks (counted) instead of failing.")
]


def _specs(policies: list[str], more: list[str] | None) -> list[str]:
    """Flatten ``-p a -p b``, ``--policies a b c`` and ``--policies a,b``."""
    return [s.strip() for item in [*policies, *(more or [])] for s in item.split(",") if s.strip()]


def _run(
    traces: Path, policies: list[str], split: str, n_bootstrap: int, seed: int, drop_invalid: bool = False
) -> EvaluationResult:
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from router_rl.cli.console import make_console
    from router_rl.eval.resolve import resolve_policies, trace_features
    from router_rl.eval.runner import EvalConfig, evaluate_policies
    from router_rl.traces import load_traces
    from router_rl.traces.schema import SPLITS
    from router_rl.traces.split import require_splits

    if not policies:
        raise typer.BadParameter("give at least one policy (-p NAME_OR_DIR)", param_hint="--policies")
    if split not in SPLITS:
        raise typer.BadParameter(f"expected one of {list(SPLITS)}, got {split!r}", param_hint="--split")
    console = make_console()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True,
                  console=console) as prog:
        task = prog.add_task(f"loading {traces}", total=None)
        try:
            ts = load_traces(traces, drop_invalid=drop_invalid, seed=seed)
            matrix = ts.matrix()
            parts, notes = require_splits(matrix, ("train", "val", split) if split != "val" else ("train", "val"),
                                          seed=seed, source=str(traces))
        except (FileNotFoundError, ValueError) as e:
            raise typer.BadParameter(str(e), param_hint="--traces") from e
        if traces.suffix in (".csv", ".tsv"):  # imported on the fly: say what the import did
            notes = [*ts.report.notes, *([ts.report.summary()] if ts.report.dropped_rows else []), *notes]
        for note in notes:
            prog.console.print(f"note: {escape(note)}")
        train, test = parts["train"], parts[split]
        val = parts["val"] if split != "val" else None
        feats = trace_features(train, simulated=ts.ground_truth is not None)
        prog.update(task, description=f"training/loading {len(policies)} policies")
        try:
            pols = resolve_policies(policies, train, feats, seed=seed)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--policies") from e
        cfg = EvalConfig(n_bootstrap=n_bootstrap, seed=seed)

        def progress(name: str) -> None:
            prog.update(task, description=f"evaluating {name} on {split}")

        val_m = None if split == "val" else val
        return evaluate_policies(train, val_m, test, pols, config=cfg, features=feats, split=split, progress=progress)


def print_operating_points(console: Any, res: EvaluationResult, policies: dict[str, Any]) -> None:
    """The first screen: each calibrated operating point, its test numbers and the gate that binds.

    Args:
        console: A rich console.
        res: The evaluation (test split).
        policies: Name -> fitted policy (its ``metadata["calibration"]`` says how it was calibrated).
    """
    from rich.markup import escape

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3g}"

    console.print(f"Operating points (calibrated on validation, measured on {res.split}):")
    for name, pol in policies.items():
        pe = res.policies.get(name)
        if pe is None:
            continue
        cal = (getattr(pol, "metadata", {}) or {}).get("calibration") or {}
        how = ""
        if cal:
            nu = cal.get("nu") or 0.0
            how = (f"{cal.get('target')}: λ={cal.get('lam', float('nan')):.3g}" + (f" ν={nu:.3g}" if nu else "")
                   + f", {'met' if cal.get('met') else 'NOT met'} on validation")
            if cal.get("unmet"):
                how += f" (misses {', '.join(cal['unmet'])})"
        m = pe.metrics
        rep = pe.independence
        top = rep.highest_passed or "none"
        nxt = next((p for p in rep.phases if not p.passed), None)
        gate = f"highest gate passed: {top}"
        if nxt is not None and nxt.binding is not None:
            b = nxt.binding
            gate += f"; {nxt.phase} binds at {b.metric} {num(b.value)} (needs {b.op} {b.threshold:g})"
        console.print(escape(
            f"  {name} ({how}): quality {pct(m.quality_ratio)} of the reference, local {pct(m.local_share)}, "
            f"cost {pct(m.cost_share)} of the reference -> {gate}"
        ))
    for name in policies:
        pe = res.policies.get(name)
        if pe is None:
            continue
        for phase in pe.independence.phases:
            status = {True: "[green]PASS[/green]", False: "[red]FAIL[/red]", None: "[yellow]n/a[/yellow]"}[phase.passed]
            detail = "; ".join(
                f"{c.metric} {num(c.value)} {c.op} {c.threshold:g}"
                + ("" if c.passed is None else (" ok" if c.passed else " FAIL"))
                for c in phase.checks
            )
            console.print(f"independence gates {phase.phase} ({escape(name)}): {status}  {escape(detail)}")


def _print(res: EvaluationResult) -> None:
    from rich.table import Table

    from router_rl.cli.console import make_console, print_table

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def ci(pe: object, key: str, as_pct: bool = True) -> str:
        iv = pe.intervals.get(key)  # type: ignore[attr-defined]
        if iv is None:
            return "n/a"
        f = pct if as_pct else (lambda x: f"{x:.3f}")
        return f"{f(iv.value)} [{f(iv.lower)}, {f(iv.upper)}]"

    t = Table(title=f"Offline evaluation on {res.split} ({res.n_tasks} tasks; reference {res.reference_model})")
    for col in ("policy", "quality", "quality ratio", "cost share", "local", "P95 s", "AIQ", "APGR", "gates"):
        t.add_column(col)
    for name, pe in res.policies.items():
        m = pe.metrics
        fm = pe.frontier_metrics
        t.add_row(
            name,
            ci(pe, "mean_quality", False),
            ci(pe, "quality_ratio"),
            ci(pe, "cost_share"),
            pct(m.local_share),
            "n/a" if m.latency_p95 is None else f"{m.latency_p95:.2f}",
            "n/a" if fm.get("aiq") is None else f"{fm['aiq']:.3f}",
            "n/a" if fm.get("apgr") is None else f"{fm['apgr']:.3f}",
            pe.independence.highest_passed or "none",
        )
    if "oracle" in res.policies:  # the oracle policy was evaluated: its row above is the bound
        print_table(make_console(), t)
        return
    t.add_row(
        "oracle",
        f"{res.oracle.mean_quality:.3f}",
        pct(res.oracle.quality_ratio),
        pct(res.oracle.cost_share),
        pct(res.oracle.local_share),
        "",
        "",
        "",
        "",
    )
    print_table(make_console(), t)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``report`` to the root app."""

    @app.command()
    def evaluate(
        traces: TracesOpt,
        policies: PoliciesOpt,
        more: MoreArg = None,
        split: SplitOpt = "test",
        json_out: Annotated[Path | None, typer.Option("--json", help="Write every metric as JSON here.")] = None,
        n_bootstrap: BootOpt = 1000,
        seed: SeedOpt = 0,
        drop_invalid: DropOpt = False,
    ) -> None:
        """Evaluate policies offline: metrics with intervals, frontier, independence gates."""
        res = _run(traces, _specs(policies, more), split, n_bootstrap, seed, drop_invalid)
        _print(res)
        if json_out is not None:
            res.write_json(json_out)
            typer.echo(f"wrote {json_out}")

    @app.command()
    def report(
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for report.md/.html and plots.")],
        traces: Annotated[Path | None, typer.Option(
            "--traces", "-t", help="Trace file: offline evaluation of --policies on it.")] = None,
        policies: Annotated[list[str] | None, typer.Option(
            "--policies", "-p", help="Policies of the offline evaluation (with --traces).")] = None,
        more: MoreArg = None,
        split: SplitOpt = "test",
        n_bootstrap: BootOpt = 1000,
        seed: SeedOpt = 0,
        drop_invalid: DropOpt = False,
        log: Annotated[Path | None, typer.Option(
            "--log", help="Joined log (`router-rl logs join` parquet): the live operators' report.")] = None,
        catalog: Annotated[Path | None, typer.Option(
            "--catalog", help="--log: catalog.json (locations, prices for the counterfactual cost).")] = None,
        decisions: Annotated[Path | None, typer.Option(
            "--decisions", help="--log: the decision-log folder (tokens, breaker states, failed attempts).")] = None,
        since: Annotated[str | None, typer.Option("--since", help="--log: from this ISO time (UTC).")] = None,
        until: Annotated[str | None, typer.Option("--until", help="--log: before this ISO time (UTC).")] = None,
        agent_type: Annotated[list[str] | None, typer.Option(
            "--agent-type", help="--log: only these agent types (repeatable).")] = None,
        reference: Annotated[str | None, typer.Option(
            "--reference", help="--log: reference cloud model (default: the most expensive cloud model).")] = None,
        ope: Annotated[bool, typer.Option("--ope/--no-ope", help="--log: estimate the reference's quality by OPE.")]
        = True,
    ) -> None:
        """Write a Markdown + HTML report with PNG plots: offline (--traces, --policies) or live (--log)."""
        if log is not None and (traces is not None or policies or more):
            raise typer.BadParameter("give --log (live report) or --traces with --policies (offline evaluation), "
                                     "not both", param_hint="--log")
        if log is None and traces is None:
            raise typer.BadParameter("give --log (live report) or --traces with --policies (offline evaluation)",
                                     param_hint="--log")
        if log is not None:
            from router_rl.cli.live import run_live_report

            run_live_report(log, out, catalog=catalog, decisions=decisions, since=since, until=until,
                            agent_types=agent_type, reference=reference, ope=ope, n_bootstrap=n_bootstrap, seed=seed)
            return
        if traces is None:  # pragma: no cover - checked above
            raise typer.BadParameter("required", param_hint="--traces")
        live_only = {"--catalog": catalog, "--decisions": decisions, "--since": since, "--until": until,
                     "--agent-type": agent_type, "--reference": reference}
        given = [k for k, v in live_only.items() if v]
        if given:
            raise typer.BadParameter(f"{', '.join(given)}: only with --log (the live report)", param_hint=given[0])
        from router_rl.eval.report import write_report

        res = _run(traces, _specs(policies or [], more), split, n_bootstrap, seed, drop_invalid)
        _print(res)
        files = write_report(res, out)
        typer.echo(f"wrote {len(files)} files to {out}")

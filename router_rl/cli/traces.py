"""``router-rl traces ...``: import datasets, simulate a fleet, summarise a trace file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from router_rl.traces.traceset import TraceSet

#: ``router-rl traces import`` kinds (``llmperf`` is a latency table, not an outcome matrix).
KINDS = ("long", "routerbench", "llmrouter", "routerdc", "bfcl", "llmperf")


def register(app: typer.Typer) -> None:
    """Add the ``traces`` command group to the root app."""
    traces_app = typer.Typer(help="Trace store: import datasets, simulate a QE fleet, inspect trace files.",
                             no_args_is_help=True)
    app.add_typer(traces_app, name="traces")

    @traces_app.command("import")
    def import_cmd(
        kind: Annotated[str, typer.Argument(metavar="KIND", help=f"One of: {', '.join(KINDS)}.")],
        path: Annotated[Path, typer.Argument(help="Dataset folder or file.")],
        out: Annotated[Path, typer.Option("-o", "--out", help="Output .parquet.")],
        drop_invalid: Annotated[bool, typer.Option("--drop-invalid", help="Drop invalid rows/tasks, report counts.")]
        = False,
        seed: Annotated[int, typer.Option("--seed", help="Split seed.")] = 0,
        split: Annotated[str | None, typer.Option(
            "--split", help="Fractions of unlabelled tasks, e.g. train=0.7,val=0.1,test=0.2 (default); without "
            "a val task, val = that fraction of train is carved from it.")] = None,
        split_column: Annotated[str | None, typer.Option(
            "--split-column", help="Column holding train/val/test labels (default: 'split' when present).")] = None,
        catalog: Annotated[Path | None, typer.Option(
            "--catalog", help="long: per-model catalog file (CSV/YAML/JSON/parquet: model, location, provider, "
            "usd_per_m_input, usd_per_m_output, gpu_usd_per_hour, tokens_per_s, context_window).")] = None,
        cell_column: Annotated[list[str] | None, typer.Option(
            "--cell-column", help="long: a per-call outcome column (not a task feature), repeatable; numeric "
            "columns that vary within a task are per-call anyway.")] = None,
    ) -> None:
        """Import a dataset into one validated trace parquet (llmperf: a provider latency table).

        KIND is one of: long (your own CSV/parquet, one row per task x model), routerbench,
        llmrouter, routerdc, bfcl, llmperf. Every importer takes --split / --split-column.
        """
        from rich.markup import escape

        from router_rl.cli.console import make_console
        from router_rl.traces.errors import TraceValidationError
        from router_rl.traces.importers import IMPORTERS
        from router_rl.traces.split import SplitSpec

        console = make_console()
        if kind == "llmperf":
            from router_rl.traces.importers.llmperf import fit_provider_latency, load_provider_latency

            with console.status("reading llmperf requests"):
                df = load_provider_latency(path)
            out.parent.mkdir(parents=True, exist_ok=True)
            df.write_parquet(out)
            summary = out.with_name(out.stem + "_summary.parquet")
            fit_provider_latency(df).write_parquet(summary)
            console.print(f"wrote {df.height} requests to {out} and the per-provider fit to {summary}")
            return
        if kind not in IMPORTERS:
            raise typer.BadParameter(f"unknown kind {kind!r}; choose from {[*IMPORTERS, 'llmperf']}", param_hint="KIND")
        kw: dict[str, object] = {"drop_invalid": drop_invalid, "seed": seed}
        try:
            if split is not None or split_column is not None or kind == "long":
                kw["split"] = SplitSpec.parse(split, column=split_column)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--split") from e
        for flag, given in (("--catalog", catalog), ("--cell-column", cell_column)):
            if given and kind != "long":
                raise typer.BadParameter(f"only the 'long' importer takes it, not {kind!r}", param_hint=flag)
        if catalog is not None:
            kw["catalog"] = catalog
        if cell_column:
            kw["cell_columns"] = tuple(c.strip() for v in cell_column for c in v.split(",") if c.strip())
        try:
            with console.status(f"importing {kind} from {path}"):
                ts = IMPORTERS[kind](path, **kw)
        except (TraceValidationError, FileNotFoundError, ValueError) as e:
            console.print(f"[red]error:[/red] {escape(str(e))}")
            raise typer.Exit(code=1) from e
        ts.save(out)
        console.print(escape(ts.report.summary()))
        for note in ts.report.notes:
            console.print(f"  {escape(note)}")
        console.print(f"wrote {ts.outcomes.height} rows ({ts.n_tasks} tasks x {len(ts.catalog)} models) to {out}")

    @traces_app.command("simulate")
    def simulate_cmd(
        out: Annotated[Path, typer.Option("-o", "--out", help="Output .parquet.")],
        n_tasks: Annotated[int, typer.Option("--n-tasks", help="Number of tasks.")] = 2000,
        seed: Annotated[int, typer.Option("--seed", help="Seed of everything.")] = 0,
    ) -> None:
        """Simulate a QE agent fleet's outcome matrix (with ground truth) into one parquet."""
        from router_rl.cli.console import make_console
        from router_rl.traces.simulate import simulate_fleet

        console = make_console()
        with console.status(f"simulating {n_tasks} tasks"):
            ts = simulate_fleet(n_tasks, seed=seed)
            ts.save(out)
        console.print(f"wrote {ts.outcomes.height} rows ({n_tasks} tasks x {len(ts.catalog)} models) to {out}")

    @traces_app.command("simulate-log")
    def simulate_log_cmd(
        out: Annotated[Path, typer.Option("-o", "--out", help="Output folder: decisions/, feedback/, truth.parquet.")],
        policy: Annotated[str, typer.Option("--policy", help="Policy artifact folder, or a kind (lgbm, rules, ...) "
                                            "trained here on the train split.")],
        traces: Annotated[Path | None, typer.Option("--traces", help="Outcome-matrix parquet (router-rl traces).")]
        = None,
        simulate_fleet_n: Annotated[
            int | None, typer.Option("--simulate-fleet", help="Simulate a fleet of this many tasks instead.")
        ] = None,
        n: Annotated[int, typer.Option("-n", "--n", help="Number of logged decisions.")] = 10000,
        epsilon: Annotated[float, typer.Option("--epsilon", help="Exploration: uniform share in [0, 1).")] = 0.0,
        temperature: Annotated[float | None, typer.Option("--temperature", help="Exploration tempering (> 0).")]
        = None,
        split: Annotated[str, typer.Option("--split", help="Tasks from this split (train/val/test, or all).")]
        = "test",
        feedback_rate: Annotated[float, typer.Option("--feedback-rate", help="Share of requests with feedback.")]
        = 1.0,
        label_delay: Annotated[float, typer.Option("--label-delay", help="Mean feedback delay, seconds.")] = 60.0,
        fallback_rate: Annotated[float, typer.Option("--fallback-rate", help="Share of calls that fail over.")]
        = 0.0,
        fallback_model: Annotated[str | None, typer.Option("--fallback-model", help="Model serving failed calls.")]
        = None,
        no_answer_rate: Annotated[
            float, typer.Option("--no-answer-rate", help="Share of fallbacks that fail too.")
        ] = 0.0,
        privacy_local: Annotated[
            bool, typer.Option("--privacy-local", help="Privacy-sensitive tasks only to local models.")
        ] = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the log (and of the fleet / training).")] = 0,
    ) -> None:
        """Simulate the router's decision log + feedback for a logging policy, with the full truth."""
        from rich.markup import escape

        from router_rl.cli.console import make_console
        from router_rl.core.errors import ConfigError
        from router_rl.logs.simulate import LogSimulationConfig, simulate_log
        from router_rl.policies.exploration import ExplorationConfig

        console = make_console()
        if (traces is None) == (simulate_fleet_n is None):
            raise typer.BadParameter("give exactly one of --traces FILE or --simulate-fleet N", param_hint="--traces")
        if n < 1:
            raise typer.BadParameter(f"expected >= 1, got {n}", param_hint="-n")
        try:
            expl = ExplorationConfig(epsilon=epsilon, temperature=temperature)
        except ConfigError as e:
            flag = "--temperature" if "temperature" in str(e) else "--epsilon"
            raise typer.BadParameter(str(e), param_hint=flag) from e
        flags = {"feedback_rate": "--feedback-rate", "label_delay_s": "--label-delay",
                 "fallback_rate": "--fallback-rate", "no_answer_rate": "--no-answer-rate"}
        try:
            cfg = LogSimulationConfig(feedback_rate=feedback_rate, label_delay_s=label_delay,
                                      fallback_rate=fallback_rate, fallback_model=fallback_model,
                                      no_answer_rate=no_answer_rate, privacy_local=privacy_local)
        except ConfigError as e:
            flag = next((f for k, f in flags.items() if k in str(e)), "--fallback-rate")
            raise typer.BadParameter(str(e), param_hint=flag) from e
        ts = _traces_for_log(traces, simulate_fleet_n, seed)
        pol = _logging_policy(policy, ts, seed)
        from router_rl.policies.base import PolicyCapabilityError

        try:
            with console.status(f"simulating {n} decisions"):
                log = simulate_log(ts, pol, n=n, exploration=expl, split=None if split == "all" else split,
                                   seed=seed, config=cfg)
        except PolicyCapabilityError as e:
            raise typer.BadParameter(f"cannot log with this policy: {e}", param_hint="--policy") from e
        except ValueError as e:
            msg = str(e)
            flag = "--split" if "split" in msg else "--fallback-model" if "fallback_model" in msg else "--policy"
            raise typer.BadParameter(msg, param_hint=flag) from e
        with console.status(f"writing {out}"):
            log.write(out)
        c = log.meta["counts"]
        console.print(f"wrote {c['decisions']} decisions ({c['feedback']} with feedback, {c['fallbacks']} fallbacks, "
                      f"{c['no_answer']} unanswered, {c['explored']} explored) of {escape(pol.version)} to "
                      f"{escape(str(out))}")
        console.print(f"logging policy local share {log.meta['local_share']:.1%}; encoder "
                      f"{log.meta['encoder_fingerprint']}; truth in {escape(str(out / 'truth.parquet'))}")

    @traces_app.command("info")
    def info_cmd(
        file: Annotated[Path, typer.Argument(help="Trace parquet/CSV.")],
        drop_invalid: Annotated[bool, typer.Option("--drop-invalid", help="CSV: drop invalid rows, report counts.")]
        = False,
    ) -> None:
        """Summarise a trace file: per-model quality/cost/latency, best single model, oracle."""
        from rich.markup import escape

        from router_rl.cli.console import make_console
        from router_rl.traces.errors import TraceValidationError
        from router_rl.traces.load import load_traces

        console = make_console()
        try:
            ts = load_traces(file, drop_invalid=drop_invalid)
        except (TraceValidationError, FileNotFoundError, ValueError) as e:
            console.print(f"[red]error:[/red] {escape(str(e))}")
            raise typer.Exit(code=1) from e
        print_traces_info(ts, str(file), console)
        if file.suffix in (".csv", ".tsv"):  # imported on the fly: say what the import did
            for note in ts.report.notes:
                console.print(f"note: {escape(note)}")


def print_traces_info(ts: TraceSet, label: str, console: Console) -> None:
    """Print rows/tasks/models, splits, per-model means, the best single model and the oracle."""
    import numpy as np
    import polars as pl
    from rich.markup import escape
    from rich.table import Table

    from router_rl.cli.console import print_table

    m = ts.matrix()
    console.print(f"{label}: {ts.outcomes.height} rows, {m.n_tasks} tasks, {m.n_models} models "
                  f"(source: {ts.meta.get('importer', '?')})")
    if "split" in m.tasks.columns:
        counts = dict(m.tasks["split"].value_counts().iter_rows())
        console.print("splits: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=str)))
    table = Table(title="per-model means")
    extra = [c for c in ts.meta.get("cell_columns") or () if c in ts.outcomes.columns
             and ts.outcomes.schema[c].is_numeric()]  # per-call outcome columns, e.g. api_calls
    for col in ("model", "where", "quality", "cost USD", "latency s", "errors", *extra):
        table.add_column(col, justify="left" if col in ("model", "where") else "right")
    local = m.is_local()
    means = ts.outcomes.group_by("model").agg([pl.col(c).cast(pl.Float64).mean() for c in extra]) if extra else None
    for j, name in enumerate(m.models):
        lat = m.latency[:, j]
        cells = [] if means is None else [f"{v:.4g}" if v is not None else "-"
                                          for v in means.filter(pl.col("model") == name).select(extra).row(0)]
        table.add_row(
            name, "local" if local[j] else "cloud", f"{m.quality[:, j].mean():.4f}", f"{m.cost[:, j].mean():.6f}",
            f"{np.nanmean(lat):.2f}" if np.isfinite(lat).any() else "-", f"{m.error[:, j].mean():.2%}", *cells,
        )
    print_table(console, table)
    best = m.best_single_model()
    j = m.model_index(best)
    oracle = m.oracle_actions()
    rows = np.arange(m.n_tasks)
    console.print(f"best single model: {best} (quality {m.quality[:, j].mean():.4f}, "
                  f"cost {m.cost[:, j].mean():.6f} USD)")
    console.print(f"oracle: quality {m.quality[rows, oracle].mean():.4f}, cost {m.cost[rows, oracle].mean():.6f} "
                  f"USD, local share {local[oracle].mean():.1%}")
    if ts.report.dropped_rows:
        console.print(escape(ts.report.summary()))


def _traces_for_log(traces: Path | None, n_tasks: int | None, seed: int) -> TraceSet:
    """The outcome matrix of ``simulate-log``: a trace file or a simulated fleet (flag errors on one line)."""
    from router_rl.traces.errors import TraceValidationError

    if n_tasks is not None:
        from router_rl.traces.simulate import simulate_fleet

        if n_tasks < 1:
            raise typer.BadParameter(f"expected >= 1 tasks, got {n_tasks}", param_hint="--simulate-fleet")
        return simulate_fleet(n_tasks, seed=seed)
    assert traces is not None
    from router_rl.traces.load import load_traces

    if not traces.exists():
        raise typer.BadParameter(f"{traces}: no such file", param_hint="--traces")
    try:
        return load_traces(traces, seed=seed)
    except (TraceValidationError, ValueError) as e:
        raise typer.BadParameter(f"{traces}: {e}", param_hint="--traces") from e


def _logging_policy(spec: str, ts: TraceSet, seed: int) -> Any:
    """``--policy``: an artifact folder, or a policy kind trained on the train split with a fresh encoder."""
    from router_rl.policies.base import PolicyLoadError, RoutingPolicy

    path = Path(spec)
    matrix = ts.matrix()
    if path.exists():
        try:
            return RoutingPolicy.load(path)
        except PolicyLoadError as e:
            raise typer.BadParameter(str(e), param_hint="--policy") from e
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies.base import policy_factory

    try:
        factory = policy_factory(spec)
    except KeyError as e:
        raise typer.BadParameter(f"{spec!r} is neither a policy artifact folder nor a policy kind ({e.args[0]})",
                                 param_hint="--policy") from e
    tr = matrix.split("train") if "split" in matrix.tasks.columns else matrix
    enc = FeatureEncoder(EncoderConfig().restricted_to(tr.tasks.columns)).fit(tr.tasks)
    try:
        pol = factory(matrix.models)
        pol.attach_encoder(enc)
        pol.fit(enc.transform(tr.tasks), tr, seed=seed)
    except (ValueError, NotImplementedError) as e:
        raise typer.BadParameter(f"cannot train {spec!r} as a logging policy: {e}", param_hint="--policy") from e
    return pol

"""``router-rl ope``: evaluate target policies on the router's own logs (off-policy, with intervals).

Heavy imports (polars, LightGBM, policies) happen inside the command so that ``router-rl --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from router_rl.eval.logged import LogOPEReport
    from router_rl.ope.estimators import Estimate


def _fmt(metric: str, v: float | None, *, diff: bool = False) -> str:
    if v is None:
        return "n/a"
    sign = "+" if diff and v >= 0 else ""
    if metric == "local_share":
        return f"{sign}{100 * v:.1f}%"
    if metric == "cost_usd":
        return f"{sign}{v:.3g}"
    return f"{sign}{v:.3f}"


def _ci(metric: str, e: Estimate | None, *, diff: bool = False) -> str:
    if e is None:
        return ""
    lo, hi = _fmt(metric, e.lower, diff=diff), _fmt(metric, e.upper, diff=diff)
    return f"{_fmt(metric, e.value, diff=diff)} [{lo}, {hi}]"


_BIAS_HELP = "Widen DM / switch-DR bootstrap intervals by their estimated bias."


def _method(rep: LogOPEReport) -> str:
    cfg = rep.config
    if cfg.interval == "betting":
        return f"finite-sample betting intervals (exact metrics: {cfg.n_bootstrap} bootstrap resamples)"
    allowance = ", bias allowance" if cfg.bias_allowance else ""
    return f"{cfg.interval} bootstrap, {cfg.n_bootstrap} resamples{allowance}"


def print_report(rep: LogOPEReport) -> None:
    """Tables of a report: per metric (policy x estimator), then weights and support, then warnings."""
    from rich.markup import escape
    from rich.table import Table

    from router_rl.cli.console import make_console, print_table

    con = make_console()
    ev = rep.evaluation
    d = rep.to_dict()
    rm: dict[str, Any] = next((v for v in d["reward_models"].values() if v), {})
    head = (
        f"log: {ev.n_rows} decisions ({rep.n_labeled} labeled), {len(ev.models)} models; reward model "
        f"{rm.get('kind')} cross-fitted on {rm.get('folds')} folds; {_method(rep)}, "
        f"{100 * (1 - ev.alpha):.0f}% intervals; utility = quality - {rep.config.lam:g} * cost_usd / "
        f"{rep.cost_ref_usd:.4g} ({rep.cost_ref_source})"
    )
    con.print(escape(head))
    inc = ev.incumbent
    level = f"{100 * (1 - ev.alpha):.0f}%"
    for metric in d["metrics"]:
        t = Table(title=escape(f"{metric} (value and difference vs {inc}, {level} intervals)"))
        for col in ("policy", "estimator", "value", f"vs {inc}"):
            t.add_column(col)
        if ev.incumbent_result is not None and metric in ev.incumbent_result.metrics:
            mr = ev.incumbent_result.metrics[metric]
            for lab, e in mr.estimates.items():
                t.add_row(escape(inc), lab, _ci(metric, e), "")
        for name, pr in ev.policies.items():
            mr = pr.metrics[metric]
            for lab, e in mr.estimates.items():
                diff = None if mr.difference is None else mr.difference.get(lab)
                t.add_row(escape(name), lab, _ci(metric, e), _ci(metric, diff, diff=True))
        print_table(con, t)
    t = Table(title=f"importance weights and support (propensity < {rep.config.support_threshold:g})")
    for col in ("policy", "ESS", "ESS ratio", "max weight", "unsupported mass", "never-tried mass", "worst context"):
        t.add_column(col)
    for name, pr in ev.policies.items():
        w, s = pr.weights, pr.support
        assert w is not None and s is not None
        worst = s.worst[0] if s.worst else None
        t.add_row(
            escape(name),
            f"{w.ess:.0f}",
            f"{w.ess_ratio:.3f}",
            f"{w.max_weight:.3g}",
            f"{100 * s.unsupported_mass:.2f}%",
            f"{100 * s.never_tried_mass:.2f}%",
            "none"
            if worst is None
            else escape(f"{worst.context} ({worst.n_rows} rows; never tried: {', '.join(worst.never_tried) or '-'})"),
        )
    print_table(con, t)
    for msg in ev.warnings:
        con.print(escape(f"warning: {msg}"))


def parse_tau_grid(text: str | None) -> tuple[float, ...] | None:
    """``"1,10,inf"`` -> ``(1.0, 10.0, inf)``; a one-line error on ``--tau-grid`` otherwise."""
    if text is None:
        return None
    try:
        grid = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: expected comma-separated numbers >= 0 (inf allowed), e.g. 1,10,100,inf", param_hint="--tau-grid"
        ) from None
    if any(not t >= 0 for t in grid):  # also NaN
        raise typer.BadParameter(f"{text!r}: every threshold must be >= 0", param_hint="--tau-grid")
    return grid


def register(app: typer.Typer) -> None:
    """Add ``ope`` to the root app."""

    @app.command()
    def ope(
        log: Annotated[Path, typer.Option("--log", help="Joined log (parquet from `router-rl logs join`).")],
        policies: Annotated[
            list[str],
            typer.Option(
                "--policies",
                "-p",
                help="Target policies: artifact folders, or random / single:model=M (built from the log).",
            ),
        ],
        more: Annotated[
            list[str] | None,
            typer.Argument(help="More policies: `--policies P1 P2 P3` works (P2, P3 land here).", show_default=False),
        ] = None,
        incumbent: Annotated[
            str, typer.Option("--incumbent", help="Compare against 'logged' (the logging policy) or one policy.")
        ] = "logged",
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the report as JSON here (docs/evaluation.md).")
        ] = None,
        catalog: Annotated[
            Path | None,
            typer.Option(
                "--catalog",
                help="Model catalog JSON for the locations (default: the log's action_locations).",
            ),
        ] = None,
        n_bootstrap: Annotated[int, typer.Option("--n-bootstrap", help="Bootstrap resamples.")] = 1000,
        alpha: Annotated[float, typer.Option("--alpha", help="Interval level (0.05 = 95% intervals).")] = 0.05,
        folds: Annotated[int, typer.Option("--folds", help="Cross-fitting folds of the reward model.")] = 5,
        reward_model: Annotated[
            str, typer.Option("--reward-model", help="Reward model of DM/DR: lightgbm or ridge.")
        ] = "lightgbm",
        reward_model_param: Annotated[
            list[str] | None,
            typer.Option(
                "--reward-model-param",
                help="Reward-model parameter KEY=VALUE (JSON value), repeatable, e.g. pca_components=16.",
            ),
        ] = None,
        lam: Annotated[
            float, typer.Option("--lam", help="Utility cost weight: quality - lam * cost / cost-ref-usd.")
        ] = 1.0,
        cost_ref_usd: Annotated[
            float | None,
            typer.Option("--cost-ref-usd", help="Utility cost scale in USD (default: priciest model's mean cost)."),
        ] = None,
        support_threshold: Annotated[
            float, typer.Option("--support-threshold", help="Propensity under which a model is unsupported.")
        ] = 1e-3,
        tau: Annotated[float, typer.Option("--tau", help="Switch-DR weight threshold.")] = 10.0,
        interval: Annotated[
            str,
            typer.Option(
                "--interval",
                help="Interval method: betting (finite-sample, valid at any ESS), studentized or percentile bootstrap.",
            ),
        ] = "betting",
        bias_allowance: Annotated[bool, typer.Option("--bias-allowance/--no-bias-allowance", help=_BIAS_HELP)] = True,
        tuned_switch: Annotated[
            bool, typer.Option("--tuned-switch", help="Also report switch-DR with a data-driven threshold.")
        ] = False,
        tau_grid: Annotated[
            str | None,
            typer.Option("--tau-grid", help="Candidate thresholds of --tuned-switch, e.g. 1,10,100,inf."),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the folds, reward models and bootstrap.")] = 0,
    ) -> None:
        """Off-policy evaluation on the router's logs: DM, IPS, SNIPS, DR, switch-DR with intervals."""
        import json

        import polars as pl

        from router_rl.cli.evaluate import _specs
        from router_rl.cli.options import load_catalog_option
        from router_rl.core.errors import ConfigError
        from router_rl.eval.logged import (
            GROUP_COLUMNS,
            LogOPEConfig,
            LogOPEError,
            evaluate_log,
            group_keys,
            resolve_log_policies,
        )
        from router_rl.logs.data import LoggedDataError, load_logged
        from router_rl.ope.validation import OPEInputError

        flags = {
            "n_bootstrap": "--n-bootstrap",
            "alpha": "--alpha",
            "folds": "--folds",
            "reward_model": "--reward-model",
            "lam": "--lam",
            "cost_ref_usd": "--cost-ref-usd",
            "support_threshold": "--support-threshold",
            "tau_grid": "--tau-grid",
            "tau": "--tau",
            "interval": "--interval",
        }
        rm_params: dict[str, object] = {}
        for item in reward_model_param or []:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--reward-model-param")
            try:
                rm_params[key] = json.loads(raw)
            except json.JSONDecodeError:
                rm_params[key] = raw
        grid = parse_tau_grid(tau_grid)
        try:
            cfg = LogOPEConfig(
                n_bootstrap=n_bootstrap,
                alpha=alpha,
                seed=seed,
                folds=folds,
                reward_model=reward_model,  # type: ignore[arg-type]  # validated by LogOPEConfig
                reward_model_params=rm_params,
                lam=lam,
                cost_ref_usd=cost_ref_usd,
                support_threshold=support_threshold,
                tau=tau,
                incumbent=incumbent,
                interval=interval,  # type: ignore[arg-type]  # validated by LogOPEConfig
                bias_allowance=bias_allowance,
                tuned_switch=tuned_switch,
                tau_grid=grid,
            )
        except ConfigError as e:
            field = str(e).split(":", 1)[0].rsplit(".", 1)[-1]  # "LogOPEConfig.<field>: ..."
            hint = flags.get(field) or next((f for k, f in flags.items() if k in str(e)), "--n-bootstrap")
            raise typer.BadParameter(str(e).splitlines()[0], param_hint=hint) from None
        specs = _specs(policies, more)
        if not specs:
            raise typer.BadParameter("give at least one policy (-p DIR_OR_NAME)", param_hint="--policies")
        cat = load_catalog_option(catalog)
        try:
            data = load_logged(log, catalog=cat)
            have = pl.read_parquet_schema(log)
            table = pl.read_parquet(log, columns=[c for c in ("request_id", *GROUP_COLUMNS) if c in have])
        except (FileNotFoundError, LoggedDataError, ValueError) as e:
            raise typer.BadParameter(str(e), param_hint="--log") from None
        if data.n_labeled == 0:
            msg = f"{log}: no decision has a quality label (join feedback first)"
            raise typer.BadParameter(msg, param_hint="--log")
        try:
            pols = resolve_log_policies(specs, data)
        except LogOPEError as e:
            raise typer.BadParameter(str(e), param_hint="--policies") from None
        if incumbent != "logged" and incumbent not in pols:
            names = {s: (Path(s).name if Path(s).is_dir() else s) for s in specs}
            if incumbent in names:
                cfg = cfg.replace(incumbent=names[incumbent])
            else:
                msg = f"expected 'logged' or one of the policies {list(pols)}, got {incumbent!r}"
                raise typer.BadParameter(msg, param_hint="--incumbent")
        groups, group_by = group_keys(table, data)
        try:
            rep = evaluate_log(
                data,
                pols,
                config=cfg,
                groups=groups,
                group_by=group_by,
                sources={(Path(s).name if Path(s).is_dir() else s): s for s in specs},
                log_path=str(log),
            )
        except LogOPEError as e:
            msg = str(e)
            hint = "--cost-ref-usd" if msg.startswith("cost_ref_usd") else "--policies"
            raise typer.BadParameter(msg, param_hint=hint) from None
        except OPEInputError as e:
            hint = "--reward-model-param" if e.argument == "params" else "--log"
            raise typer.BadParameter(str(e), param_hint=hint) from None
        print_report(rep)
        if json_out is not None:
            rep.write_json(json_out)
            typer.echo(f"wrote {json_out}")

"""``router-rl report --log``: the live operators' report (the command's live mode; logic in eval/)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"expected an ISO time (2026-12-01T10:00:00Z), got {value!r}",
                                 param_hint=flag) from None


def run_live_report(
    log: Path,
    out: Path,
    *,
    catalog: Path | None,
    decisions: Path | None,
    since: str | None,
    until: str | None,
    agent_types: list[str] | None,
    reference: str | None,
    ope: bool,
    n_bootstrap: int,
    seed: int,
) -> None:
    """Read, compute, render, print a short summary; every input error is one line naming its flag."""
    from router_rl.cli.options import load_catalog_option
    from router_rl.core.errors import ConfigError
    from router_rl.eval.live_inputs import LiveReportError, agent_types_of, read_logged
    from router_rl.eval.live_render import write_live_report
    from router_rl.eval.live_report import LiveReportConfig, live_report
    from router_rl.traces.decision_log import DecisionLogError, read_decision_log

    cat = load_catalog_option(catalog)
    try:
        table = read_logged(log)
    except (FileNotFoundError, LiveReportError) as e:
        raise typer.BadParameter(str(e), param_hint="--log") from None
    dec = None
    if decisions is not None:
        try:
            dec = read_decision_log(decisions)
        except (FileNotFoundError, DecisionLogError) as e:
            raise typer.BadParameter(str(e), param_hint="--decisions") from None
    try:
        cfg = LiveReportConfig(since=_time(since, "--since"), until=_time(until, "--until"),
                               agent_types=agent_types_of(agent_types), reference_model=reference, ope=ope,
                               n_bootstrap=n_bootstrap, seed=seed)
    except ConfigError as e:
        flags = {"n_bootstrap": "--n-bootstrap", "since": "--since", "until": "--until", "agent_types": "--agent-type",
                 "reference_model": "--reference"}
        flag = next((f for k, f in flags.items() if k in e.setting), "--log")
        raise typer.BadParameter(str(e), param_hint=flag) from None
    try:
        rep = live_report(table, catalog=cat, decisions=dec, config=cfg,
                          source={"log": str(log), "decisions": None if decisions is None else str(decisions),
                                  "catalog": None if catalog is None else str(catalog)})
    except LiveReportError as e:
        msg = str(e)
        flag = msg.split(":", 1)[0] if msg.startswith("--") else "--log"
        raise typer.BadParameter(msg.split(": ", 1)[1] if msg.startswith("--") else msg, param_hint=flag) from None
    files = write_live_report(rep, out)
    g = rep.gates
    typer.echo(f"{rep.counts['rows']} decisions, local {100 * rep.shares['local']:.1f}%, "
               f"cloud {100 * rep.shares['cloud']:.1f}%, emergency {100 * rep.shares['emergency']:.1f}%; "
               f"highest phase passed: {(g.highest_passed if g else None) or 'none'}")
    for note in rep.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {len(files)} files to {out}")

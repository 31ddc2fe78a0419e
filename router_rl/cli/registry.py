"""``router-rl policies list|show|init|register``, ``router-rl promote``, ``router-rl rollback``: the policy registry.

Exit codes of ``promote``: 0 promoted (live, or canary started), 1 refused (every failing check
printed with its number and threshold), 2 a usage error (one line naming the flag). ``rollback``:
0 rolled back, 1 nothing to roll back to. Output is plain lines (no tables), so it does not
depend on the terminal width. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from router_rl.registry.registry import PolicyRegistry

RegistryOpt = Annotated[Path, typer.Option("--registry", help="The policy registry folder.")]


def _open(root: Path, *, create: bool = False) -> PolicyRegistry:
    from router_rl.registry.registry import PolicyRegistry, RegistryError

    try:
        return PolicyRegistry.create(root) if create else PolicyRegistry(root)
    except RegistryError as e:
        raise typer.BadParameter(str(e), param_hint="--registry") from None


def _status(reg: PolicyRegistry, version: str, st: dict[str, Any]) -> str:
    if st["live"] == version:
        return "live"
    c = st["canary"]
    if c is not None and c["version"] == version:
        return f"canary {100 * float(c['share']):g}%"
    if version in st["previous"]:
        return "previous"
    return "-"


def _check_line(c: dict[str, Any]) -> str:
    v = "n/a" if c["value"] is None else f"{c['value']:.4g}"
    if c["threshold"] is None:
        return f"{c['name']} = {v} (not gated)"
    verdict = {True: "ok", False: "FAIL", None: "skipped"}[c["passed"]]
    return f"{c['name']} = {v} (needs {c['op']} {c['threshold']:.4g}) {verdict}"


def print_promotion_record(rec: dict[str, Any], *, indent: str = "") -> None:
    """Print a ``promotion`` record: decision, log, the utility / quality estimates, every check."""
    v = rec.get("verdict") or {}
    log = rec.get("log") or {}
    typer.echo(
        f"{indent}#{rec['seq']} {rec['created_at']} {rec['candidate']} vs {rec['incumbent']}: "
        f"{'PASSED' if rec['passed'] else 'REFUSED'} -> {rec['action']}"
        + (f" ({100 * rec['canary_share']:g}%)" if rec.get("action") == "canary" else "")
    )
    typer.echo(f"{indent}  log: {log.get('path')} ({log.get('n_labeled')} labeled of {log.get('n_rows')} rows, "
               f"sha256 {str(log.get('sha256'))[:12]}...)")
    est = v.get("estimates") or {}
    lab = est.get("estimator")
    if lab:
        pct = f"{100 * est.get('confidence', 0.95):g}%"
        for metric in ("utility", "quality", "cost_usd", "local_share"):
            d = (est.get("difference") or {}).get(metric, {}).get(lab if metric != "local_share" else "exact")
            c = (est.get("candidate") or {}).get(metric, {}).get(lab if metric != "local_share" else "exact")
            if c is None:
                continue
            line = f"{indent}  {metric}: candidate {_num(c['value'])} [{_num(c['lower'])}, {_num(c['upper'])}]"
            if d is not None:
                line += f", difference {_num(d['value'])} [{_num(d['lower'])}, {_num(d['upper'])}]"
            typer.echo(line + f" ({lab if metric != 'local_share' else 'exact'}, {pct})")
        qr = est.get("quality_ratio") or {}
        if qr:
            typer.echo(f"{indent}  quality ratio vs {est['reference']['model']}: {_num(qr.get('value'))} "
                       f"[{_num(qr.get('lower'))}, {_num(qr.get('upper'))}]")
    for c in v.get("checks", []):
        typer.echo(f"{indent}  {_check_line(c)}")
    if not rec["passed"] or rec.get("action") == "stale":
        typer.echo(f"{indent}  why: {rec.get('why')}")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def register(app: typer.Typer) -> None:
    """Add the ``policies`` group, ``promote`` and ``rollback`` to the root app."""
    policies_app = typer.Typer(
        help="The policy registry: versions, which one is live, promotion records.", no_args_is_help=True
    )

    @policies_app.command("init")
    def init_cmd(registry: RegistryOpt) -> None:
        """Create a registry folder (idempotent)."""
        reg = _open(registry, create=True)
        typer.echo(f"registry {reg.root} (live: {reg.live or 'none'}, {len(reg.versions())} version(s))")

    @policies_app.command("register")
    def register_cmd(
        registry: RegistryOpt,
        artifact: Annotated[Path, typer.Option("--artifact", help="A saved policy artifact folder.")],
        source: Annotated[str | None, typer.Option("--source", help="Provenance (default: the folder).")] = None,
    ) -> None:
        """Copy a policy artifact into the registry as the next version (not live)."""
        from router_rl.registry.registry import RegistryError

        reg = _open(registry, create=True)
        try:
            v = reg.register(artifact, source=source)
        except RegistryError as e:
            raise typer.BadParameter(str(e), param_hint="--artifact") from None
        typer.echo(f"registered {v} ({reg.info(v).kind}) from {artifact}")

    @policies_app.command("list")
    def list_cmd(
        registry: RegistryOpt,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
    ) -> None:
        """Every registered version with its status (live, canary, previous)."""
        reg = _open(registry)
        st = reg.state()
        infos = reg.versions()
        if json_out:
            typer.echo(json.dumps({
                "registry": str(reg.root),
                "live": st["live"],
                "previous": st["previous"],
                "canary": st["canary"],
                "versions": [{**i.to_dict(), "status": _status(reg, i.version, st)} for i in infos],
            }, indent=2))
            return
        c = st["canary"]
        canary = f"{c['version']} at {100 * float(c['share']):g}%" if c else "none"
        typer.echo(f"registry {reg.root}: live {st['live'] or 'none'}, canary {canary}, "
                   f"previous {' '.join(st['previous']) or 'none'}")
        for i in infos:
            typer.echo(f"{i.version}  {_status(reg, i.version, st):<12} {i.kind:<10} {i.created_at}  "
                       f"models={len(i.models)}  source={i.source}")

    @policies_app.command("show")
    def show_cmd(
        version: Annotated[str, typer.Argument(help="Version id (v0001, ...), or 'live'.")],
        registry: RegistryOpt,
        records: Annotated[int, typer.Option("--records", help="How many recent promotion records to print.")] = 5,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
    ) -> None:
        """One version: registration, status, files, and its latest promotion / live-change records."""
        from router_rl.registry.registry import UnknownVersionError

        reg = _open(registry)
        st = reg.state()
        if version == "live":
            if st["live"] is None:
                raise typer.BadParameter(f"{reg.root}: no live version yet", param_hint="VERSION")
            version = str(st["live"])
        try:
            info = reg.info(version)
        except UnknownVersionError as e:
            raise typer.BadParameter(str(e), param_hint="VERSION") from None
        if records < 0:
            raise typer.BadParameter(f"expected >= 0, got {records}", param_hint="--records")
        mine = [r for r in reg.records() if version in (r.get("candidate"), r.get("version"), r.get("from"),
                                                        r.get("to"))]
        promos = [r for r in mine if r["kind"] == "promotion"][-records:] if records else []
        changes = [r for r in mine if r["kind"] in ("set_live", "rollback", "canary")][-records:] if records else []
        if json_out:
            typer.echo(json.dumps({**info.to_dict(), "status": _status(reg, version, st),
                                   "path": str(reg.path(version)), "promotions": promos, "changes": changes}, indent=2))
            return
        typer.echo(f"{version}: {info.kind} ({_status(reg, version, st)}), registered {info.created_at}")
        typer.echo(f"  source: {info.source}")
        typer.echo(f"  path: {reg.path(version)}")
        typer.echo(f"  policy version: {info.policy_version}; encoder: {info.encoder_fingerprint}; "
                   f"artifact format {info.artifact_format}")
        typer.echo(f"  models: {', '.join(info.models)}")
        if info.decision:
            typer.echo("  decision: " + ", ".join(f"{k}={v}" for k, v in info.decision.items()))
        bad = reg.verify(version)
        typer.echo(f"  files: {len(info.files_sha256)} ({'sha256 ok' if not bad else 'CHANGED: ' + ', '.join(bad)})")
        typer.echo(f"promotion records ({len(promos)} latest):")
        for r in promos:
            print_promotion_record(r, indent="  ")
        typer.echo(f"live changes ({len(changes)} latest):")
        for r in changes:
            what = {"set_live": f"live {r.get('previous_live')} -> {r.get('version')}",
                    "rollback": f"rollback {r.get('from')} -> {r.get('to')}",
                    "canary": f"canary {r.get('version')} at {100 * float(r.get('share') or 0):g}%"}[r["kind"]]
            typer.echo(f"  #{r['seq']} {r['created_at']} {what} by {r.get('actor')}: {r.get('reason')}")

    app.add_typer(policies_app, name="policies")

    @app.command()
    def promote(
        registry: RegistryOpt,
        candidate: Annotated[Path, typer.Option("--candidate", help="The candidate's saved policy artifact folder.")],
        log: Annotated[Path, typer.Option("--log", help="Joined log (parquet from `router-rl logs join`).")],
        gate: Annotated[
            Path | None, typer.Option("--gate", help="Gate config (YAML / JSON, configs/gate.yaml; default built-in).")
        ] = None,
        incumbent: Annotated[
            str | None,
            typer.Option("--incumbent", help="Judge against this version or 'logged' (default: live, else logged)."),
        ] = None,
        catalog: Annotated[
            Path | None, typer.Option("--catalog", help="Model catalog JSON for the log's locations.")
        ] = None,
        actor: Annotated[str, typer.Option("--actor", help="Who promotes (recorded).")] = "cli",
        json_out: Annotated[bool, typer.Option("--json", help="Print the promotion record as JSON.")] = False,
    ) -> None:
        """Judge a candidate on a log with the OPE gate; promote it only when it wins with confidence."""
        from router_rl.cli.options import load_catalog_option
        from router_rl.core.errors import ConfigError
        from router_rl.registry.gate import GateConfig, GateError
        from router_rl.registry.promote import promote as do_promote
        from router_rl.registry.registry import RegistryError, UnknownVersionError

        try:
            cfg = GateConfig.from_file(gate) if gate is not None else GateConfig()
        except ConfigError as e:
            raise typer.BadParameter(str(e).splitlines()[0], param_hint="--gate") from None
        if not candidate.is_dir():
            raise typer.BadParameter(f"{candidate}: not a folder (give a saved policy artifact)",
                                     param_hint="--candidate")
        if not log.is_file():
            raise typer.BadParameter(f"{log}: no such file (give the parquet written by `router-rl logs join`)",
                                     param_hint="--log")
        cat = load_catalog_option(catalog)
        reg = _open(registry, create=True)
        try:
            rec = do_promote(reg, candidate, log, cfg, incumbent=incumbent, actor=actor, catalog=cat)
        except UnknownVersionError as e:
            raise typer.BadParameter(str(e), param_hint="--incumbent") from None
        except GateError as e:
            msg = str(e)
            hint = ("--gate" if msg.startswith("reference:") else "--log" if msg.startswith(str(log))
                    else "--incumbent" if "policy 'incumbent " in msg else "--candidate")
            raise typer.BadParameter(msg, param_hint=hint) from None
        except RegistryError as e:
            raise typer.BadParameter(str(e), param_hint="--candidate") from None
        if json_out:
            typer.echo(json.dumps(rec.to_dict(), indent=2))
        else:
            for line in rec.verdict.summary_lines():
                typer.echo(line)
            if rec.action == "set_live":
                typer.echo(f"promoted {rec.version}: live now (record {rec.record_path.name})")
            elif rec.action == "canary":
                typer.echo(f"promoted {rec.version}: canary at {100 * rec.canary_share:g}% of traffic, "
                           f"live stays {reg.live} (record {rec.record_path.name})")
            elif rec.action == "stale":
                typer.echo(f"not promoted {rec.version}: the live version changed during the evaluation "
                           f"(record {rec.record_path.name})")
            else:
                typer.echo(f"refused {rec.version} (registered, not live; record {rec.record_path.name}):")
                for r in rec.verdict.reasons:
                    typer.echo(f"  {r}")
        if not rec.promoted:
            raise typer.Exit(code=1)

    @app.command()
    def rollback(
        registry: RegistryOpt,
        reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
        actor: Annotated[str, typer.Option("--actor", help="Who rolls back (recorded).")] = "cli",
    ) -> None:
        """Return the registry to the previous live version (ends a running canary), recorded."""
        from router_rl.registry.registry import RegistryError

        if not reason.strip():
            raise typer.BadParameter("expected a non-empty text", param_hint="--reason")
        reg = _open(registry)
        before = reg.live
        try:
            new = reg.rollback(reason=reason, actor=actor)
        except RegistryError as e:
            typer.echo(f"nothing rolled back: {e}")
            raise typer.Exit(code=1) from None
        typer.echo(f"rolled back {before} -> {new} (live now {new})")

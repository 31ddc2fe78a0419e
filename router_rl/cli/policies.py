"""``router-rl train`` and ``router-rl route``: fit a routing policy, ask it for a decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def _load_traceset(traces: str, n_tasks: int, seed: int, drop_invalid: bool = False) -> Any:
    from router_rl.traces import load_traces, simulate_fleet

    if traces == "sim":
        return simulate_fleet(n_tasks, seed=seed)
    path = Path(traces)
    if not path.exists():
        raise typer.BadParameter(f"{traces}: no such file (give a parquet written by router_rl.traces, or 'sim')",
                                 param_hint="--traces")
    try:
        return load_traces(path, seed=seed, drop_invalid=drop_invalid)
    except ValueError as e:  # TraceValidationError included: names the file, rows and column
        raise typer.BadParameter(str(e), param_hint="--traces") from e


def _parse_options(options: list[str]) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for opt in options:
        key, sep, val = opt.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--opt {opt!r}: expected KEY=VALUE (VALUE as JSON or text)")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def tuned_lgbm_options(kind: str, options: dict[str, Any], config_file: Path | None) -> dict[str, Any]:
    """``options`` with the ``config`` of a tuned-config file (``router-rl tune lgbm -o``) under them.

    Settings given with ``--opt config=...`` win over the file's.
    """
    if config_file is None:
        return options
    from router_rl.core.errors import ConfigError
    from router_rl.tune.best import read_tuned_config

    if kind != "lgbm":
        raise typer.BadParameter(f"a tuned config is for --policy lgbm, not {kind!r}", param_hint="'--config'")
    try:
        tuned = read_tuned_config(config_file)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="'--config'") from None
    if tuned.trainer != "lgbm":
        raise typer.BadParameter(f"{config_file}: written by `tune {tuned.trainer}`; train-ppo reads it",
                                 param_hint="'--config'")
    given = options.get("config") or {}
    if not isinstance(given, dict):
        raise typer.BadParameter("config=...: expected a JSON object when --config is given", param_hint="'--opt'")
    return {**options, "config": {**tuned.config, **given}}


def load_log_encoder(encoder_dir: Path | None) -> tuple[Any, Any]:
    """``(encoder, catalog or None)`` from ``--encoder`` (a policy artifact folder or an encoder.json).

    The log holds encoded features only, so the encoder that produced them cannot be rebuilt from
    it: it has to come with the logging policy's artifact (or be saved on its own).
    """
    from router_rl.features import EncoderLoadError, FeatureEncoder
    from router_rl.traces.catalog import ModelCatalog

    if encoder_dir is None:
        raise typer.BadParameter(
            "required with --log: the log holds encoded features only; give the logging policy's artifact "
            "folder (or a saved encoder.json) so the new artifact can encode requests",
            param_hint="'--encoder'",
        )
    path = encoder_dir / "encoder.json" if encoder_dir.is_dir() else encoder_dir
    if not path.is_file():
        raise typer.BadParameter(f"{encoder_dir}: no encoder.json there", param_hint="'--encoder'")
    try:
        enc = FeatureEncoder.load(path)
    except (EncoderLoadError, OSError, ValueError) as e:
        raise typer.BadParameter(f"{path}: {e}", param_hint="'--encoder'") from e
    catalog = None
    cat_path = path.parent / "catalog.json"
    if encoder_dir.is_dir() and cat_path.is_file():
        try:
            catalog = ModelCatalog.load(cat_path)
        except (OSError, ValueError) as e:
            raise typer.BadParameter(f"{cat_path}: {e}", param_hint="'--encoder'") from e
    return enc, catalog


def load_log(log: Path, encoder: Any, catalog: Any) -> tuple[Any, dict[str, int]]:
    """``(LoggedData, {policy_version: rows})`` of a joined log, its features checked against ``encoder``."""
    import polars as pl

    from router_rl.logs.data import LoggedDataError, load_logged

    if not log.is_file():
        raise typer.BadParameter(f"{log}: no such file (give the parquet written by `router-rl logs join`)",
                                 param_hint="'--log'")
    try:
        fps = pl.read_parquet(log, columns=["encoder_fingerprint", "policy_version"])
    except Exception as e:  # polars raises several types for unreadable / foreign files
        raise typer.BadParameter(f"{log}: not a joined decision log ({e})", param_hint="'--log'") from e
    other = fps.filter(pl.col("encoder_fingerprint").is_null() | (pl.col("encoder_fingerprint") != encoder.fingerprint))
    if other.height:
        got = sorted({str(v) for v in other["encoder_fingerprint"].to_list()})
        raise typer.BadParameter(
            f"the log's features come from encoder(s) {got} ({other.height} of {fps.height} rows), but this encoder "
            f"is {encoder.fingerprint}; give the encoder of the logging policy",
            param_hint="'--encoder'",
        )
    try:
        data = load_logged(log, catalog=catalog, require_fingerprint=encoder.fingerprint) if catalog is not None \
            else load_logged(log, require_fingerprint=encoder.fingerprint)
    except (LoggedDataError, KeyError) as e:
        raise typer.BadParameter(str(e), param_hint="'--log'") from e
    counts = fps.group_by("policy_version").len().sort("policy_version", nulls_last=True)
    versions = {str(r["policy_version"]): int(r["len"]) for r in counts.iter_rows(named=True)}
    return data, versions


def _train_from_log(
    *, policy: str, out: Path, log: Path, encoder_dir: Path | None, correction: str, clip: float, seed: int,
    opt: list[str], config_file: Path | None = None,
) -> None:
    """``router-rl train --log``: fit ``policy`` from partial feedback (policies/offpolicy.py)."""
    from rich.table import Table

    from router_rl.cli.console import make_console, print_table
    from router_rl.core.errors import ConfigError
    from router_rl.policies import make_policy
    from router_rl.policies.base import PolicyCapabilityError
    from router_rl.policies.offpolicy import FIT_CORRECTIONS, OffPolicyConfig, OffPolicyError, fit_from_log

    console = make_console()
    if correction not in FIT_CORRECTIONS:
        raise typer.BadParameter(
            f"expected one of {list(FIT_CORRECTIONS)}, got {correction!r}"
            + (" (ips is estimator-only: see docs/policies.md)" if correction == "ips" else ""),
            param_hint="'--correction'",
        )
    try:
        cfg = OffPolicyConfig.from_dict({"correction": correction, "clip": clip})
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="'--clip'") from e
    enc, catalog = load_log_encoder(encoder_dir)
    data, versions = load_log(log, enc, catalog)
    if catalog is not None:
        catalog = catalog.subset(list(data.models))
    from router_rl.eval.resolve import policy_kind

    try:
        kind = policy_kind(policy)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="'--policy'") from e
    options = tuned_lgbm_options(kind, _parse_options(opt), config_file)
    try:
        pol = make_policy(kind, data.models, **options)
    except KeyError as e:
        raise typer.BadParameter(str(e).strip("'\""), param_hint="'--policy'") from e
    except (ConfigError, TypeError, ValueError) as e:
        raise typer.BadParameter(str(e), param_hint="'--opt'") from e
    with console.status(f"learning {policy} from {data.n_labeled} labelled of {data.n} logged decisions"):
        try:
            fit_from_log(pol, data, cfg, seed=seed, encoder=enc, catalog=catalog, logging_policy_versions=versions)
        except PolicyCapabilityError as e:
            raise typer.BadParameter(str(e), param_hint="'--policy'") from e
        except OffPolicyError as e:
            raise typer.BadParameter(str(e), param_hint="'--log'") from e
    pol.metadata["log"] = str(log)
    pol.save(out)
    info = pol.metadata["offpolicy"]
    table = Table(title=f"{policy} learned from {log.name}")
    table.add_column("item")
    table.add_column("value", justify="right")
    w = info["weights"]
    for k, v in (
        ("correction", info["correction"]),
        ("weight clip", f"{info['clip']:g}"),
        ("rows", info["n_rows"]),
        ("labelled (used)", info["n_labeled"]),
        ("unlabelled (excluded)", info["n_unlabeled"]),
        ("fallback rows (credited to chosen)", info["n_fallback"]),
        ("weights clipped", w["n_clipped"]),
        ("quality cells outside [0, 1]", info["quality_cells_out_of_range"]),
        ("logging policies", ", ".join(f"{k}={n}" for k, n in versions.items())),
    ):
        table.add_row(k, str(v))
    print_table(console, table)
    console.print("rows per model: " + ", ".join(
        f"{m}={c}" for m, c in zip(data.models, info["rows_per_model"], strict=True)))
    console.print(f"saved [bold]{out}[/bold] ({pol.version})")


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``route`` to the root app."""

    @app.command()
    def train(
        policy: str = typer.Option(
            ..., "--policy", help="Policy name: lgbm (alias lightgbm), knn, mlp, mf, rules, cascade, ..."
        ),
        out: Path = typer.Option(..., "-o", "--out", help="Artifact folder to write"),
        traces: str = typer.Option("sim", "--traces", help="Trace parquet, a long CSV, or 'sim'"),
        target: str | None = typer.Option(
            None, "--target", help="Calibrate λ on validation: quality=0.95 | budget=USD | local=0.8"
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of training (and of the simulated fleet)"),
        n_tasks: int = typer.Option(2000, "--n-tasks", help="Tasks of the simulated fleet (--traces sim)"),
        opt: list[str] = typer.Option([], "--opt", help="Policy option KEY=VALUE (JSON values), repeatable"),
        log: Path | None = typer.Option(
            None, "--log", help="Learn from a joined decision log (router-rl logs join) instead of --traces"
        ),
        correction: str = typer.Option("iw", "--correction", help="--log: selection-bias correction iw | dr | none"),
        clip: float = typer.Option(10.0, "--clip", help="--log: upper bound of the importance weight 1/propensity"),
        encoder_dir: Path | None = typer.Option(
            None, "--encoder", help="--log: the encoder of the log's features (logging policy artifact or encoder.json)"
        ),
        drop_invalid: bool = typer.Option(False, "--drop-invalid", help="CSV traces: drop invalid rows, report counts"),
        config_file: Path | None = typer.Option(
            None, "--config", help="lgbm: LGBMConfig from a tuned-config file (router-rl tune lgbm -o); --opt wins"
        ),
    ) -> None:
        """Train a routing policy on the train split, calibrate on val, print validation metrics.

        With ``--log``: learn from the router's own decisions (partial feedback: only the chosen
        model's outcome), correcting the logging policy's selection bias (docs/policies.md,
        "Learning from the router's logs").
        """
        if log is not None:
            if traces != "sim":
                raise typer.BadParameter("give either --log or --traces, not both", param_hint="'--traces'")
            if target is not None:
                raise typer.BadParameter(
                    "not available with --log (calibrating λ needs full-information validation data)",
                    param_hint="'--target'",
                )
            _train_from_log(policy=policy, out=out, log=log, encoder_dir=encoder_dir, correction=correction,
                            clip=clip, seed=seed, opt=opt, config_file=config_file)
            return
        import numpy as np
        from rich.markup import escape
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from router_rl.cli.console import make_console, print_table
        from router_rl.eval.resolve import policy_kind, task_encoder_config
        from router_rl.features import EncoderConfig, FeatureEncoder
        from router_rl.policies import make_policy
        from router_rl.policies.calibration import Target
        from router_rl.traces.split import MissingSplitError, require_splits

        console = make_console()
        try:
            tgt = Target.parse(target) if target else None
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--target") from e
        try:
            kind = policy_kind(policy)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--policy") from e
        options = tuned_lgbm_options(kind, _parse_options(opt), config_file)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as prog:
            step = prog.add_task("loading traces", total=None)
            ts = _load_traceset(traces, n_tasks, seed, drop_invalid)
            matrix = ts.matrix()
            if Path(traces).suffix in (".csv", ".tsv"):  # imported on the fly: say what the import did
                for note in ts.report.notes:
                    prog.console.print(f"note: {escape(note)}")
            try:
                parts, split_notes = require_splits(matrix, ("train", "val"), seed=seed, source=traces)
            except MissingSplitError as e:
                raise typer.BadParameter(str(e), param_hint="--traces") from e
            for note in split_notes:
                prog.console.print(f"note: {escape(note)}")
            tr, va = parts["train"], parts["val"]
            prog.update(step, description=f"encoding {tr.n_tasks} train / {va.n_tasks} val tasks")
            cfg = EncoderConfig().restricted_to(tr.tasks.columns)
            if ts.ground_truth is None:  # a user's own columns (repo, ...) too; see eval.resolve.trace_features
                cfg = task_encoder_config(tr.tasks)
            enc = FeatureEncoder(cfg).fit(tr.tasks)
            X_tr, X_va = enc.transform(tr.tasks), enc.transform(va.tasks)
            prog.update(step, description=f"training {policy}")
            try:
                pol = make_policy(kind, matrix.models, **options)
            except (TypeError, ValueError) as e:
                raise typer.BadParameter(f"policy {kind!r}: {e}", param_hint="--opt") from e
            pol.attach_encoder(enc)
            pol.fit(X_tr, tr, seed=seed)
            if tgt is not None:
                if not hasattr(pol, "calibrate"):
                    raise typer.BadParameter(f"--target: policy {policy!r} has no λ/threshold to calibrate")
                prog.update(step, description=f"calibrating to {tgt} on validation")
                pol.calibrate(X_va, va, tgt)
            res = pol.route_matrix(X_va, va)
        ref = tr.best_single_model()
        j = va.model_index(ref)
        local = va.is_local()[res.actions].mean() if va.catalog is not None else float("nan")
        metrics = {
            "val_quality": float(res.quality.mean()),
            "val_cost_usd": float(res.cost.mean()),
            "reference_model": ref,
            "reference_quality": float(va.quality[:, j].mean()),
            "reference_cost_usd": float(va.cost[:, j].mean()),
            "quality_ratio": float(res.quality.mean() / max(va.quality[:, j].mean(), 1e-12)),
            "cost_share": float(res.cost.mean() / max(va.cost[:, j].mean(), 1e-12)),
            "local_share": float(local),
            "mean_calls": float(res.n_calls.mean()),
        }
        if hasattr(pol, "predict_quality"):
            from router_rl.policies.calibration import expected_calibration_error

            metrics["val_ece"] = expected_calibration_error(pol.predict_quality(X_va), va.quality)
        pol.metadata["val_metrics"] = metrics
        pol.metadata["traces"] = traces
        pol.save(out)
        table = Table(title=f"{policy} on validation ({va.n_tasks} tasks)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in metrics.items():
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        cal = pol.metadata.get("calibration")
        if cal:
            table.add_row("target", f"{cal['target']} ({'met' if cal['met'] else 'NOT met'} on val)")
            table.add_row("λ / threshold", f"{cal['lam']:.4g}")
        print_table(console, table)
        counts = np.bincount(res.actions, minlength=len(matrix.models))
        console.print("choices: " + ", ".join(f"{m}={c}" for m, c in zip(matrix.models, counts, strict=True) if c))
        console.print(f"saved [bold]{out}[/bold] ({pol.version})")

    @app.command()
    def route(
        policy_dir: Path = typer.Option(..., "--policy", help="Artifact folder written by `router-rl train`"),
        prompt: str = typer.Option(..., "--prompt", help="Request text (not logged)"),
        agent_type: str | None = typer.Option(None, "--agent-type"),
        category: str | None = typer.Option(None, "--category"),
        max_tokens: int | None = typer.Option(None, "--max-tokens"),
        budget_remaining: float = typer.Option(
            1.0, "--budget-remaining", help="PPO policies: unspent fraction of the budget window"
        ),
        elapsed: float = typer.Option(0.0, "--elapsed", help="PPO policies: elapsed fraction of the budget window"),
        feature: list[str] = typer.Option(
            [], "--feature", help="Another task feature of your traces, KEY=VALUE (e.g. repo=org/app), repeatable"
        ),
    ) -> None:
        """Route one request: print the choice, the distribution and the reasons.

        PPO policies also need the router state; it defaults to a fresh budget window (full budget,
        nothing elapsed, every provider breaker closed), ``--budget-remaining`` / ``--elapsed``
        change it.
        """
        from rich.table import Table

        from router_rl.cli.console import make_console, print_table
        from router_rl.features import is_sensitive
        from router_rl.policies import RoutingPolicy
        from router_rl.policies.base import PolicyLoadError
        from router_rl.policies.utility import UtilityPolicy

        console = make_console()
        try:
            pol = RoutingPolicy.load(policy_dir)
        except PolicyLoadError as e:
            raise typer.BadParameter(str(e), param_hint="--policy") from e
        if pol.encoder is None:
            raise typer.BadParameter(f"{policy_dir}: the artifact carries no feature encoder; cannot encode text")
        record: dict[str, Any] = {"prompt": prompt, "agent_type": agent_type, "category": category}
        if max_tokens is not None:
            record["max_tokens"] = max_tokens
        for item in feature:
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--feature")
            known = (*pol.encoder.config.categorical_columns, *pol.encoder.config.numeric_columns)
            if key.strip() not in known:
                raise typer.BadParameter(f"{key.strip()!r} is not a feature of this policy (its task columns: "
                                         f"{list(known)})", param_hint="--feature")
            try:
                record[key.strip()] = float(val) if key.strip() in pol.encoder.config.numeric_columns else val
            except ValueError:
                raise typer.BadParameter(f"{item!r}: {key.strip()!r} is numeric, expected a number",
                                         param_hint="--feature") from None
        X = pol.encoder.transform_records([record])
        sensitive = is_sensitive(prompt)
        table = Table(title=f"{pol.version}")
        table.add_column("model")
        table.add_column("prob", justify="right")
        if isinstance(pol, UtilityPolicy):
            import numpy as np

            info = pol.explain(X, sensitive=np.array([sensitive]))[0]
            for c in ("pred quality", "exp cost USD", "utility"):
                table.add_column(c, justify="right")
            for m, d in info["per_model"].items():
                table.add_row(m, f"{d['prob']:.3f}", f"{d['pred_quality']:.3f}", f"{d['exp_cost_usd']:.2e}",
                              f"{d['utility']:.3f}" if d["allowed"] else "blocked")
            print_table(console, table)
            console.print(f"chosen: [bold]{info['chosen']}[/bold] (confidence {info['confidence']:.3f}); "
                          f"λ={info['lam']:.4g} μ={info['mu']:.4g}")
            console.print("constraints: " + (", ".join(info["constraints"]) or "none"))
        elif pol.kind == "ppo":
            from router_rl.envs.state import state_vector
            from router_rl.policies.ppo import PPORouter

            assert isinstance(pol, PPORouter)
            n_prov = len(pol.providers)
            try:
                s = state_vector(
                    budget_remaining_frac=budget_remaining,
                    elapsed_frac=elapsed,
                    local_share=0.0,
                    breakers=[0.0] * n_prov,
                )
            except ValueError as e:
                raise typer.BadParameter(str(e)) from e
            obs = pol.observe(X, s)
            p = pol.action_distribution(obs)[0]
            base_choice = pol.models[int(pol.base_actions(obs)[0])]
            for m, v in zip(pol.models, p, strict=True):
                table.add_row(m, f"{v:.3f}")
            print_table(console, table)
            console.print(f"chosen: [bold]{pol.models[int(p.argmax())]}[/bold] (base policy: {base_choice})")
            console.print(
                f"state: budget remaining {budget_remaining:.2f}, elapsed {elapsed:.2f}, "
                f"breakers closed ({', '.join(pol.providers) or 'none'}); "
                f"budget price δ = {float(pol.budget_price(obs)[0]):+.4f}"
            )
        else:
            p = pol.action_distribution(X)[0]
            for m, v in zip(pol.models, p, strict=True):
                table.add_row(m, f"{v:.3f}")
            print_table(console, table)
            console.print(f"chosen: [bold]{pol.models[int(p.argmax())]}[/bold]")
        console.print(f"privacy-sensitive prompt: {sensitive}")

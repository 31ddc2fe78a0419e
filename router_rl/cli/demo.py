"""``router-rl demo``: the main job end to end, on the built-in simulated QE fleet or given traces.

1. simulate a QE fleet (or load ``--traces``) and summarise it;
2. fit the shared feature encoder and the LightGBM meta-model on the train split, calibrate its
   operating point on validation to the ``--target`` (default ``quality>=0.95``: the mission
   point, as many requests on local models as possible at 95% of the reference model's quality,
   λ and the locality term ν calibrated together), save the policy artifact; also show the same
   router calibrated to ``--mission-target`` (default ``local>=0.8``: the best quality at 80% local
   share, λ and ν together), the other side of the fleet's trade-off, and the ``cells`` lookup-table baseline
   calibrated to the same ``--target``;
3. evaluate it offline against the baselines and the oracle on the held-out test split, with
   bootstrap intervals, the cost-quality frontier and the fleet's independence gates;
4. write a Markdown/HTML report with plots and the JSON of every metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

BASELINES = ("rules", "cheapest", "random", "cascade", "knn")
#: Baselines calibrated to the same ``--target`` as the learned router (compared at its operating point).
CALIBRATED_BASELINES = ("cells",)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the root app."""

    @app.command()
    def demo(
        traces: Annotated[
            Path | None, typer.Option("--traces", "-t", help="Trace parquet or long CSV; default: simulate a QE fleet.")
        ] = None,
        n_tasks: Annotated[int, typer.Option("--n-tasks", min=200, help="Tasks of the simulated fleet.")] = 4000,
        target: Annotated[
            str, typer.Option("--target", help="Operating point calibrated on validation: "
                              "quality=X|budget=USD|local=X, or joint: quality>=X[,local>=X][,budget<=USD]")
        ] = "quality>=0.95",
        mission_target: Annotated[
            str, typer.Option("--mission-target", help="Second operating point shown next to --target ('' to skip).")
        ] = "local>=0.8",
        seed: Annotated[int, typer.Option("--seed", help="Seed of simulation, training and bootstrap.")] = 0,
        n_bootstrap: Annotated[int, typer.Option("--n-bootstrap", help="Bootstrap resamples.")] = 200,
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/demo"),
        drop_invalid: Annotated[
            bool, typer.Option("--drop-invalid", help="CSV traces: drop invalid rows/tasks (counted).")
        ] = False,
    ) -> None:
        """Simulate (or load) traces, train the LightGBM router, evaluate it offline, write a report."""
        import copy

        from rich.markup import escape
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from router_rl.cli.console import make_console
        from router_rl.cli.evaluate import _print, print_operating_points
        from router_rl.cli.traces import print_traces_info
        from router_rl.eval.report import write_report
        from router_rl.eval.resolve import trace_features
        from router_rl.eval.runner import EvalConfig, evaluate_policies
        from router_rl.policies import make_policy
        from router_rl.policies.calibration import parse_target
        from router_rl.traces import load_traces, simulate_fleet
        from router_rl.traces.split import require_splits

        console = make_console()
        for flag, text in (("--target", target), ("--mission-target", mission_target)):
            try:
                if text or flag == "--target":
                    parse_target(text)
            except ValueError as e:
                raise typer.BadParameter(str(e), param_hint=flag) from e
        tgt = parse_target(target)
        out.mkdir(parents=True, exist_ok=True)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as prog:
            step = prog.add_task("loading traces", total=None)
            if traces is None:
                prog.update(step, description=f"simulating a QE fleet of {n_tasks} tasks (seed {seed})")
                ts = simulate_fleet(n_tasks, seed=seed)
                traces = out / "traces.parquet"
                ts.save(traces)
            else:
                try:
                    ts = load_traces(traces, drop_invalid=drop_invalid, seed=seed)
                except (FileNotFoundError, ValueError) as e:
                    raise typer.BadParameter(str(e), param_hint="--traces") from e
        print_traces_info(ts, str(traces), console)
        matrix = ts.matrix()
        try:
            parts, notes = require_splits(matrix, ("train", "val", "test"), seed=seed, source=str(traces))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--traces") from e
        for note in notes:
            console.print(f"note: {escape(note)}")
        train, val, test = parts["train"], parts["val"], parts["test"]
        feats = trace_features(train, simulated=ts.ground_truth is not None)
        encoder = feats.shared_encoder()  # type: ignore[attr-defined]

        policies = {}
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as prog:
            step = prog.add_task("training lgbm", total=None)
            lgbm = make_policy("lgbm", matrix.models)
            lgbm.attach_encoder(encoder)
            lgbm.fit(encoder.transform(train.tasks), train, seed=seed)
            prog.update(step, description=f"calibrating lgbm to {tgt} on validation")
            lgbm.calibrate(encoder.transform(val.tasks), val, tgt)  # type: ignore[attr-defined]
            lgbm.save(out / "policy")
            policies["lgbm"] = lgbm
            if mission_target and parse_target(mission_target) != tgt:
                # the mission's trade-off: the same fitted router at an operating point for the local share
                prog.update(step, description=f"calibrating a copy of lgbm to {mission_target}")
                mission = copy.deepcopy(lgbm)
                mission.calibrate(encoder.transform(val.tasks), val, parse_target(mission_target))  # type: ignore[attr-defined]
                policies[f"lgbm@{mission_target}"] = mission
            for name in CALIBRATED_BASELINES:
                prog.update(step, description=f"training baseline {name}, calibrating it to {tgt}")
                pol = make_policy(name, matrix.models)
                pol.attach_encoder(encoder)
                pol.fit(encoder.transform(train.tasks), train, seed=seed)
                pol.calibrate(encoder.transform(val.tasks), val, tgt)  # type: ignore[attr-defined]
                policies[f"{name}@{tgt}"] = pol
            for name in BASELINES:
                prog.update(step, description=f"training baseline {name}")
                pol = make_policy(name, matrix.models)
                pol.attach_encoder(encoder)
                pol.fit(encoder.transform(train.tasks), train, seed=seed)
                policies[name] = pol
            ref = train.best_single_model()
            policies[f"single:{ref}"] = make_policy("single", matrix.models, model=ref).fit(
                encoder.transform(train.tasks), train, seed=seed
            )

            def progress(name: str) -> None:
                prog.update(step, description=f"evaluating {name} on test")

            res = evaluate_policies(
                train, val, test, policies, config=EvalConfig(n_bootstrap=n_bootstrap, seed=seed),
                features=feats, split="test", progress=progress,
            )
        print_operating_points(console, res, {n: p for n, p in policies.items() if n.startswith("lgbm")})
        _print(res)
        res.write_json(out / "evaluation.json")
        files = write_report(res, out / "report")
        console.print(f"policy artifact: {out / 'policy'}; report: {out / 'report'} ({len(files)} files); "
                      f"metrics: {out / 'evaluation.json'}")

"""``router-rl loop``: the closed loop on 127.0.0.1 (traffic, feedback, learning, OPE gate, swap), reported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``loop`` to ``app``."""

    @app.command("loop")
    def loop_cmd(
        traces: Annotated[str, typer.Option("--traces", help="'sim' (the simulated fleet) or a trace file "
                                                           "(full-information outcome matrix)")] = "sim",
        rounds: Annotated[int, typer.Option("--rounds", help="rounds of traffic -> learn -> gate -> swap")] = 5,
        requests_per_round: Annotated[int, typer.Option("--requests-per-round")] = 2000,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        out: Annotated[Path, typer.Option("--out", help="run folder (logs, policies, report.md/json/png)")] = Path(
            "runs/loop"),
        inject_regression: Annotated[int | None, typer.Option(
            "--inject-regression", help="from this round on one backend model answers with lower quality")] = None,
        regression_model: Annotated[str | None, typer.Option("--regression-model")] = None,
        regression_factor: Annotated[float, typer.Option("--regression-factor")] = 0.3,
        bad_candidate_round: Annotated[int | None, typer.Option(
            "--bad-candidate-round", help="in this round the candidate is a deliberately worse policy")] = None,
        candidate_kind: Annotated[str, typer.Option(
            "--candidate-kind", help="the worse candidate: random | cheapest | corrupted")] = "corrupted",
        epsilon: Annotated[float, typer.Option("--epsilon", help="router exploration share")] = 0.1,
        lam: Annotated[float, typer.Option("--lam", help="cost weight of the learners and the gate's utility")] = 0.1,
        quality_floor: Annotated[float, typer.Option(
            "--quality-floor", help="gate: candidate quality / best single model lower bound")] = 0.85,
        concurrency: Annotated[int, typer.Option("--concurrency")] = 16,
        fleet_tasks: Annotated[int, typer.Option("--fleet-tasks", help="tasks of the simulated fleet")] = 3000,
        n_bootstrap: Annotated[int, typer.Option("--n-bootstrap")] = 200,
        min_ess: Annotated[float, typer.Option("--min-ess", help="gate: minimum Kish ESS (rows)")] = 20.0,
        local_target: Annotated[float | None, typer.Option("--local-target", help="gate: minimum local share")] = None,
    ) -> None:
        """Run the closed loop and write report.md / report.json / report.png into --out."""
        import logging

        from router_rl.cli.console import make_console
        from router_rl.core.errors import ConfigError
        from router_rl.loop.config import BAD_CANDIDATES, LoopConfig
        from router_rl.loop.report import write_report
        from router_rl.loop.rounds import run_loop
        from router_rl.loop.world import LoopWorldError

        if candidate_kind not in BAD_CANDIDATES:
            raise typer.BadParameter(f"expected one of {list(BAD_CANDIDATES)}, got {candidate_kind!r}",
                                     param_hint="'--candidate-kind'")
        if traces != "sim" and not Path(traces).is_file():
            raise typer.BadParameter(f"{traces}: no such file (or 'sim')", param_hint="'--traces'")
        flags = {"rounds": "--rounds", "requests_per_round": "--requests-per-round", "seed": "--seed",
                 "inject_regression_round": "--inject-regression", "regression_factor": "--regression-factor",
                 "bad_candidate_round": "--bad-candidate-round", "epsilon": "--epsilon", "lam": "--lam",
                 "concurrency": "--concurrency", "fleet_tasks": "--fleet-tasks", "n_bootstrap": "--n-bootstrap",
                 "regression_model": "--regression-model", "min_ess": "--min-ess",
                 "local_target": "--local-target", "quality_floor": "--quality-floor"}
        try:
            cfg = LoopConfig.from_dict({
                "rounds": rounds, "requests_per_round": requests_per_round, "seed": seed,
                "traces": None if traces == "sim" else traces, "inject_regression_round": inject_regression,
                "regression_model": regression_model, "regression_factor": regression_factor,
                "bad_candidate_round": bad_candidate_round, "bad_candidate_kind": candidate_kind,
                "epsilon": epsilon, "lam": lam, "concurrency": concurrency, "fleet_tasks": fleet_tasks,
                "n_bootstrap": n_bootstrap, "min_ess": min_ess, "local_target": local_target,
                "quality_floor": quality_floor,
            })
        except ConfigError as e:
            field = str(getattr(e, "setting", "") or "").split(".")[-1]
            msg = str(e).replace("LoopConfig.LoopConfig.", "LoopConfig.")
            raise typer.BadParameter(msg, param_hint=f"'{flags.get(field, '--rounds')}'") from None
        for noisy in ("httpx", "router_rl.router", "router_rl.replay", "uvicorn"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        console = make_console()
        try:
            result = run_loop(cfg, out, progress=console.print)
        except LoopWorldError as e:
            raise typer.BadParameter(str(e), param_hint="'--traces'") from None
        files = write_report(result, out)
        s = result.summary()
        console.print(
            f"{s['requests']} requests, {s['failed_requests']} failed; {s['promotions']} promoted, "
            f"{s['refusals']} refused; live-quality CI covered {s['live_quality_covered']}, "
            f"candidate {s['candidate_quality_covered']}"
        )
        for name, p in files.items():
            console.print(f"{name}: {p}")

"""``router-rl envs ...``: list, inspect, check and roll out the routing environments."""

from __future__ import annotations

from typing import Annotated

import typer

envs_app = typer.Typer(help="Gymnasium routing environments built from traces (specs in envs/).", no_args_is_help=True)


@envs_app.command("list")
def list_envs() -> None:
    """List the shipped environment specs and their Gymnasium ids."""
    from rich.table import Table

    from router_rl.cli.console import make_console, print_table
    from router_rl.envs.spec import list_spec_files, load_spec

    table = Table("id", "kind", "data", "split", "horizon", "description")
    for f in list_spec_files():
        s = load_spec(f)
        data = s.data.kind if s.data.source == "importer" else s.data.source
        table.add_row(s.env_id, s.kind, str(data), s.split.name, str(s.horizon), s.description)
    print_table(make_console(), table)


@envs_app.command("show")
def show(name: Annotated[str, typer.Argument(help="Spec name, path or Gymnasium id.")]) -> None:
    """Print a validated spec (all defaults filled in) as YAML."""
    import yaml
    from rich.syntax import Syntax

    from router_rl.cli.console import make_console
    from router_rl.envs.spec import load_spec

    spec = load_spec(name)
    make_console().print(Syntax(yaml.safe_dump(spec.model_dump(exclude={"base_dir"}), sort_keys=False), "yaml"))


@envs_app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="Spec name, path or Gymnasium id.")],
    split: Annotated[str, typer.Option(help="Split to check.")] = "train",
) -> None:
    """Build the environment and run the Gymnasium and Stable-Baselines3 env checkers."""
    import warnings

    import router_rl.envs as renvs
    from router_rl.cli.console import make_console

    console = make_console()
    with console.status(f"loading {name} [{split}]"):
        env = renvs.make(name, split=split)
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check(env, skip_render_check=True)
        sb3_check(env)
    for w in caught:
        console.print(f"[yellow]warning[/]: {w.message}")
    console.print(
        f"{name}: obs {env.observation_space.shape}, actions {env.action_space}, "
        f"{'[green]0 warnings[/]' if not caught else f'[red]{len(caught)} warning(s)[/]'}"
    )
    if caught:
        raise typer.Exit(1)


@envs_app.command("rollout")
def rollout(
    name: Annotated[str, typer.Argument(help="Spec name, path or Gymnasium id.")],
    policy: Annotated[str, typer.Option(help="random | greedy (per-request best) | cheapest | model:<id>")] = "random",
    episodes: Annotated[int, typer.Option(min=1)] = 5,
    seed: Annotated[int, typer.Option()] = 0,
    split: Annotated[str, typer.Option()] = "test",
) -> None:
    """Roll out a simple baseline policy and print mean return / quality / cost per episode."""
    import numpy as np
    from rich.markup import escape
    from rich.progress import Progress

    import router_rl.envs as renvs
    from router_rl.cli.console import make_console

    env = renvs.make(name, split=split)
    tb = env.tables  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    fixed: int | None = None
    if policy.startswith("model:"):
        fixed = tb.models.index(policy.removeprefix("model:")) if policy[6:] in tb.models else -1
        if fixed < 0:
            raise typer.BadParameter(f"unknown model {policy[6:]!r}; models: {list(tb.models)}")
    elif policy not in ("random", "greedy", "cheapest"):
        raise typer.BadParameter(f"unknown policy {policy!r}")
    returns, quality, cost = [], [], []
    with Progress(transient=True) as prog:
        task = prog.add_task(f"{name} [{policy}]", total=episodes)
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            done, ret, q, c, n = False, 0.0, 0.0, 0.0, 0
            while not done:
                if fixed is not None:
                    a = fixed
                elif policy == "random":
                    a = int(rng.integers(tb.n_models))
                elif policy == "greedy":
                    a = int(np.argmax(env.current_rewards()))  # type: ignore[attr-defined]
                else:
                    a = int(np.argmin(tb.cost[env.current_task()]))  # type: ignore[attr-defined]
                _, r, term, trunc, info = env.step(a)
                ret += float(r)
                q += info["quality"]
                c += info["cost"]
                n += 1
                done = term or trunc
            returns.append(ret)
            quality.append(q / n)
            cost.append(c)
            prog.advance(task)
    msg = (
        f"{name} [{split}] policy={policy}: return {np.mean(returns):.3f} ± {np.std(returns):.3f}, "
        f"quality/task {np.mean(quality):.4f}, cost/episode ${np.mean(cost):.4f} over {episodes} episode(s)"
    )
    make_console().print(escape(msg))


@envs_app.command("demo-sequential")
def demo_sequential(seed: Annotated[int, typer.Option()] = 0) -> None:
    """Show on hand-made traces that budget pacing and breaker-aware routing beat greedy."""
    from rich.table import Table

    from router_rl.cli.console import make_console, print_table
    from router_rl.envs.experiments import outage_riding, pacing_vs_greedy

    table = Table("experiment", "greedy return", "sequential return", "greedy quality", "sequential quality")
    for label, res in (
        ("budget pacing (easy first, hard later)", pacing_vs_greedy(seed=seed)),
        ("riding out outages (breaker-aware)", outage_riding(seed=seed)),
    ):
        table.add_row(
            label,
            f"{res.greedy.mean():.2f}",
            f"{res.sequential.mean():.2f}",
            f"{res.greedy_quality:.3f}",
            f"{res.sequential_quality:.3f}",
        )
    print_table(make_console(), table)


def register(app: typer.Typer) -> None:
    """Add the ``envs`` command group to the root app."""
    app.add_typer(envs_app, name="envs")

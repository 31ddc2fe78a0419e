"""The Ray Tune driver shared by the LightGBM and PPO searches: settings, scheduler, results.

Trials are fixed beforehand (:func:`router_rl.tune.space.sample_trials`) and run as a
``tune.grid_search`` over that list, each with ``cpus_per_trial`` CPUs, under an
:class:`~ray.tune.schedulers.ASHAScheduler` (asynchronous successive halving): a trial reports
its validation metric once per *rung* (a boosting-round or timestep budget) and is stopped when
it falls out of the top ``1 / reduction_factor`` at a rung. The best trial is chosen among those
that ran every rung (a stopped trial's score is at a smaller budget and is not comparable).
Ray is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from router_rl.core.config import NonNegativeInt, PositiveInt, StrictConfig
from router_rl.tune.space import TrialSpec


class TuneRunError(RuntimeError):
    """No trial finished, or Ray could not start (the message says which and why)."""


class TuneSettings(StrictConfig):
    """How the trials run (the search itself is the space + trial count).

    Attributes:
        trials: Trials to run.
        base_seed: Seed every trial's values and seed derive from.
        rungs: Reports per trial (budgets ``full · 2^(k − rungs + 1)``, k = 0..rungs−1 for
            LightGBM rounds; equal timestep chunks for PPO); 1 = no early stopping.
        grace_period: Rungs every trial runs before it can be stopped.
        reduction_factor: ASHA keeps the top ``1 / reduction_factor`` of the trials at each rung.
        cpus_per_trial: CPUs reserved per trial (LightGBM / torch threads use 1 each).
        max_concurrent: Trials running at once (0 = as many as the CPUs allow).
        address: ``""`` = start a local Ray (``num_cpus``), else ``auto`` or ``ray://host:port``.
        num_cpus: CPUs of the local Ray (0 = all of the machine's).
        storage: Folder of Ray Tune's experiment records (made absolute).
        name: Experiment name (sub-folder of ``storage``).
    """

    trials: PositiveInt = 8
    base_seed: NonNegativeInt = 0
    rungs: PositiveInt = 3
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 2
    cpus_per_trial: PositiveInt = 1
    max_concurrent: NonNegativeInt = 0
    address: str = ""
    num_cpus: NonNegativeInt = 0
    storage: str = "runs/tune"
    name: str = "tune"


@dataclass
class TrialResult:
    """One trial as Ray Tune finished it.

    Attributes:
        spec: The trial (index, seed, params, config).
        rungs_done: Rungs reported.
        metrics: The last reported metrics (``{}`` when it failed before reporting).
        history: The ranking metric at each rung reported, in order.
        error: The error text when the trial failed.
    """

    spec: TrialSpec
    rungs_done: int
    metrics: dict[str, Any]
    history: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class TuneOutcome:
    """Every trial of a search and the best one.

    Attributes:
        trials: One :class:`TrialResult` per trial, by index.
        best: The best trial that ran every rung.
        metric, mode: What the trials were ranked by.
        rungs: Rungs of a full trial.
        stopped_early: Trials the scheduler stopped before the last rung.
        failed: Trials that raised (listed in ``trials`` with their error).
        storage: Ray Tune's experiment folder.
    """

    trials: list[TrialResult]
    best: TrialResult
    metric: str
    mode: Literal["max", "min"]
    rungs: int
    stopped_early: int
    failed: int
    storage: str
    extra: dict[str, Any] = field(default_factory=dict)


def rung_budgets(full: int, rungs: int) -> list[int]:
    """Increasing budgets ending at ``full``: ``ceil(full · 2^(k − rungs + 1))``, duplicates removed."""
    out: list[int] = []
    for k in range(rungs):
        b = max(1, math.ceil(full * 2.0 ** (k - rungs + 1)))
        if not out or b > out[-1]:
            out.append(b)
    return out


def chunk_budgets(full: int, rungs: int) -> list[int]:
    """``full`` split into ``rungs`` increments as equal as possible (each >= 1)."""
    n = min(rungs, full)
    base, extra = divmod(full, n)
    return [base + (1 if k < extra else 0) for k in range(n)]


def stop_new_children(before: set[int]) -> list[int]:
    """Kill the Ray processes this process started since ``before`` (all pids then); returns their pids.

    A local ``ray.init`` that fails part-way (e.g. the raylet missing Ray's startup window on a
    loaded machine) leaves the processes it had started running, some already re-parented to init;
    ``ray.shutdown()`` does not stop them. Only new processes that are this process's children or,
    re-parented, share its session and run Ray's code are touched.
    """
    import psutil

    me, sid = psutil.Process(), os.getsid(0)
    mine = {c.pid for c in me.children(recursive=True)}
    victims = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid in before or proc.pid == me.pid:
            continue
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            orphan = os.getsid(proc.pid) == sid and ("ray::" in cmd or "/ray/" in cmd)
        except (psutil.Error, OSError):
            continue
        if proc.pid in mine or orphan:
            victims.append(proc)
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=10)
    return [p.pid for p in victims]


def child_pids() -> set[int]:
    """Every pid on the machine now (the ``before`` of :func:`stop_new_children`)."""
    import psutil

    return set(psutil.pids())


def _init_ray(settings: TuneSettings) -> bool:
    """Start or join Ray; ``True`` when this call started it (and must shut it down)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return False
    before = child_pids()
    try:
        if settings.address:
            ray.init(address=settings.address, log_to_driver=False)
        else:
            ray.init(num_cpus=settings.num_cpus or None, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # ConnectionError, TimeoutError, RuntimeError: say it, never retry silently
        ray.shutdown()
        stop_new_children(before)
        where = settings.address or "a local Ray"
        raise TuneRunError(f"could not start or join {where}: {type(e).__name__}: {e}") from e
    return True


def run_trials(
    trainable: Callable[..., None],
    trials: list[TrialSpec],
    *,
    metric: str,
    mode: Literal["max", "min"],
    settings: TuneSettings,
    payload: dict[str, Any],
) -> TuneOutcome:
    """Run ``trials`` of ``trainable(config, **payload)`` on Ray Tune with ASHA early stopping.

    ``trainable`` receives ``config["trial"]`` (the :class:`TrialSpec` as a dict) and must call
    ``ray.tune.report`` once per rung with ``metric`` among the values. ``payload`` goes through
    Ray's object store (``tune.with_parameters``), so the data are shipped once.

    Raises:
        TuneRunError: Ray cannot start, or no trial ran every rung (failed trials' errors named).
    """
    started = _init_ray(settings)
    try:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        storage = Path(settings.storage).expanduser().resolve()
        fn = tune.with_resources(tune.with_parameters(trainable, **payload), {"cpu": settings.cpus_per_trial})
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=settings.rungs,
            grace_period=min(settings.grace_period, settings.rungs),
            reduction_factor=settings.reduction_factor,
        )
        tuner = tune.Tuner(
            fn,
            param_space={"trial": tune.grid_search([asdict(t) for t in trials])},
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, scheduler=scheduler, num_samples=1,
                max_concurrent_trials=settings.max_concurrent or None,
            ),
            run_config=tune.RunConfig(
                name=settings.name, storage_path=str(storage), verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        grid = tuner.fit()
        by_index: dict[int, TrialResult] = {}
        for i in range(len(grid)):
            res = grid[i]
            cfg = (res.config or {}).get("trial") or {}
            spec = TrialSpec(index=int(cfg["index"]), seed=int(cfg["seed"]), params=dict(cfg["params"]),
                             config=dict(cfg["config"]))
            m = dict(res.metrics or {})
            done = int(m.get("training_iteration", 0) or 0)
            err = None if res.error is None else f"{type(res.error).__name__}: {str(res.error).strip()[-500:]}"
            df = res.metrics_dataframe
            hist = [] if df is None or metric not in df else [float(v) for v in df[metric].tolist()]
            by_index[spec.index] = TrialResult(spec, done, m, hist, err)
    finally:
        if started:
            import ray

            ray.shutdown()
    results = [by_index[i] for i in sorted(by_index)]
    missing = sorted({t.index for t in trials} - set(by_index))
    if missing:
        raise TuneRunError(f"Ray Tune returned no result for trials {missing}")
    complete = [r for r in results if r.error is None and r.rungs_done >= settings.rungs and metric in r.metrics]
    failed = [r for r in results if r.error is not None]
    if not complete:
        why = "; ".join(f"trial {r.spec.index}: {r.error}" for r in failed[:3]) or "every trial was stopped early"
        raise TuneRunError(f"no trial ran all {settings.rungs} rungs ({len(failed)} failed): {why}")
    sign = 1.0 if mode == "max" else -1.0
    best = max(complete, key=lambda r: (sign * float(r.metrics[metric]), -r.spec.index))
    stopped = sum(1 for r in results if r.error is None and r.rungs_done < settings.rungs)
    return TuneOutcome(trials=results, best=best, metric=metric, mode=mode, rungs=settings.rungs,
                       stopped_early=stopped, failed=len(failed), storage=str(storage / settings.name))

"""The tuned-config file: the best trial's settings, validated, in the form the trainers read.

``router-rl tune lgbm|ppo`` writes it (YAML for ``.yaml`` / ``.yml``, JSON otherwise);
``router-rl train --policy lgbm --config FILE`` and ``router-rl train-ppo --config FILE`` read it
through :func:`load_tuned_config`, which returns the trainer's own config object
(:class:`~router_rl.policies.lgbm_config.LGBMConfig` / :class:`~router_rl.policies.ppo.config.PPOConfig`).

Layout::

    trainer: lgbm                # or ppo
    config: {num_leaves: 23, learning_rate: 0.041, ...}   # the trainer's config fields
    tune: {metric: val_aiq, mode: max, score: 0.61, split: val, trial: 2, trial_seed: ..., ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from router_rl.core.config import NonNegativeInt, PositiveInt, StrictConfig
from router_rl.core.errors import ConfigError

#: Trainers a tuned config is for.
Trainer = Literal["lgbm", "ppo"]


class TrialRow(StrictConfig):
    """One trial of the search, as the file records it.

    Attributes:
        index: The trial's index (0-based, the order the trials were sampled in).
        seed: The trial's seed.
        params: The searched values it ran with.
        rungs_done: Rungs it reported (fewer than ``TuneRecord.rungs``: the scheduler stopped it).
        history: The ranking metric at each rung reported, in order.
        score: Its last reported value of the ranking metric (``None``: it never reported).
        error: The error text when the trial failed.
    """

    index: NonNegativeInt
    seed: NonNegativeInt
    params: dict[str, Any]
    rungs_done: NonNegativeInt
    history: list[float] = Field(default_factory=list)
    score: float | None = None
    error: str | None = None


class TuneRecord(StrictConfig):
    """How the config was found (kept with it, read by nobody but people).

    Attributes:
        metric: Reported metric the trials were ranked by (computed on ``split``).
        mode: ``max`` or ``min``.
        score: The best trial's last reported value.
        split: The data split the metric was computed on (always ``val``).
        trial: The best trial's index.
        trial_seed: The best trial's seed (derived from ``base_seed``).
        base_seed: The seed every trial's values and seed were derived from.
        trials: Trials run.
        stopped_early: Trials the scheduler stopped before their last rung.
        rungs: Reports per full trial (boosting-round or timestep budgets).
        scheduler: The Ray Tune scheduler.
        data: Where the data came from (trace file, ``sim``, env spec).
        search_space: ``{field: KIND:ARGS}``.
        fixed: Settings held fixed across trials.
        extra: Other settings of the run (e.g. the PPO base's boosting rounds).
        created: UTC time of writing.
        trial_log: Every trial, by index (empty in files written before it was recorded).
    """

    metric: str
    mode: Literal["max", "min"]
    score: float
    split: Literal["val"] = "val"
    trial: NonNegativeInt
    trial_seed: NonNegativeInt
    base_seed: NonNegativeInt
    trials: PositiveInt
    stopped_early: NonNegativeInt
    rungs: PositiveInt
    scheduler: str
    data: str
    search_space: dict[str, str]
    fixed: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    created: str
    trial_log: list[TrialRow] = Field(default_factory=list)


class TunedConfig(StrictConfig):
    """A tuned-config file.

    Attributes:
        trainer: ``lgbm`` or ``ppo``.
        config: Fields of the trainer's config class (validated by :meth:`trainer_config`).
        tune: How it was found.
    """

    trainer: Trainer
    config: dict[str, Any]
    tune: TuneRecord

    def trainer_config(self, *, source: str | None = None) -> Any:
        """The trainer's config object (``LGBMConfig`` or ``PPOConfig``) built from ``config``.

        Raises:
            ConfigError: A field the trainer refuses (named ``LGBMConfig.field`` / ``PPOConfig.field``).
        """
        return config_class(self.trainer).from_dict(self.config, source=source)


def config_class(trainer: str) -> Any:
    """``LGBMConfig`` for ``lgbm``, ``PPOConfig`` for ``ppo``."""
    if trainer == "lgbm":
        from router_rl.policies.lgbm_config import LGBMConfig

        return LGBMConfig
    if trainer == "ppo":
        from router_rl.policies.ppo.config import PPOConfig

        return PPOConfig
    raise ConfigError("trainer", f"expected 'lgbm' or 'ppo', got {trainer!r}")


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def write_tuned_config(path: str | Path, tuned: TunedConfig) -> Path:
    """Write ``tuned`` (validated again against the trainer's config) as YAML or JSON by suffix.

    The file is written to a temporary name and renamed, so a reader never sees half a file.
    """
    p = Path(path)
    tuned.trainer_config(source=str(p))
    d = tuned.to_dict()
    if _is_yaml(p):
        import yaml

        head = (f"# router-rl tune {tuned.trainer}: best of {tuned.tune.trials} trials by {tuned.tune.metric} "
                f"({tuned.tune.mode}) on the {tuned.tune.split} split\n"
                f"# train with: router-rl {'train --policy lgbm' if tuned.trainer == 'lgbm' else 'train-ppo'} "
                f"--config {p.name} ...\n")
        text = head + yaml.safe_dump(d, sort_keys=False)
    else:
        text = json.dumps(d, indent=2) + "\n"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(p)
    return p


def read_tuned_config(path: str | Path) -> TunedConfig:
    """Read and validate a tuned-config file.

    Raises:
        ConfigError: Missing or unreadable file, not YAML/JSON, a bad field (file and field named).
    """
    p = Path(path)
    src = str(p)
    if not p.is_file():
        raise ConfigError("config", "no such file (write one with `router-rl tune lgbm|ppo --out FILE`)", source=src)
    text = p.read_text()
    try:
        if _is_yaml(p):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml / json parse errors of several types
        raise ConfigError("config", f"not valid {'YAML' if _is_yaml(p) else 'JSON'} ({e})", source=src) from None
    tuned = TunedConfig.from_dict(data, source=src) if isinstance(data, dict) else None
    if tuned is None:
        raise ConfigError("TunedConfig", f"expected a mapping, got {type(data).__name__}", source=src)
    tuned.trainer_config(source=src)
    return tuned


def load_tuned_config(path: str | Path, trainer: Trainer) -> Any:
    """The trainer's config object from a tuned-config file written for ``trainer``.

    Raises:
        ConfigError: As :func:`read_tuned_config`, or a file written for the other trainer.
    """
    tuned = read_tuned_config(path)
    if tuned.trainer != trainer:
        raise ConfigError("trainer", f"this file tunes {tuned.trainer!r}, not {trainer!r}", source=str(path))
    return tuned.trainer_config(source=str(path))


def tuned_from_outcome(outcome: Any, *, trainer: Trainer, space: dict[str, Any], base_seed: int, data: str,
                       scheduler: str = "ASHA") -> TunedConfig:
    """The :class:`TunedConfig` of a search's best trial.

    Args:
        outcome: A :class:`router_rl.tune.runner.TuneOutcome`.
        trainer: ``lgbm`` or ``ppo``.
        space: ``{field: Dimension}`` searched.
        base_seed: The search's base seed.
        data: Where the data came from.
        scheduler: Name of the scheduler (recorded).
    """
    import time

    best = outcome.best
    extra = {k: v for k, v in outcome.extra.items() if k != "fixed"}
    extra["failed_trials"] = outcome.failed
    record = TuneRecord(
        metric=outcome.metric, mode=outcome.mode, score=float(best.metrics[outcome.metric]),
        trial=best.spec.index, trial_seed=best.spec.seed, base_seed=base_seed, trials=len(outcome.trials),
        stopped_early=outcome.stopped_early, rungs=outcome.rungs, scheduler=scheduler, data=data,
        search_space={k: d.describe() for k, d in space.items()}, fixed=dict(outcome.extra.get("fixed") or {}),
        extra=json.loads(json.dumps(extra, default=str)),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        trial_log=[_trial_row(r, outcome.metric) for r in outcome.trials],
    )
    return TunedConfig(trainer=trainer, config=dict(best.spec.config), tune=record)


def _trial_row(result: Any, metric: str) -> TrialRow:
    score = result.metrics.get(metric)
    params = json.loads(json.dumps(dict(result.spec.params), default=str))
    return TrialRow(index=result.spec.index, seed=result.spec.seed, params=params,
                    rungs_done=result.rungs_done, history=[float(v) for v in result.history],
                    score=None if score is None else float(score), error=result.error)

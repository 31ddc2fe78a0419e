"""Search spaces of ``router-rl tune``: parsed from ``NAME=KIND:ARGS``, sampled with a seeded generator.

A space maps config fields (of :class:`~router_rl.policies.lgbm_config.LGBMConfig` or
:class:`~router_rl.policies.ppo.config.PPOConfig`) to a distribution:

* ``loguniform:LOW:HIGH`` (float, log scale), ``uniform:LOW:HIGH`` (float),
* ``int:LOW:HIGH`` (integer, both ends included), ``logint:LOW:HIGH`` (integer, log scale),
* ``choice:A,B,C`` (each value read as JSON, else as text).

The trials are drawn here, not by Ray Tune's sampler: every trial's config and seed are functions
of the base seed and the trial index only (``numpy.random.SeedSequence(base_seed).spawn``), and
every drawn config is validated by the trainer's config class before a single trial runs, so a bad
space fails in a second with the field named. Ray Tune then runs the list
(``tune.grid_search``) under its early-stopping scheduler.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from router_rl.core.errors import ConfigError

#: Distribution kinds of a search dimension.
KINDS = ("loguniform", "uniform", "int", "logint", "choice")


class SearchSpaceError(ValueError):
    """A search dimension cannot be parsed or sampled; the message names the dimension."""


@dataclass(frozen=True)
class Dimension:
    """One searched config field.

    Attributes:
        name: The config field.
        kind: One of :data:`KINDS`.
        low, high: Bounds (numeric kinds).
        values: The options (``choice``).
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()

    def sample(self, rng: np.random.Generator) -> Any:
        """One draw (Python ``int`` / ``float`` / the choice's value, as the strict configs want)."""
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        # logint: log-uniform over [low, high + 1), floored
        x = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
        return int(min(max(math.floor(x), self.low), self.high))

    def describe(self) -> str:
        """``KIND:ARGS`` as given on the command line."""
        if self.kind == "choice":
            return "choice:" + ",".join(json.dumps(v) for v in self.values)
        if self.kind in ("int", "logint"):
            return f"{self.kind}:{int(self.low)}:{int(self.high)}"
        return f"{self.kind}:{self.low:g}:{self.high:g}"


def _number(text: str, what: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise SearchSpaceError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(x):
        raise SearchSpaceError(f"{what}: expected a finite number, got {text!r}")
    return x


def _choice_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_dimension(item: str, *, fields: Sequence[str] | None = None) -> Dimension:
    """Parse ``NAME=KIND:ARGS`` (see the module docstring).

    Args:
        item: The text, e.g. ``learning_rate=loguniform:0.01:0.3``.
        fields: Known config fields; ``NAME`` must be one of them when given.

    Raises:
        SearchSpaceError: Malformed text, an unknown field or kind, bad bounds (all named).
    """
    name, sep, rest = item.partition("=")
    name = name.strip()
    if not sep or not name or not rest:
        raise SearchSpaceError(f"{item!r}: expected NAME=KIND:ARGS, e.g. learning_rate=loguniform:0.01:0.3")
    if fields is not None and name not in fields:
        raise SearchSpaceError(f"{name!r} is not a setting of this trainer (settings: {', '.join(sorted(fields))})")
    kind, _, args = rest.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise SearchSpaceError(f"{name}: unknown kind {kind!r}; expected one of {list(KINDS)}")
    if kind == "choice":
        values = tuple(_choice_value(v.strip()) for v in args.split(",") if v.strip())
        if not values:
            raise SearchSpaceError(f"{name}: choice needs at least one value, e.g. {name}=choice:2,3")
        return Dimension(name, kind, values=values)
    parts = args.split(":")
    if len(parts) != 2:
        raise SearchSpaceError(f"{name}: {kind} needs LOW:HIGH, got {args!r}")
    low, high = (_number(p.strip(), name) for p in parts)
    if not low < high:
        raise SearchSpaceError(f"{name}: expected LOW < HIGH, got {low:g} >= {high:g}")
    if kind in ("loguniform", "logint") and low <= 0:
        raise SearchSpaceError(f"{name}: {kind} needs LOW > 0, got {low:g}")
    if kind in ("int", "logint") and (low != int(low) or high != int(high)):
        raise SearchSpaceError(f"{name}: {kind} needs integer bounds, got {low:g}:{high:g}")
    return Dimension(name, kind, low=low, high=high)


def parse_space(items: Sequence[str], *, fields: Sequence[str] | None = None) -> dict[str, Dimension]:
    """Parse several ``NAME=KIND:ARGS`` items (a field may appear once).

    Raises:
        SearchSpaceError: As :func:`parse_dimension`, or a field given twice.
    """
    out: dict[str, Dimension] = {}
    for item in items:
        d = parse_dimension(item, fields=fields)
        if d.name in out:
            raise SearchSpaceError(f"{d.name}: given twice")
        out[d.name] = d
    return out


@dataclass(frozen=True)
class TrialSpec:
    """One trial, fixed before Ray runs anything.

    Attributes:
        index: Trial number (0-based).
        seed: The trial's seed (LightGBM / PPO), derived from the base seed and ``index``.
        params: The sampled values of the searched fields.
        config: The settings given explicitly (fixed settings + ``params``), validated by the
            trainer's config class; the other fields keep the class defaults.
    """

    index: int
    seed: int
    params: dict[str, Any]
    config: dict[str, Any]


def trial_seeds(base_seed: int, n: int) -> list[int]:
    """``n`` independent 31-bit seeds derived from ``base_seed`` (``SeedSequence(base_seed).spawn(n)``)."""
    if base_seed < 0:
        raise SearchSpaceError(f"base seed: expected >= 0, got {base_seed}")
    return [int(s.generate_state(1, np.uint32)[0] >> 1) for s in np.random.SeedSequence(base_seed).spawn(n)]


def sample_trials(
    space: Mapping[str, Dimension],
    *,
    n_trials: int,
    base_seed: int,
    fixed: Mapping[str, Any],
    config_cls: Any,
) -> list[TrialSpec]:
    """Draw ``n_trials`` configs and validate each with ``config_cls`` (a :class:`StrictConfig`).

    Trial ``i``'s values come from a generator seeded by its own spawned seed, so adding trials
    never changes the earlier ones.

    Raises:
        SearchSpaceError: ``n_trials < 1``, an empty space, a field both searched and fixed, or a
            drawn config the trainer refuses (the field and the drawn value are named).
    """
    if n_trials < 1:
        raise SearchSpaceError(f"trials: expected >= 1, got {n_trials}")
    if not space:
        raise SearchSpaceError("the search space is empty")
    both = sorted(set(space) & set(fixed))
    if both:
        raise SearchSpaceError(f"{both[0]}: both searched and fixed; give it once")
    out = []
    for i, seed in enumerate(trial_seeds(base_seed, n_trials)):
        rng = np.random.default_rng([seed, 1])
        params = {name: dim.sample(rng) for name, dim in space.items()}
        cfg = {**dict(fixed), **params}
        try:
            config_cls.from_dict(cfg)
        except ConfigError as e:
            field = e.setting
            while field.startswith(f"{config_cls.__name__}."):
                field = field[len(config_cls.__name__) + 1:]
            shown = f" (drawn {params[field]!r})" if field in params else ""
            raise SearchSpaceError(f"{field}: {e.problem}{shown}") from None
        out.append(TrialSpec(index=i, seed=seed, params=params, config=cfg))
    return out

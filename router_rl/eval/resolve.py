"""Turn CLI policy specs (artifact folders or registered names) into fitted policies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from router_rl.eval.runner import FeatureFn

if TYPE_CHECKING:
    from router_rl.features.config import EncoderConfig
    from router_rl.policies.base import RoutingPolicy
    from router_rl.traces.matrix import OutcomeMatrix

#: Other names accepted for registered policies (``--policy lightgbm`` = ``lgbm``).
POLICY_ALIASES: dict[str, str] = {
    "lightgbm": "lgbm",
    "lgb": "lgbm",
    "rule": "rules",
    "reference": "single",
    "bandit": "linucb",
}


def policy_kind(name: str) -> str:
    """The registered kind of ``name`` (resolving :data:`POLICY_ALIASES`).

    Raises:
        ValueError: an unknown name; the message lists the registered names and the aliases.
    """
    from router_rl.policies.base import POLICY_REGISTRY, policy_factory

    kind = POLICY_ALIASES.get(name.strip().lower(), name.strip())
    try:
        policy_factory(kind)
    except KeyError:
        aliases = ", ".join(f"{a}={k}" for a, k in POLICY_ALIASES.items())
        raise ValueError(f"unknown policy {name!r}; expected one of {sorted(POLICY_REGISTRY)} "
                         f"(aliases: {aliases})") from None
    return kind


def _is_artifact(path: Path) -> bool:
    return path.is_dir() and (path / "policy.json").exists()


def resolve_policy(spec: str, train: OutcomeMatrix, features: FeatureFn, *, seed: int = 0) -> RoutingPolicy:
    """Load ``spec`` when it is an artifact folder; else build the registered policy ``spec``
    (``name`` or ``name:key=value,...``) and fit it on ``train``.

    Raises:
        ValueError: an unknown name (listing the known ones) or a folder that is not an artifact.
    """
    from router_rl.policies.base import PolicyLoadError, RoutingPolicy, make_policy

    path = Path(spec)
    if path.is_dir() and (_is_artifact(path) or not _registered(spec.partition(":")[0])):
        try:
            return RoutingPolicy.load(path, models=train.models)
        except PolicyLoadError as e:
            raise ValueError(f"policy {spec!r}: {e}") from e
    name, _, opts = spec.partition(":")
    kwargs: dict[str, object] = {}
    for item in filter(None, opts.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"policy {spec!r}: option {item!r} is not KEY=VALUE")
        kwargs[key.strip()] = _parse_value(raw.strip())
    try:
        kind = policy_kind(name)
    except ValueError as e:
        raise ValueError(f"policy {spec!r}: not an artifact folder and {e}") from None
    try:
        policy = make_policy(kind, train.models, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"policy {spec!r}: {e}") from None
    enc = getattr(features, "shared_encoder", None)
    if enc is not None and getattr(policy, "encoder", None) is None:
        policy.attach_encoder(enc())
    X = features(policy, train)
    policy.fit(X, train, seed=seed)
    policy.metadata.setdefault("version", f"{policy.kind}@trained-on-the-fly(seed={seed})")
    return policy


def _parse_value(raw: str) -> object:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def resolve_policies(
    specs: Sequence[str], train: OutcomeMatrix, features: FeatureFn, *, seed: int = 0
) -> dict[str, RoutingPolicy]:
    """``spec -> policy`` for every spec, keyed by the spec text.

    An artifact folder is keyed by its folder name, unless that name is a registered policy name
    or another spec's key (``-p runs/lgbm -p lgbm``): then by the path as given.

    Raises:
        ValueError: the same spec twice, an unknown name, or a folder that is not an artifact.
    """
    out: dict[str, RoutingPolicy] = {}
    names = [Path(s).name if Path(s).is_dir() else s for s in specs]
    for spec, name in zip(specs, names, strict=True):
        key = name
        if Path(spec).is_dir() and (names.count(name) > 1 or _registered(name)):
            key = spec
        if key in out:
            raise ValueError(f"policy {spec!r} given twice")
        out[key] = resolve_policy(spec, train, features, seed=seed)
    return out


def _registered(name: str) -> bool:
    try:
        policy_kind(name)
    except ValueError:
        return False
    return True


#: Task columns that are bookkeeping, never features.
NON_FEATURE_COLUMNS = ("task_id", "split", "source")


def task_encoder_config(tasks: pl.DataFrame) -> EncoderConfig:
    """The default encoder config plus every other task column of a user's matrix as a feature.

    String/categorical/boolean task columns (e.g. ``repo``) become categorical features, numeric
    ones numeric features; ``task_id``/``split``/``source`` and the encoder's reserved columns
    (``prompt``, ...) are left to the encoder's own handling.

    Args:
        tasks: The tasks frame of the training split (:attr:`OutcomeMatrix.tasks`).
    """
    from router_rl.features.config import RESERVED_COLUMNS, EncoderConfig

    base = EncoderConfig().restricted_to(tasks.columns)
    known = {*NON_FEATURE_COLUMNS, *RESERVED_COLUMNS, *base.categorical_columns, *base.numeric_columns}
    cats = [c for c in tasks.columns if c not in known
            and (tasks.schema[c] in (pl.Utf8, pl.Categorical, pl.Boolean))]
    nums = [c for c in tasks.columns if c not in known and tasks.schema[c].is_numeric()]
    return base.model_copy(update={"categorical_columns": (*base.categorical_columns, *cats),
                                   "numeric_columns": (*base.numeric_columns, *nums)})


def trace_features(train: OutcomeMatrix, *, simulated: bool) -> FeatureFn:
    """The feature function of the CLI: :func:`~router_rl.eval.runner.default_features` for the
    simulated fleet (its ``complexity``/``privacy`` columns are the generator's labels, kept out
    of the features it documents), else the same with :func:`task_encoder_config` (a user's own
    task columns, e.g. ``repo``, become features).

    Args:
        train: Training split the shared encoder is fitted on.
        simulated: The traces come from :func:`router_rl.traces.simulate_fleet` (have ground truth).
    """

    from router_rl.eval.runner import default_features

    if simulated:
        return default_features(train)
    return default_features(train, config=lambda: task_encoder_config(train.tasks))

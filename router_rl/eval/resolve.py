"""Turn CLI policy specs (artifact folders or registered names) into fitted policies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from router_rl.eval.runner import FeatureFn

if TYPE_CHECKING:
    from router_rl.policies.base import RoutingPolicy
    from router_rl.traces.matrix import OutcomeMatrix


def resolve_policy(spec: str, train: OutcomeMatrix, features: FeatureFn, *, seed: int = 0) -> RoutingPolicy:
    """Load ``spec`` when it is an artifact folder; else build the registered policy ``spec``
    (``name`` or ``name:key=value,...``) and fit it on ``train``.

    Raises:
        ValueError: an unknown name (listing the known ones) or a folder that is not an artifact.
    """
    from router_rl.policies.base import PolicyLoadError, RoutingPolicy, make_policy

    path = Path(spec)
    if path.is_dir():
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
        policy = make_policy(name, train.models, **kwargs)
    except KeyError as e:
        raise ValueError(f"policy {spec!r}: not an artifact folder and {e.args[0]}") from None
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
    """``spec -> policy`` for every spec, keyed by the spec text (folder name for artifacts)."""
    out: dict[str, RoutingPolicy] = {}
    for spec in specs:
        key = Path(spec).name if Path(spec).is_dir() else spec
        if key in out:
            raise ValueError(f"policy {spec!r} given twice")
        out[key] = resolve_policy(spec, train, features, seed=seed)
    return out

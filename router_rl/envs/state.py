"""The router-state part of a ``BudgetedRouting`` observation, defined once.

A ``BudgetedRouting`` observation is ``[task features (feature_dim) | state (state_dim)]``;
the state part is ``STATE_FIELDS`` followed by one circuit-breaker value per provider.
The environments build it with :func:`assemble_state` (batched, unchecked); the live router's
policy engine (``router_rl.serve.engine``) and the PPO policy build it with :func:`state_vector`
(checked). Pure numpy: importing this module pulls in no gymnasium.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: Scalar state fields of a BudgetedRouting observation, in order, after the task features; the
#: per-provider circuit-breaker states follow them (one per provider, in the env's provider order).
STATE_FIELDS: tuple[str, ...] = ("budget_remaining_frac", "elapsed_frac", "local_share")

BREAKER_STATES: dict[str, float] = {"closed": 0.0, "half_open": 0.5, "open": 1.0}


def assemble_state(
    budget_remaining_frac: np.ndarray | float,
    elapsed_frac: np.ndarray | float,
    local_share: np.ndarray | float,
    breakers: np.ndarray,
) -> np.ndarray:
    """Concatenate the state fields in :data:`STATE_FIELDS` order, then the breaker columns.

    Unchecked (the environments call it on every step): scalars give one ``(state_dim,)`` row,
    ``(B,)`` arrays give ``(B, state_dim)``; ``breakers`` is ``(P,)`` or ``(B, P)`` already
    encoded as in :data:`BREAKER_STATES`.
    """
    health = np.asarray(breakers, dtype=np.float32)
    scalars = np.stack(np.broadcast_arrays(
        np.asarray(budget_remaining_frac, dtype=np.float32),
        np.asarray(elapsed_frac, dtype=np.float32),
        np.asarray(local_share, dtype=np.float32),
    ), axis=-1)
    return np.concatenate([scalars, health], axis=-1).astype(np.float32, copy=False)


def state_vector(
    *,
    budget_remaining_frac: float,
    elapsed_frac: float,
    local_share: float,
    breakers: Mapping[str, float | str] | Sequence[float | str] = (),
    providers: Sequence[str] | None = None,
) -> np.ndarray:
    """Build the state part of an observation, as the live router must do before each decision.

    Same quantities and encoding as ``BudgetedRouting``:

    * ``budget_remaining_frac``: unspent budget of the current budget window / window budget, in
      [0, 1] (the router's budget manager knows both).
    * ``elapsed_frac``: requests (or time) elapsed in the window / window length, in [0, 1].
    * ``local_share``: share of this window's served requests answered by local models (0 before
      the first one).
    * ``breakers``: circuit-breaker state per provider subject to outages: ``0`` / ``"closed"``
      (healthy), ``0.5`` / ``"half_open"``, ``1`` / ``"open"`` (down), in the provider order the
      policy was trained with (``PPORouter.providers``).

    Args:
        budget_remaining_frac: Remaining budget fraction.
        elapsed_frac: Elapsed fraction of the budget window.
        local_share: Fraction of requests served locally so far.
        breakers: A mapping provider -> state (then ``providers`` gives the order) or a sequence
            already in training order.
        providers: Provider order; required when ``breakers`` is a mapping.

    Returns:
        ``(len(STATE_FIELDS) + n_providers,)`` float32 vector.

    Raises:
        ValueError: a value outside [0, 1], an unknown breaker state or a provider missing from
            the mapping.
    """
    scalars = {
        "budget_remaining_frac": budget_remaining_frac,
        "elapsed_frac": elapsed_frac,
        "local_share": local_share,
    }
    if isinstance(breakers, Mapping):
        if providers is None:
            raise ValueError("state_vector: providers (the training order) is required with a breakers mapping")
        missing = [p for p in providers if p not in breakers]
        if missing:
            raise ValueError(f"state_vector: breakers lacks providers {missing}")
        raw = [breakers[p] for p in providers]
        names = [f"breakers[{p!r}]" for p in providers]
    else:
        raw = list(breakers)
        names = [f"breakers[{i}]" for i in range(len(raw))]
    health: list[float] = []
    for name, v in zip(names, raw, strict=True):
        if isinstance(v, str):
            if v not in BREAKER_STATES:
                raise ValueError(f"state_vector: {name}: expected one of {sorted(BREAKER_STATES)}, got {v!r}")
            health.append(BREAKER_STATES[v])
        else:
            health.append(float(v))
    for name, x in [*scalars.items(), *zip(names, health, strict=True)]:
        if not (math.isfinite(float(x)) and 0.0 <= float(x) <= 1.0):
            raise ValueError(f"state_vector: {name}: expected a number in [0, 1], got {x!r}")
    return assemble_state(
        float(budget_remaining_frac), float(elapsed_frac), float(local_share), np.asarray(health, dtype=np.float32)
    )

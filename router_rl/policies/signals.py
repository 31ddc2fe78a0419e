"""Locate the task-structure signals (privacy flag, complexity level) among the encoder's features.

Policies see only the encoded matrix ``X``. The rule router and the privacy constraint need two
structure features the :class:`router_rl.features.FeatureEncoder` emits; this module finds their
columns by name in ``encoder.feature_names`` so policies never hard-code a layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from router_rl.features.complexity import COMPLEXITY_LEVELS as _COMPLEXITY_LEVELS
from router_rl.features.complexity import LEVEL_CUTS

PRIVACY_NAMES: tuple[str, ...] = ("privacy", "privacy:sensitive", "sensitive", "is_sensitive", "pv:sensitive")
#: Complexity level columns, one-hot, in increasing order (defined in :mod:`router_rl.features.complexity`).
COMPLEXITY_LEVELS: tuple[str, ...] = _COMPLEXITY_LEVELS
#: Score cuts of MODERATE / COMPLEX / VERY_COMPLEX (:data:`router_rl.features.complexity.LEVEL_CUTS`).
SCORE_CUTS: tuple[int, ...] = tuple(LEVEL_CUTS)


def feature_names(encoder: Any) -> list[str] | None:
    """The encoder's feature names (``feature_names`` attribute or method), or None."""
    names = getattr(encoder, "feature_names", None)
    if callable(names):
        names = names()
    return [str(n) for n in names] if names is not None else None


def _find(names: Sequence[str], candidates: Sequence[str]) -> int | None:
    lowered = [n.lower() for n in names]
    for c in candidates:
        if c in lowered:
            return lowered.index(c)
    return None


def privacy_column(encoder: Any) -> int | None:
    """Column of the privacy-sensitive flag, or None when the encoder has no such feature."""
    names = feature_names(encoder)
    if names is None:
        return None
    idx = _find(names, PRIVACY_NAMES)
    if idx is None:
        idx = next((i for i, n in enumerate(names) if n.lower().startswith(("privacy", "pv:"))), None)
    return idx


def complexity_columns(encoder: Any) -> dict[str, Any] | None:
    """How to read the complexity level from ``X``.

    Returns:
        ``{"onehot": [4 columns]}`` when the encoder has one-hot level columns (``cx:simple`` ...),
        ``{"score": col}`` when it has a raw score column (``cx:score``), ``{"rank": col}`` for a
        0-3 rank column (``cx:rank``/``cx:level``), or None when absent.
    """
    names = feature_names(encoder)
    if names is None:
        return None
    onehot = [_find(names, (f"cx:{lvl}", f"cx:level={lvl}", f"complexity:{lvl}", f"complexity={lvl}"))
              for lvl in COMPLEXITY_LEVELS]
    if all(i is not None for i in onehot):
        return {"onehot": onehot}
    for key, cands in (("score", ("cx:score", "complexity_score", "complexity:score")),
                       ("rank", ("cx:rank", "cx:level", "complexity_rank", "complexity:rank"))):
        i = _find(names, cands)
        if i is not None:
            return {key: i}
    return None


def complexity_rank(X: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """``(n,)`` int level 0 (SIMPLE) .. 3 (VERY_COMPLEX) read from ``X`` per :func:`complexity_columns`."""
    X = np.asarray(X)
    if "onehot" in spec:
        return np.asarray(X[:, spec["onehot"]]).argmax(axis=1).astype(np.int64)
    if "score" in spec:
        return np.searchsorted(np.asarray(SCORE_CUTS), X[:, spec["score"]], side="right").astype(np.int64)
    if "rank" in spec:
        return np.clip(np.rint(X[:, spec["rank"]]), 0, 3).astype(np.int64)
    raise ValueError(f"complexity spec must hold 'onehot', 'score' or 'rank', got {sorted(spec)}")

"""``cells``: a lookup table of training means per cell of request attributes (a strong baseline).

The quality predictor groups the training tasks by a few categorical request attributes (by
default the agent type and the complexity level) and predicts, for every model, the mean training
quality of the task's cell, shrunk towards the model's overall mean with ``prior_strength``
pseudo-tasks (empirical-Bayes smoothing: a cell seen twice says little). The decision is the
shared utility rule (:mod:`router_rl.policies.decision`), so the table is calibrated to the same
targets (λ, the locality term ν) as the learned routers and compared with them point for point.

The attributes are read from the encoded features, so the table and the learned routers see the
same columns: ``c`` uses the encoder's one-hot block ``cat:c=*``; for ``complexity`` without a
declared-complexity column the prompt heuristic's level one-hot ``cx:*`` is used instead (the
attribute the router can always compute). Which columns were used is recorded in the artifact
(``metadata["cells"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.policies.base import PolicyLoadError, register_policy
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.signals import feature_names
from router_rl.policies.utility import UtilityPolicy

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix

#: The attributes of a cell by default (those the encoder has).
DEFAULT_COLUMNS: tuple[str, ...] = ("agent_type", "complexity")
#: The heuristic complexity level's one-hot columns (used for ``complexity`` when not declared).
_HEURISTIC_LEVELS = ("cx:simple", "cx:moderate", "cx:complex", "cx:very_complex")


def resolve_cell_columns(
    names: Sequence[str], columns: Sequence[str], *, skip_missing: bool = False
) -> tuple[list[list[int]], list[str], list[str]]:
    """Feature column groups of each attribute, and where each came from.

    Args:
        names: The encoder's feature names.
        columns: Attributes to group by.
        skip_missing: Leave out attributes the encoder lacks (the default columns on a user's own
            traces) instead of failing; at least one must remain.

    Returns:
        ``(groups, sources, used)``: per attribute used the indices of its one-hot block, the
        block's prefix (``cat:agent_type=`` or ``cx:`` for the complexity heuristic), and the
        attributes used.

    Raises:
        ConfigError: an attribute has no one-hot block in the encoder (names the attribute and
            the categorical columns the encoder has).
    """
    lower = [n.lower() for n in names]
    groups, sources, used = [], [], []
    cats = sorted({n[4:].split("=", 1)[0] for n in names if n.startswith("cat:")})
    for col in columns:
        prefix = f"cat:{col}="
        idx = [i for i, n in enumerate(names) if n.startswith(prefix)]
        if not idx and col == "complexity":
            idx = [lower.index(n) for n in _HEURISTIC_LEVELS if n in lower]
            prefix = "cx:"
        if not idx:
            if skip_missing:
                continue
            raise ConfigError("cells.columns",
                              f"{col!r}: the encoder has no such attribute (categorical columns: {cats})")
        groups.append(idx)
        sources.append(prefix)
        used.append(col)
    if not groups:
        raise ConfigError("cells.columns", f"none of {list(columns)} is an attribute of the encoder "
                                           f"(categorical columns: {cats})")
    return groups, sources, used


@register_policy
class CellsPolicy(UtilityPolicy):
    """Mean training quality per (agent type, complexity) cell, smoothed; the shared decision rule.

    Args:
        models: Candidate model ids.
        columns: Request attributes forming a cell; default (None): those of ``("agent_type",
            "complexity")`` the encoder has (recorded in ``metadata["cells"]["columns"]``).
        prior_strength: Pseudo-tasks of the model's overall mean added to every cell (>= 0).
        feature_groups: Explicit column indices of each attribute's one-hot block in ``X`` (one
            list per attribute, in ``columns`` order), for features without an encoder's names;
            default: resolved from the attached encoder's feature names at fit.
        decision: Decision rule knobs.
        metadata: Free-form metadata saved with the artifact.
    """

    kind = "cells"

    def __init__(
        self,
        models: Sequence[str],
        *,
        columns: Sequence[str] | None = None,
        prior_strength: float = 5.0,
        feature_groups: Sequence[Sequence[int]] | None = None,
        decision: DecisionConfig | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        self._auto = columns is None
        self._set_config({"columns": list(DEFAULT_COLUMNS if columns is None else columns),
                          "prior_strength": prior_strength})
        if feature_groups is not None:
            groups = [list(map(int, g)) for g in feature_groups]
            if len(groups) != len(self.columns) or not all(groups):
                raise ConfigError("cells.feature_groups", f"expected {len(self.columns)} non-empty index lists "
                                                          f"(one per column), got {feature_groups!r}")
        self._explicit = None if feature_groups is None else groups
        self.groups: list[list[int]] = []
        self.keys = np.zeros(0, dtype=np.int64)
        self.table = np.zeros((0, self.n_models))
        self.overall = np.zeros(self.n_models)

    def _set_config(self, d: dict[str, Any]) -> None:
        cols = d.get("columns", list(DEFAULT_COLUMNS))
        if not (isinstance(cols, list | tuple) and cols and all(isinstance(c, str) and c for c in cols)):
            raise ConfigError("cells.columns", f"expected a non-empty list of attribute names, got {cols!r}")
        k = d.get("prior_strength", 5.0)
        if not (isinstance(k, int | float) and np.isfinite(k) and k >= 0):
            raise ConfigError("cells.prior_strength", f"expected a number >= 0, got {k!r}")
        self.columns = tuple(cols)
        self.prior_strength = float(k)

    def _cell_keys(self, X: np.ndarray) -> np.ndarray:
        """``(n,)`` int64 cell id of every row (mixed radix of each attribute's one-hot argmax)."""
        key = np.zeros(X.shape[0], dtype=np.int64)
        for idx in self.groups:
            block = X[:, idx]
            level = np.where(block.max(axis=1) > 0.5, block.argmax(axis=1), len(idx))  # len(idx): none set
            key = key * (len(idx) + 1) + level
        return key

    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        if self._explicit is not None:
            self.groups, sources = self._explicit, ["feature_groups"] * len(self._explicit)
        else:
            names = feature_names(self.encoder) if getattr(self, "encoder", None) is not None else None
            if names is None:
                raise ConfigError("cells", "needs the fitted feature encoder (attach_encoder before fit) "
                                           "or explicit feature_groups")
            self.groups, sources, used = resolve_cell_columns(names, self.columns, skip_missing=self._auto)
            self.columns = tuple(used)
        if max(max(g) for g in self.groups) >= X.shape[1]:
            raise ConfigError("cells.feature_groups", f"an index is >= the {X.shape[1]} feature columns")
        q = np.clip(matrix.quality, 0.0, 1.0)
        self.overall = q.mean(axis=0)
        keys = self._cell_keys(X)
        self.keys, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
        sums = np.zeros((self.keys.size, self.n_models))
        np.add.at(sums, inv, q)
        k = self.prior_strength
        self.table = (sums + k * self.overall) / (counts[:, None] + k)
        self.metadata["cells"] = {
            "columns": list(self.columns), "sources": sources, "n_cells": int(self.keys.size),
            "min_cell_tasks": int(counts.min()), "prior_strength": k,
        }

    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        keys = self._cell_keys(X)
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, max(self.keys.size - 1, 0))
        hit = self.keys.size > 0
        found = (self.keys[pos] == keys) if hit else np.zeros(keys.shape, dtype=bool)
        out = np.broadcast_to(self.overall, (X.shape[0], self.n_models)).copy()  # unseen cell: overall mean
        if hit:
            out[found] = self.table[pos[found]]
        return out

    def _save_model(self, directory: Path) -> dict[str, Any] | None:
        np.savez(directory / "cells.npz", keys=self.keys, table=self.table, overall=self.overall)
        return {"config": {"columns": list(self.columns), "prior_strength": self.prior_strength},
                "groups": [list(map(int, g)) for g in self.groups]}

    def _load_model(self, directory: Path, state: dict[str, Any]) -> None:
        path = directory / "cells.npz"
        if not path.is_file():
            raise PolicyLoadError(f"{path}: missing cell table")
        with np.load(path) as z:
            missing = [k for k in ("keys", "table", "overall") if k not in z.files]
            if missing:
                raise PolicyLoadError(f"{path}: missing arrays {missing}")
            self.keys, self.table, self.overall = z["keys"], z["table"], z["overall"]
        self._set_config(state.get("config") or {})
        self.groups = [list(map(int, g)) for g in state.get("groups", [])]
        if len(self.groups) != len(self.columns):
            raise PolicyLoadError(f"{directory / 'policy.json'}: cells state has {len(self.groups)} column groups "
                                  f"for {len(self.columns)} columns")

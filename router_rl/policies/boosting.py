"""LightGBM plumbing shared by the quality router (:mod:`~router_rl.policies.lgbm`) and the
cost / latency model (:mod:`~router_rl.policies.costmodel`).

Both train multi-output boosters with a custom objective on the columns of ``X`` that are
non-zero on enough training tasks, and score batches with the compiled numpy trees of
:mod:`~router_rl.policies.treeeval` (single requests with ``Booster.predict``, whose fixed cost
is lower). lightgbm itself is passed in / imported by the callers, inside their functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from router_rl.policies.treeeval import TreeEnsemble, UnsupportedTreeError

#: Batches of 2 to this many - 1 rows use ``Booster.predict`` (lower fixed cost); one row (the live
#: router) takes the compiled trees' single-row walk, so it scores exactly as in a batch.
NUMPY_MIN_ROWS = 8

#: Parameters every router_rl booster sets (deterministic, quiet, custom objective => no metric).
FIXED_PARAMS: dict[str, Any] = {
    "min_sum_hessian_in_leaf": 1e-3,
    "deterministic": True,
    "force_col_wise": True,
    "verbose": -1,
    "metric": "None",
}


def select_columns(X: np.ndarray, min_count: int) -> np.ndarray:
    """Feature columns non-zero on at least ``min_count`` rows (at least column 0 when none is)."""
    nnz = (X != 0).sum(axis=0)
    columns = np.flatnonzero(nnz >= min_count).astype(np.int64)
    if columns.size == 0:
        columns = np.arange(min(1, X.shape[1]), dtype=np.int64)
    return columns


def make_dataset(
    lgb: Any, X: np.ndarray, *, max_bin: int, init_score: np.ndarray | None = None, reference: Any = None
) -> Any:
    """A ``lgb.Dataset`` for a custom objective (labels unused: the objective closes over them)."""
    ds_params = {"verbose": -1, "max_bin": max_bin, "min_data_in_bin": 1, "feature_pre_filter": False}
    return lgb.Dataset(
        X, label=np.zeros(X.shape[0]), init_score=init_score, params=ds_params, reference=reference,
        free_raw_data=False,
    )


def compile_ensemble(booster: Any) -> TreeEnsemble | None:
    """The booster's trees compiled for numpy inference, or None when a split is unsupported."""
    try:
        return TreeEnsemble.from_booster(booster)
    except UnsupportedTreeError:
        return None

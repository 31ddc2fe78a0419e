"""Compact numpy evaluator of a LightGBM tree ensemble (QuickScorer-style bitmasks).

``Booster.predict`` pays a fixed per-call and per-row cost (row parsing, predictor set-up) that
dominates for the small, shallow ensembles of the LightGBM router. This evaluator compiles the
dumped trees into flat arrays and scores a batch with a handful of vectorised numpy operations:

1. gather the split feature of every internal node of every tree: ``V = X[:, node_feature]``;
2. a node whose test fails (``x > threshold`` -> go right) rules out the leaves of its left
   subtree: ``M = where(V > threshold, node_mask, ALL)`` (leaves numbered left to right);
3. AND the masks of each tree (``bitwise_and.reduceat``); the exit leaf is the lowest set bit;
4. sum the leaf values per output with one ``(n, trees) @ (trees, outputs)`` product.

Exact for numerical ``<=`` splits without "zero as missing" and for finite inputs (what the
router feeds it); :meth:`TreeEnsemble.from_dump` raises :class:`UnsupportedTreeError` for
anything else (categorical splits, ``missing_type = Zero``) so the caller can keep the booster.
Only numpy is imported; a single row is walked by a compiled numba kernel when numba is
available (:mod:`router_rl.policies._tree_kernel`, same sums in the same order, same bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from router_rl.features.jit import compiled

#: Bit-mask dtype per maximum number of leaves.
_MASK_DTYPES: tuple[tuple[int, type[np.unsignedinteger[Any]]], ...] = (
    (8, np.uint8),
    (16, np.uint16),
    (32, np.uint32),
    (64, np.uint64),
)


@lru_cache(maxsize=1)
def _lowbit16() -> np.ndarray:
    """Lowest-set-bit index of every 16-bit value (index 0 unused: a mask is never all zero)."""
    table = np.zeros(1 << 16, dtype=np.uint8)
    v = np.arange(1, 1 << 16, dtype=np.int64)
    table[1:] = np.log2(v & -v).astype(np.uint8)
    return table


class UnsupportedTreeError(ValueError):
    """The model uses a split kind the numpy evaluator does not reproduce exactly."""


@dataclass(frozen=True)
class TreeEnsemble:
    """Flat arrays of a tree ensemble (see the module docstring).

    Trees with at least one split are padded to ``K`` internal nodes (padding nodes never clear
    a bit), so step 3 is ``K`` element-wise ORs instead of a ragged reduction.

    Attributes:
        node_feature: ``(S, K)`` feature column of each internal node of each split tree.
        node_threshold: ``(S, K)`` float32 threshold ``t`` such that, for float32 inputs,
            ``x > t`` exactly when LightGBM's ``x > threshold`` (double) sends the row right.
        node_clear: ``(S, K)`` leaves ruled out (bits) when the node sends the row right.
        split_trees: ``(S,)`` tree index of each tree that has splits.
        leaf_value: ``(T, L)`` leaf values, leaves numbered left to right (0-padded).
        tree_output: ``(T,)`` output (class) each tree adds to.
        n_outputs: Number of outputs.
        n_features: Input width the ensemble was trained on.
    """

    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_clear: np.ndarray
    split_trees: np.ndarray
    leaf_value: np.ndarray
    tree_output: np.ndarray
    n_outputs: int
    n_features: int
    _base: np.ndarray = field(init=False, repr=False, compare=False)
    _delta: np.ndarray = field(init=False, repr=False, compare=False)
    _offset: np.ndarray = field(init=False, repr=False, compare=False)
    _out_present: np.ndarray = field(init=False, repr=False, compare=False)
    _out_start: np.ndarray = field(init=False, repr=False, compare=False)
    _clear64: np.ndarray = field(init=False, repr=False, compare=False)
    _all_bits: np.uint64 = field(init=False, repr=False, compare=False)

    @classmethod
    def from_dump(cls, dump: Mapping[str, Any]) -> TreeEnsemble:
        """Compile ``Booster.dump_model()``.

        Raises:
            UnsupportedTreeError: categorical splits, zero-as-missing, unknown decision types or
                more than 64 leaves in a tree.
        """
        per_iter = int(dump.get("num_tree_per_iteration", 1))
        trees = dump["tree_info"]
        n_trees = len(trees)
        max_leaves = max([int(t.get("num_leaves", 1)) for t in trees] or [1])
        if max_leaves > 64:
            raise UnsupportedTreeError(f"trees with {max_leaves} leaves (the numpy evaluator handles <= 64)")
        mask_dtype = next(dt for cap, dt in _MASK_DTYPES if max_leaves <= cap)
        all_bits = int(np.iinfo(mask_dtype).max)
        k = max(1, max_leaves - 1)
        feats: list[list[int]] = []
        thrs: list[list[float]] = []
        clears: list[list[int]] = []
        split_trees: list[int] = []
        leaf_value = np.zeros((n_trees, max_leaves), dtype=np.float64)
        for t, info in enumerate(trees):
            leaves: list[float] = []
            nodes: list[tuple[int, float, int]] = []
            _walk(info["tree_structure"], leaves, nodes)
            leaf_value[t, : len(leaves)] = leaves
            if nodes:
                pad = k - len(nodes)
                split_trees.append(t)
                feats.append([f for f, _, _ in nodes] + [0] * pad)
                thrs.append([thr for _, thr, _ in nodes] + [np.inf] * pad)
                clears.append([all_bits & left for _, _, left in nodes] + [0] * pad)
        thr64 = np.asarray(thrs, dtype=np.float64).reshape(-1, k)
        tree_output = np.arange(n_trees, dtype=np.int64) % per_iter
        st = np.asarray(split_trees, dtype=np.int64)
        order = np.lexsort((st, tree_output[st])) if st.size else st  # group split trees by output
        return cls(
            node_feature=np.asarray(feats, dtype=np.int64).reshape(-1, k)[order],
            node_threshold=_float32_floor(thr64)[order],
            node_clear=np.asarray(clears, dtype=np.uint64).reshape(-1, k).astype(mask_dtype)[order],
            split_trees=st[order],
            leaf_value=leaf_value,
            tree_output=tree_output,
            n_outputs=per_iter,
            n_features=int(dump.get("max_feature_idx", -1)) + 1,
        )

    def __post_init__(self) -> None:
        # derived, read-only caches of predict_raw (the dataclass is frozen)
        base = np.zeros(self.n_outputs)
        np.add.at(base, self.tree_output, self.leaf_value[:, 0])
        lv = self.leaf_value[self.split_trees]
        outs = self.tree_output[self.split_trees]
        present = np.unique(outs)
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_delta", np.ascontiguousarray((lv - lv[:, :1]).ravel()))
        object.__setattr__(self, "_offset", (np.arange(self.split_trees.size) * self.leaf_value.shape[1])[:, None])
        object.__setattr__(self, "_out_present", present)
        object.__setattr__(self, "_out_start", np.searchsorted(outs, present))
        object.__setattr__(self, "_clear64", np.ascontiguousarray(self.node_clear, dtype=np.uint64))
        object.__setattr__(self, "_all_bits", np.uint64(np.iinfo(self.node_clear.dtype).max))

    @classmethod
    def from_booster(cls, booster: Any) -> TreeEnsemble:
        """Compile a ``lightgbm.Booster`` (all its iterations)."""
        return cls.from_dump(booster.dump_model())

    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return int(self.leaf_value.shape[0])

    def remap_features(self, mapping: np.ndarray, n_features: int) -> TreeEnsemble:
        """A copy reading feature ``mapping[f]`` of an ``n_features``-wide input wherever it read ``f``.

        Lets the caller skip building the model's input matrix (column selection, stacking):
        the trees index the caller's own layout directly.
        """
        mapping = np.asarray(mapping, dtype=np.int64)
        if mapping.ndim != 1 or mapping.size < self.n_features:
            raise ValueError(f"remap_features: need a mapping of >= {self.n_features} columns, got {mapping.shape}")
        if mapping.size and (mapping.min() < 0 or mapping.max() >= n_features):
            raise ValueError(f"remap_features: mapping values must lie in [0, {n_features})")
        return TreeEnsemble(
            node_feature=mapping[self.node_feature] if self.node_feature.size else self.node_feature,
            node_threshold=self.node_threshold,
            node_clear=self.node_clear,
            split_trees=self.split_trees,
            leaf_value=self.leaf_value,
            tree_output=self.tree_output,
            n_outputs=self.n_outputs,
            n_features=int(n_features),
        )

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_outputs)`` raw scores (sum of leaf values), as ``Booster.predict(raw_score=True)``.

        Args:
            X: ``(n, >= n_features)`` finite features (cast to float32, as LightGBM reads them).
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] < self.n_features:
            raise ValueError(f"TreeEnsemble.predict_raw: expected (n, >= {self.n_features}) features, got {X.shape}")
        return self.predict_raw_t(np.ascontiguousarray(X.T, dtype=np.float32))

    def predict_raw_t(self, xt: np.ndarray) -> np.ndarray:
        """:meth:`predict_raw` of a *feature-major* ``(d, n)`` float32 C-contiguous array.

        Gathering whole feature rows of ``xt`` is a memcpy, which is what makes this fast.
        """
        if xt.ndim != 2 or xt.shape[0] < self.n_features:
            raise ValueError(f"TreeEnsemble.predict_raw_t: expected (>= {self.n_features}, n), got {xt.shape}")
        n = xt.shape[1]
        if n == 1 and self.split_trees.size and (kernel := _one_row_kernel()) is not None:
            # single-row fast path (the live router): one compiled walk, same sums, same bytes
            return kernel(
                xt[:, 0], self.node_feature, self.node_threshold, self._clear64, self._all_bits, self._delta,
                self.leaf_value.shape[1], self._base, self._out_present, self._out_start,
            )[None, :]
        out = np.broadcast_to(self._base, (n, self.n_outputs)).copy()
        if self.split_trees.size == 0 or n == 0:
            return out
        cleared = np.zeros((self.split_trees.size, n), dtype=self.node_clear.dtype)
        for j in range(self.node_feature.shape[1]):
            right = xt[self.node_feature[:, j]] > self.node_threshold[:, j, None]
            cleared |= right.view(np.uint8).astype(cleared.dtype, copy=False) * self.node_clear[:, j, None]
        leaf = _lowest_bit(~cleared)
        vals = self._delta[leaf + self._offset]  # (S, n) chosen leaf value minus first leaf value
        # split trees are grouped by output: one segmented sum (no BLAS call, no thread pool)
        present: Any = self._out_present
        out[:, present] += np.add.reduceat(vals, self._out_start, axis=0).T
        return out


#: Compiled single-row walk (``None`` without numba: the numpy path above then scores the row).
_one_row_kernel = compiled("router_rl.policies._tree_kernel", "predict_one")


def _float32_floor(thr: np.ndarray) -> np.ndarray:
    """Largest float32 <= each double threshold (so ``x32 > t32`` iff ``double(x32) > thr``)."""
    t32 = thr.astype(np.float32)
    over = t32.astype(np.float64) > thr
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


def _lowest_bit(v: np.ndarray) -> np.ndarray:
    """Index of the lowest set bit of every (non-zero) unsigned value."""
    if v.dtype.itemsize <= 2:
        return np.take(_lowbit16(), v).astype(np.intp)
    v64 = v.astype(np.uint64)
    low = v64 & (~v64 + np.uint64(1))
    return np.log2(low.astype(np.float64)).astype(np.int64)


def _walk(node: Mapping[str, Any], leaves: list[float], nodes: list[tuple[int, float, int]]) -> int:
    """Append leaves (left to right) and internal nodes ``(feature, threshold, left-subtree leaf bits)``.

    Returns the bitmask of this subtree's leaves.
    """
    if "leaf_value" in node and "split_feature" not in node:
        leaves.append(float(node["leaf_value"]))
        return 1 << (len(leaves) - 1)
    if node.get("decision_type") != "<=":
        raise UnsupportedTreeError(f"split decision_type {node.get('decision_type')!r} (only numerical '<=')")
    if node.get("missing_type") == "Zero":
        raise UnsupportedTreeError("zero-as-missing splits")
    slot = len(nodes)
    nodes.append((0, 0.0, 0))  # placeholder, filled once the left subtree is known
    left = _walk(node["left_child"], leaves, nodes)
    right = _walk(node["right_child"], leaves, nodes)
    nodes[slot] = (int(node["split_feature"]), float(node["threshold"]), left)
    return left | right

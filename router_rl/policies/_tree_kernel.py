"""numba kernel: one row through a compiled :class:`~router_rl.policies.treeeval.TreeEnsemble`.

Imported lazily (it imports numba) through :func:`router_rl.features.jit.compiled`. It walks the
same flat arrays as the numpy evaluator and adds the leaf values in the same order (per output:
base, plus the first tree's chosen leaf delta plus NumPy's pairwise sum of the others, which is
what ``np.add.reduceat`` computes), so a row scores bit-identically to its row in a batch
(``tests/policies/test_single_row_fast_path.py``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

#: Index of the single set bit ``b`` of a 64-bit word from ``(b * _DE_BRUIJN_MUL) >> 58`` (a de Bruijn sequence).
_DE_BRUIJN_MUL = nb.uint64(0x03F79D71B4CB0A89)
_DE_BRUIJN = np.array([
    0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18,
    12, 5, 63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19,
    9, 13, 8, 7, 6,
], dtype=np.int64)


@nb.njit(cache=True, nogil=True)
def predict_one(x, node_feature, node_threshold, node_clear, all_bits, delta, n_leaves, base, present, start):
    """``(n_outputs,)`` raw scores of the float32 feature vector ``x``."""
    n_split, k = node_feature.shape
    vals = np.empty(n_split, dtype=np.float64)
    for s in range(n_split):
        cleared = nb.uint64(0)
        for j in range(k):  # branch-free: which nodes go right is data, not a jump to predict
            go_right = nb.uint64(x[node_feature[s, j]] > node_threshold[s, j])
            cleared |= node_clear[s, j] & (nb.uint64(0) - go_right)
        free = ~cleared & all_bits
        # the exit leaf is the lowest free bit: its index by a de Bruijn multiply (no loop)
        leaf = _DE_BRUIJN[((free & (~free + nb.uint64(1))) * _DE_BRUIJN_MUL) >> nb.uint64(58)]
        vals[s] = delta[s * n_leaves + leaf]
    out = base.copy()
    n_groups = present.size
    for g in range(n_groups):
        a = start[g]
        b = start[g + 1] if g + 1 < n_groups else n_split
        out[present[g]] += vals[a] + _pairwise_sum(vals, a + 1, b - a - 1)
    return out


@nb.njit(cache=True, nogil=True)
def _pairwise_sum(v, a, n):
    """NumPy's pairwise summation of ``v[a : a + n]`` (what its add-reduce loops compute), step for step."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += v[a + i]
        return res
    if n <= 128:
        r0, r1, r2, r3 = v[a], v[a + 1], v[a + 2], v[a + 3]
        r4, r5, r6, r7 = v[a + 4], v[a + 5], v[a + 6], v[a + 7]
        i = 8
        while i < n - (n % 8):
            r0 += v[a + i]
            r1 += v[a + i + 1]
            r2 += v[a + i + 2]
            r3 += v[a + i + 3]
            r4 += v[a + i + 4]
            r5 += v[a + i + 5]
            r6 += v[a + i + 6]
            r7 += v[a + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += v[a + i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(v, a, n2) + _pairwise_sum(v, a + n2, n - n2)

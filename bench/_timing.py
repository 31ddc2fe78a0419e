"""Shared by the latency benches: one-thread BLAS/OpenMP pools and a per-call timer.

Import this module *before* numpy (the pools read the variables when they start).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402 (after pinning the thread pools)


def timeit(fn: Callable[[], object], repeats: int) -> np.ndarray:
    """Seconds per call of ``fn`` over ``repeats`` calls, after up to 20 warm-up calls."""
    for _ in range(min(20, repeats)):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out

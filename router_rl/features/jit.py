"""Optional numba compilation of the live router's per-request kernels (lazy, numpy fallback).

The single-request path (one-row n-gram hashing, one-row tree walks) is bounded by per-call
numpy overhead, not arithmetic; a compiled loop removes it. numba is a core dependency, but
nothing here imports it until a kernel is first used (``import router_rl`` stays light), and
every kernel has a pure-numpy twin that gives the same bytes (tested), used when numba is not
installed or is switched off with ``ROUTER_RL_NUMBA=0``. :func:`kernel_backend` names the
backend in use, so benches and logs can say what actually ran.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Any, Final

#: Environment variable: ``0`` forces the numpy twins (read once per process, on first use).
ENV_VAR: Final = "ROUTER_RL_NUMBA"


@functools.lru_cache(maxsize=1)
def _numba() -> Any:
    if os.environ.get(ENV_VAR, "1").strip() == "0":
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba


def kernel_backend() -> str:
    """``"numba"`` when compiled kernels are used, else ``"numpy"`` (not installed or ``ROUTER_RL_NUMBA=0``)."""
    return "numba" if _numba() is not None else "numpy"


def compiled(module: str, name: str) -> Callable[[], Callable[..., Any] | None]:
    """A cached getter of the jitted function ``name`` of ``module`` (a module that imports numba).

    The getter imports ``module`` on first call (numba compiles on the first call of the kernel,
    or loads it from its on-disk cache) and returns the kernel, or ``None`` when numba is
    unavailable, so the caller uses its numpy twin.
    """

    @functools.lru_cache(maxsize=1)
    def get() -> Callable[..., Any] | None:
        if _numba() is None:
            return None
        return getattr(importlib.import_module(module), name)

    return get


def warm_up() -> str:
    """Compile (or load from numba's on-disk cache) every per-request kernel now, not on a live request.

    The first call of a kernel in a process costs about a second (numba import plus cache load;
    several seconds on the very first compile), so a server should call this once at start-up,
    off its event loop. Without numba it does nothing.

    Returns:
        :func:`kernel_backend` (what the per-request path will use).
    """
    if _numba() is None:
        return kernel_backend()
    import numpy as np

    from router_rl.features.hashing import hash_ngrams_one
    from router_rl.features.privacy import is_sensitive
    from router_rl.features.text_stats import KeywordTable, prompt_stats_one, substring_counts_one
    from router_rl.policies.one_row import warm_up_kernel
    from router_rl.policies.treeeval import TreeEnsemble

    hash_ngrams_one(b"warm up kernels", n_word=4, n_char=4)
    substring_counts_one("warm up", b"warm up", KeywordTable(("warm", "up")))
    prompt_stats_one("def warm_up():\n  at kernels:1:2\n", keyword_totals=(0, 0))
    from router_rl.features.config import EncoderConfig
    from router_rl.features.one_row import KeywordGroups, text_blocks_one

    cfg = EncoderConfig(n_word_hash=4, n_char_hash=4)
    groups = KeywordGroups([("warm",), ("up",)])
    text_blocks_one(np.zeros(17, dtype=np.float32), "warm up", b"warm up", cfg, groups, 8, "Warm Up")
    tree = {"split_feature": 0, "threshold": 0.5, "decision_type": "<=", "missing_type": "None",
            "left_child": {"leaf_value": 1.0}, "right_child": {"leaf_value": 2.0}}
    dump = {"num_tree_per_iteration": 1, "max_feature_idx": 0, "tree_info": [{"num_leaves": 2, "tree_structure": tree}]}
    ens = TreeEnsemble.from_dump(dump)
    ens.predict_raw_t(np.zeros((1, 1), dtype=np.float32))
    is_sensitive("warm up the privacy prefilter")
    warm_up_kernel(ens)
    return kernel_backend()

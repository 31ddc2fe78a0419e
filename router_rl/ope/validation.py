"""Input checks shared by every estimator and metric: numpy arrays in, clear errors out.

Every error names the argument, the first offending index and what was expected, e.g.
``propensities[17]: expected a probability in (0, 1], got 0.0 (3 entries affected)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from router_rl.core.errors import RouterRLError

#: Tolerance on "rows sum to 1".
SUM_TOL = 1e-6


class OPEInputError(RouterRLError, ValueError):
    """An array handed to an estimator or metric is malformed.

    Attributes:
        argument: Name of the offending argument.
        index: First offending index (row, or ``(row, col)``), when there is one.
    """

    def __init__(self, argument: str, problem: str, *, index: object = None, n_bad: int | None = None) -> None:
        self.argument = argument
        self.problem = problem
        self.index = index
        self.n_bad = n_bad
        where = f"{argument}[{_fmt_index(index)}]" if index is not None else argument
        extra = f" ({n_bad} entries affected)" if n_bad is not None and n_bad > 1 else ""
        super().__init__(f"{where}: {problem}{extra}")


def _fmt_index(index: object) -> str:
    if isinstance(index, tuple):
        return ", ".join(str(int(i)) for i in index)
    return str(index)


def _first_bad(mask: np.ndarray) -> tuple[Any, int]:
    """(first index where ``mask`` is True, number of True entries)."""
    flat = np.flatnonzero(mask.ravel())
    first = np.unravel_index(int(flat[0]), mask.shape)
    idx: Any = int(first[0]) if mask.ndim == 1 else tuple(int(i) for i in first)
    return idx, int(flat.size)


def as_float_vector(x: object, name: str, *, n: int | None = None, allow_nan: bool = False) -> np.ndarray:
    """``x`` as a 1-D float64 array, checked for shape and finiteness.

    Args:
        x: Array-like.
        name: Argument name used in errors.
        n: Required length, when known.
        allow_nan: Accept NaN entries (for latencies that may be unknown); infinities never.

    Raises:
        OPEInputError: missing, wrong shape or non-finite entries.
    """
    if x is None:
        raise OPEInputError(name, "is required but was None")
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise OPEInputError(name, f"expected a 1-D array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OPEInputError(name, f"expected length {n} (as the other arguments), got {arr.shape[0]}")
    bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
    if bad.any():
        i, k = _first_bad(bad)
        raise OPEInputError(name, f"expected a finite number, got {_num(arr[i])}", index=i, n_bad=k)
    return arr


def as_nonnegative_vector(x: object, name: str, *, n: int | None = None) -> np.ndarray:
    """:func:`as_float_vector`, and every entry ``>= 0`` (importance weights, ``w r``)."""
    arr = as_float_vector(x, name, n=n)
    bad = arr < 0
    if bad.any():
        i, k = _first_bad(bad)
        raise OPEInputError(name, f"expected >= 0, got {_num(arr[i])}", index=i, n_bad=k)
    return arr


def as_bool_vector(x: object, name: str, *, n: int) -> np.ndarray:
    """``x`` as a 1-D bool array of length ``n``."""
    if x is None:
        raise OPEInputError(name, "is required but was None")
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise OPEInputError(name, f"expected a 1-D array of length {n}, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            i, k = _first_bad(~np.isin(arr, (0, 1)))
            raise OPEInputError(name, f"expected booleans (0/1), got {_num(arr[i])}", index=i, n_bad=k)
        arr = arr.astype(bool)
    return arr


def check_actions(actions: object, n_actions: int, *, n: int | None = None, name: str = "actions") -> np.ndarray:
    """Integer action indices in ``[0, n_actions)``.

    Raises:
        OPEInputError: non-integers, wrong length or out-of-range entries.
    """
    if actions is None:
        raise OPEInputError(name, "is required but was None")
    arr = np.asarray(actions)
    if arr.ndim != 1:
        raise OPEInputError(name, f"expected a 1-D array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OPEInputError(name, f"expected length {n} (as the other arguments), got {arr.shape[0]}")
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.floating):
            raise OPEInputError(name, f"expected integer action indices, got dtype {arr.dtype}")
        frac = ~np.isfinite(arr) | (arr != np.round(arr))
        if frac.any():
            i, k = _first_bad(frac)
            raise OPEInputError(name, f"expected an integer action index, got {_num(arr[i])}", index=i, n_bad=k)
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_actions)
    if bad.any():
        i, k = _first_bad(bad)
        raise OPEInputError(name, f"expected an action in [0, {n_actions}), got {arr[i]}", index=i, n_bad=k)
    return arr


def check_propensities(p: object, *, n: int | None = None, name: str = "propensities") -> np.ndarray:
    """Logging propensities of the chosen actions: finite, in ``(0, 1]``.

    Raises:
        OPEInputError: missing, NaN, zero/negative or > 1 entries (naming the first).
    """
    arr = np.asarray(p, dtype=np.float64) if p is not None else None
    if arr is None:
        raise OPEInputError(name, "is required for off-policy estimation but was None")
    if arr.ndim != 1:
        raise OPEInputError(name, f"expected a 1-D array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OPEInputError(name, f"expected length {n} (as the other arguments), got {arr.shape[0]}")
    nan = np.isnan(arr)
    if nan.any():
        i, k = _first_bad(nan)
        raise OPEInputError(name, "expected a probability in (0, 1], got NaN (missing propensity)", index=i, n_bad=k)
    bad = ~((arr > 0) & (arr <= 1 + SUM_TOL))
    if bad.any():
        i, k = _first_bad(bad)
        raise OPEInputError(name, f"expected a probability in (0, 1], got {_num(arr[i])}", index=i, n_bad=k)
    return arr


def check_distribution(
    dist: object, *, n: int | None = None, n_actions: int | None = None, name: str = "target"
) -> np.ndarray:
    """An ``(n, n_actions)`` action distribution: finite, non-negative, rows summing to 1.

    Raises:
        OPEInputError: wrong shape, negative/NaN entries, or a row not summing to 1.
    """
    if dist is None:
        raise OPEInputError(name, "is required but was None")
    arr = np.asarray(dist, dtype=np.float64)
    if arr.ndim != 2:
        raise OPEInputError(name, f"expected an (n, n_actions) array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OPEInputError(name, f"expected {n} rows (as the other arguments), got {arr.shape[0]}")
    if n_actions is not None and arr.shape[1] != n_actions:
        raise OPEInputError(name, f"expected {n_actions} columns (actions), got {arr.shape[1]}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i, k = _first_bad(bad)
        raise OPEInputError(name, f"expected a probability >= 0, got {_num(arr[i])}", index=i, n_bad=k)
    s = arr.sum(axis=1)
    off = np.abs(s - 1.0) > SUM_TOL
    if off.any():
        i, k = _first_bad(off)
        raise OPEInputError(name, f"row must sum to 1, sums to {_num(s[i])}", index=i, n_bad=k)
    return arr


def check_matrix(x: object, *, n: int, n_actions: int, name: str) -> np.ndarray:
    """A finite ``(n, n_actions)`` float matrix (reward-model predictions, outcome matrices)."""
    if x is None:
        raise OPEInputError(name, "is required but was None")
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != (n, n_actions):
        raise OPEInputError(name, f"expected shape ({n}, {n_actions}), got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, k = _first_bad(bad)
        raise OPEInputError(name, f"expected a finite number, got {_num(arr[i])}", index=i, n_bad=k)
    return arr


def check_alpha(alpha: float) -> float:
    """Interval level ``alpha`` in (0, 1) (0.05 gives a 95% interval)."""
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise OPEInputError("alpha", f"expected a number in (0, 1), got {alpha!r}")
    return float(alpha)


def check_n_bootstrap(n_bootstrap: int) -> int:
    """Number of bootstrap resamples: an integer >= 10."""
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 10:
        raise OPEInputError("n_bootstrap", f"expected an integer >= 10, got {n_bootstrap!r}")
    return int(n_bootstrap)


def one_hot(actions: object, n_actions: int) -> np.ndarray:
    """Deterministic policy as an ``(n, n_actions)`` distribution (1 on the chosen action)."""
    a = check_actions(actions, n_actions)
    out = np.zeros((a.shape[0], n_actions), dtype=np.float64)
    out[np.arange(a.shape[0]), a] = 1.0
    return out


def _num(x: Any) -> str:
    """Plain repr of a numpy scalar (``0.0``, not ``np.float64(0.0)``)."""
    return repr(x.item()) if isinstance(x, np.generic) else repr(x)

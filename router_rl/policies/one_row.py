"""The LightGBM router's fused one-row decision (the live router's ``action_distribution`` of one request).

The general path of one row is ~25 small NumPy calls (feature checks, the tree walk's input,
sigmoid, calibration, clip, the cost model's products and ``exp``, the catalog's locations,
:func:`~router_rl.policies.decision.decide`), each costing more than its arithmetic.
:class:`OneRowPlan` copies everything those calls read into flat arrays once (when the policy's
state changes) and runs them as one compiled kernel (:mod:`router_rl.policies._decide_kernel`).

Exactness: the kernel returns a model only when it is *provably* the general path's choice (the
tree sums are the same bytes; the rest carries error bounds covering the last bits that BLAS and
NumPy's ``exp`` may round differently, and exact ties are only accepted where both sides are
computed with identical operations); otherwise, and without numba (``ROUTER_RL_NUMBA=0``: the
general path is the kernel's numpy twin), the general path runs. So the distribution is the
general path's, bit for bit (``tests/policies/test_one_row_plan.py``). The plan covers the
default decision rule (argmax: no temperature, exploration, floor or escalation), isotonic or no
calibration and the compiled tree engines; anything else runs the general path.
:attr:`OneRowPlan.general_runs` counts the rows that went the general path after all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.features.jit import compiled

if TYPE_CHECKING:
    from router_rl.policies.lgbm import LGBMPolicy

#: The compiled kernel (``None`` without numba: the general path runs).
_kernel = compiled("router_rl.policies._decide_kernel", "decide_one")

_EMPTY_F32 = np.zeros(0, dtype=np.float32)
_EMPTY_2D = np.zeros((0, 0), dtype=np.float64)


def _state_of(pol: LGBMPolicy) -> tuple[Any, ...]:
    """Everything the plan is built from (compared by identity: replacing any rebuilds the plan)."""
    return (
        pol.decision, pol.privacy_col, pol.catalog, pol._engine, pol.cost_model, pol.calibrator, pol.shrinkage,
        pol.linear, pol._w_full, pol.loadings, pol.base_logit, pol.prior, pol.cost_mean, pol.latency_mean,
        pol.reference_model, pol.fitted,
    )


def _tree_args(ens: Any) -> tuple[Any, ...]:
    return (
        ens.node_feature, ens.node_threshold, ens._clear64, ens._all_bits, ens._delta, int(ens.leaf_value.shape[1]),
        ens._base, ens._out_present, ens._out_start,
    )


class OneRowPlan:
    """Precomputed arrays of one policy state and the fused kernel call (see the module docstring).

    Build with :meth:`build` (``None`` when the state is outside what the kernel covers).

    Attributes:
        general_runs: Rows handed to the general path by :meth:`choose` (near ties, invalid rows).
    """

    def __init__(self, pol: LGBMPolicy) -> None:
        self.state = _state_of(pol)
        self.n_features = int(pol.n_features or 0)
        self.n_models = pol.n_models
        self._linear = pol.linear
        self._w_full = pol._w_full
        self.general_runs = 0
        cfg = pol.decision
        cm = pol.cost_model
        cal = pol.calibrator
        ref = pol.reference_index
        m = pol.n_models
        loc = pol.is_local()
        is_local = np.zeros(m, dtype=np.bool_) if loc is None else np.ascontiguousarray(loc, dtype=np.bool_)
        priv = pol.privacy_col if (cfg.privacy_local_only and pol.privacy_col is not None) else -1
        c_on = cm is not None
        c_tree = _tree_args(cm._ens) if cm is not None else _tree_args(pol._engine)
        self._lin_zero = np.zeros(m, dtype=np.float32)
        self._args = (
            *_tree_args(pol._engine),
            np.zeros((0, m)) if pol.loadings is None else np.ascontiguousarray(pol.loadings, dtype=np.float64),
            np.ascontiguousarray(pol.base_logit, dtype=np.float64),
            1 if cal.method == "isotonic" else 0,
            np.ascontiguousarray(cal._x, dtype=np.float64) if cal.method == "isotonic" else np.zeros(1),
            np.ascontiguousarray(cal._y, dtype=np.float64) if cal.method == "isotonic" else np.zeros(1),
            float(pol.shrinkage),
            np.ascontiguousarray(pol.prior, dtype=np.float64),
            c_on,
            *c_tree,
            cm.loadings if cm is not None else _EMPTY_2D,
            cm.intercept if cm is not None else np.zeros(0),
            cm.offset if cm is not None else np.zeros(0),
            cm.coef if cm is not None else _EMPTY_2D,
            cm.const if cm is not None else np.zeros(0),
            np.ascontiguousarray(pol.cost_mean, dtype=np.float64),
            np.ascontiguousarray(pol.latency_mean, dtype=np.float64),
            float(cfg.lam), float(cfg.mu), float(cfg.nu),
            max(float(pol.cost_mean[ref]) or 1.0, 1e-12),
            max(float(pol.latency_mean[ref]) or 1.0, 1e-12),
            int(priv),
            is_local,
        )

    @classmethod
    def build(cls, pol: LGBMPolicy) -> OneRowPlan | None:
        """The plan of ``pol``'s current state, or ``None`` (general path: no numba, or not covered)."""
        if _kernel() is None or not pol.fitted or pol._engine is None or not pol.n_features:
            return None
        cfg = pol.decision
        if cfg.temperature != 0 or cfg.epsilon != 0 or cfg.quality_floor is not None or cfg.escalate_below is not None:
            return None
        cal = pol.calibrator
        if cal.method == "platt":
            return None
        if cal.method == "isotonic" and (cal._x.size < 2 or np.any(np.diff(cal._x) < 0) or np.any(np.diff(cal._y) < 0)):
            return None  # the error bound uses the isotonic map's monotonicity
        cm = pol.cost_model
        if cm is not None and (cm._ens is None or cm.n_features != pol.n_features):
            return None
        if cfg.nu > 0 and pol.catalog is None:
            return None  # the general path raises its error
        if pol.linear is not None and pol._w_full is None:
            return None
        return cls(pol)

    def matches(self, pol: LGBMPolicy) -> bool:
        """Whether ``pol``'s state is still the one this plan was built from."""
        for a, b in zip(self.state, _state_of(pol), strict=True):  # noqa: SIM110 (a loop: no generator per call)
            if a is not b:
                return False
        return True

    def choose(self, X: np.ndarray) -> int:
        """Model index for the ``(1, n_features)`` float32 row ``X``, or ``-1`` (run the general path)."""
        lin = self._lin_zero
        if self._linear is not None:
            lin = np.asarray(X @ self._w_full + self._linear.b, dtype=np.float32).ravel()  # as predict_raw
        kernel = _kernel()
        if kernel is None:  # numba switched off after the plan was built
            return -1
        a = int(kernel(X[0], lin, *self._args))
        if a < 0:
            self.general_runs += 1
        return a


def plan_for(pol: LGBMPolicy) -> OneRowPlan | None:
    """``pol``'s plan for its current state (cached on ``pol``; ``None``: the general path)."""
    cached = getattr(pol, "_one_row", None)
    if cached is not None:
        state, plan = cached
        if plan is not None:
            if plan.matches(pol):
                return plan
        elif all(a is b for a, b in zip(state, _state_of(pol), strict=True)):
            return None
    plan = OneRowPlan.build(pol)
    pol._one_row = (_state_of(pol) if plan is None else plan.state, plan)
    return plan

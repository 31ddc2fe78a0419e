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
calibration and the compiled tree engines, on ``LGBMPolicy`` itself (a subclass may override a
fused step); anything else runs the general path.
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


def _pack(pol: LGBMPolicy, cm: Any, cal: Any, is_local: np.ndarray, priv: int, cfg: Any, ref: int) -> tuple[Any, ...]:
    """``(ints, f32s, u64s, f64s, is_local)``: every array the kernel reads, by dtype (layout: ``decide_one``)."""
    m = pol.n_models
    q = pol._engine
    c = cm._ens if cm is not None else None
    kq = 0 if pol.loadings is None else int(pol.loadings.shape[0])
    iso = cal.method == "isotonic"
    cal_x = np.asarray(cal._x, dtype=np.float64) if iso else np.zeros(1)
    cal_y = np.asarray(cal._y, dtype=np.float64) if iso else np.zeros(1)
    r = 0 if cm is None else int(cm.rank)
    kt = 0 if cm is None else int(cm.loadings.shape[1])

    def shape(ens: Any) -> tuple[int, int]:
        return (0, 1) if ens is None else (int(ens.node_feature.shape[0]), int(ens.node_feature.shape[1]))

    (q_s, q_k), (c_s, c_k) = shape(q), shape(c)
    q_nl = int(q.leaf_value.shape[1])
    c_nl = 1 if c is None else int(c.leaf_value.shape[1])
    q_np = int(q._out_present.size)
    c_np = 0 if c is None else int(c._out_present.size)
    header = [m, cal_x.size, kq, r, kt, 1 if iso else 0, int(c is not None), priv, q_s, q_k, q_nl, q_np, c_s, c_k, c_nl,
              c_np]
    empty_i = np.zeros(0, dtype=np.int64)
    ints = np.concatenate([
        np.asarray(header, dtype=np.int64), q.node_feature.ravel(), q._out_present, q._out_start,
        empty_i if c is None else c.node_feature.ravel(), empty_i if c is None else c._out_present,
        empty_i if c is None else c._out_start,
    ]).astype(np.int64)
    c_thr = np.zeros(0, np.float32) if c is None else c.node_threshold.ravel()
    f32s = np.concatenate([q.node_threshold.ravel(), c_thr])
    u64s = np.concatenate([
        np.array([q._all_bits, q._all_bits if c is None else c._all_bits], dtype=np.uint64), q._clear64.ravel(),
        np.zeros(0, np.uint64) if c is None else c._clear64.ravel(),
    ]).astype(np.uint64)
    z = np.zeros(0)
    f64s = np.concatenate([
        np.array([float(pol.shrinkage), float(cfg.lam), float(cfg.mu), float(cfg.nu),
                  max(float(pol.cost_mean[ref]) or 1.0, 1e-12), max(float(pol.latency_mean[ref]) or 1.0, 1e-12)]),
        q._delta, q._base, z if c is None else c._delta, z if c is None else c._base,
        z if pol.loadings is None else np.asarray(pol.loadings, dtype=np.float64).ravel(),
        np.asarray(pol.base_logit, dtype=np.float64), cal_x, cal_y, np.asarray(pol.prior, dtype=np.float64),
        z if cm is None else cm.loadings.ravel(), z if cm is None else cm.intercept, z if cm is None else cm.offset,
        z if cm is None else cm.coef.ravel(), np.zeros(2 * m) if cm is None else cm.const,
        np.asarray(pol.cost_mean, dtype=np.float64), np.asarray(pol.latency_mean, dtype=np.float64),
    ]).astype(np.float64)
    if q._base.size != (m if kq == 0 else kq) or (c is not None and c._base.size != r):
        raise AssertionError("one-row plan: ensemble outputs do not match the model / rank counts")
    return ints, f32s.astype(np.float32), u64s, f64s, is_local


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
        self._lin_zero = np.zeros(m, dtype=np.float32)
        self._args = _pack(pol, cm, cal, is_local, priv, cfg, ref)

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


def warm_up_kernel(ens: Any) -> None:
    """Compile (or load from numba's cache) the kernel with the argument types of a real plan.

    ``ens`` is any compiled one-output :class:`~router_rl.policies.treeeval.TreeEnsemble`
    reading one feature (:func:`router_rl.features.jit.warm_up` passes a one-split tree).
    """
    from types import SimpleNamespace

    kernel = _kernel()
    if kernel is None:
        return
    one = np.zeros(1)
    pol: Any = SimpleNamespace(n_models=1, _engine=ens, loadings=None, shrinkage=0.0, cost_mean=one, latency_mean=one,
                               base_logit=one, prior=one)
    cal = SimpleNamespace(method="isotonic", _x=np.array([0.0, 1.0]), _y=np.array([0.0, 1.0]))
    cfg = SimpleNamespace(lam=0.0, mu=0.0, nu=0.0)
    args = _pack(pol, None, cal, np.ones(1, dtype=np.bool_), -1, cfg, 0)
    kernel(np.zeros(1, dtype=np.float32), np.zeros(1, dtype=np.float32), *args)

"""numba kernel: the LightGBM router's whole one-row decision in one call (see :mod:`router_rl.policies.one_row`).

:func:`decide_one` unpacks four dtype-packed arrays (cheap to dispatch) and runs
:func:`decide_arrays`.

Imported lazily (it imports numba) through :func:`router_rl.features.jit.compiled`. (numba's
on-disk cache of this file's kernels does not notice a change of ``_tree_kernel.py``, which they
compile in: after editing that file, delete ``router_rl/policies/__pycache__/_decide_kernel*.nb*``;
a fresh checkout has no cache.) Trees are
walked by :func:`router_rl.policies._tree_kernel.predict_one` (the same code as the one-row tree
walk, so the raw scores are the same bytes); sigmoid, isotonic interpolation, shrinkage, the cost
model, the utility and the argmax follow the general path's formulas in its order. Where the
general path calls BLAS (dense products) or NumPy's ``exp`` the last bits may differ, so every
utility carries a rigorous error bound, and the kernel returns a model index only when that index
is the general path's argmax whatever those last bits are; otherwise it returns ``-1`` and the
caller runs the general path. Its numpy twin is the general path itself.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from router_rl.policies._tree_kernel import predict_one

_EPS = 2.220446049250313e-16
#: Multiplier on every first-order error estimate (the bounds are then far from tight).
_SAFETY = 64.0


@nb.njit(cache=True, nogil=True)
def _seg(xp, v):
    """Index ``j`` with ``xp[j] <= v < xp[j + 1]`` (-1 below ``xp[0]``, ``len - 1`` at or above the last knot)."""
    n = xp.size
    if v < xp[0]:
        return -1
    if v >= xp[n - 1]:
        return n - 1
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if xp[mid] <= v:
            lo = mid
        else:
            hi = mid
    return lo


@nb.njit(cache=True, nogil=True)
def _interp(xp, fp, v):
    """``np.interp(v, xp, fp)`` (NumPy's formula, step for step)."""
    n = xp.size
    j = _seg(xp, v)
    if j == -1:
        return fp[0]
    if j >= n - 1:
        return fp[n - 1]
    if xp[j] == v:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    r = slope * (v - xp[j]) + fp[j]
    if math.isnan(r):
        r = slope * (v - xp[j + 1]) + fp[j + 1]
        if math.isnan(r) and fp[j] == fp[j + 1]:
            r = fp[j]
    return r


@nb.njit(cache=True, nogil=True)
def _fp_at(fp, j):
    """The knot value bounding segment ``j`` (clamped to the ends)."""
    if j < 0:
        return fp[0]
    if j >= fp.size:
        return fp[fp.size - 1]
    return fp[j]


@nb.njit(cache=True, nogil=True)
def decide_one(x, lin, ints, f32s, u64s, f64s, is_local):
    """:func:`decide_arrays` of the packed arrays of :class:`~router_rl.policies.one_row.OneRowPlan`.

    ``ints`` starts with a header of offsets and sizes (see ``one_row._pack``); one call with
    seven arguments costs far less to dispatch than one with forty.
    """
    m, nx, kq, r, kt, cal_kind, c_on, priv_col = ints[0], ints[1], ints[2], ints[3], ints[4], ints[5], ints[6], ints[7]
    q_s, q_k, q_nl, q_np = ints[8], ints[9], ints[10], ints[11]
    c_s, c_k, c_nl, c_np = ints[12], ints[13], ints[14], ints[15]
    i = 16
    q_feat = ints[i : i + q_s * q_k].reshape((q_s, q_k))
    i += q_s * q_k
    q_present = ints[i : i + q_np]
    i += q_np
    q_start = ints[i : i + q_np]
    i += q_np
    c_feat = ints[i : i + c_s * c_k].reshape((c_s, c_k))
    i += c_s * c_k
    c_present = ints[i : i + c_np]
    i += c_np
    c_start = ints[i : i + c_np]
    q_thr = f32s[: q_s * q_k].reshape((q_s, q_k))
    c_thr = f32s[q_s * q_k : q_s * q_k + c_s * c_k].reshape((c_s, c_k))
    q_all, c_all = u64s[0], u64s[1]
    q_clear = u64s[2 : 2 + q_s * q_k].reshape((q_s, q_k))
    c_clear = u64s[2 + q_s * q_k : 2 + q_s * q_k + c_s * c_k].reshape((c_s, c_k))
    shrink, lam, mu, nu, cs, ls = f64s[0], f64s[1], f64s[2], f64s[3], f64s[4], f64s[5]
    j = 6
    q_delta = f64s[j : j + q_s * q_nl]
    j += q_s * q_nl
    n_out_q = m if kq == 0 else kq
    q_base = f64s[j : j + n_out_q]
    j += n_out_q
    c_delta = f64s[j : j + c_s * c_nl]
    j += c_s * c_nl
    c_base = f64s[j : j + r]
    j += r
    q_load = f64s[j : j + kq * m].reshape((kq, m))
    j += kq * m
    base_logit = f64s[j : j + m]
    j += m
    cal_x = f64s[j : j + nx]
    j += nx
    cal_y = f64s[j : j + nx]
    j += nx
    prior = f64s[j : j + m]
    j += m
    c_load = f64s[j : j + r * kt].reshape((r, kt))
    j += r * kt
    c_icpt = f64s[j : j + kt]
    j += kt
    c_off = f64s[j : j + kt]
    j += kt
    c_coef = f64s[j : j + kt * 2 * m].reshape((kt, 2 * m))
    j += kt * 2 * m
    c_const = f64s[j : j + 2 * m]
    j += 2 * m
    cost_mean = f64s[j : j + m]
    j += m
    lat_mean = f64s[j : j + m]
    return decide_arrays(
        x, lin,
        q_feat, q_thr, q_clear, q_all, q_delta, q_nl, q_base, q_present, q_start, q_load,
        base_logit, cal_kind, cal_x, cal_y, shrink, prior,
        c_on != 0, c_feat, c_thr, c_clear, c_all, c_delta, c_nl, c_base, c_present, c_start,
        c_load, c_icpt, c_off, c_coef, c_const, cost_mean, lat_mean,
        lam, mu, nu, cs, ls, priv_col, is_local,
    )


@nb.njit(cache=True, nogil=True)
def decide_arrays(
    x, lin,
    q_feat, q_thr, q_clear, q_all, q_delta, q_nleaves, q_base, q_present, q_start, q_load,
    base_logit, cal_kind, cal_x, cal_y, shrink, prior,
    c_on, c_feat, c_thr, c_clear, c_all, c_delta, c_nleaves, c_base, c_present, c_start,
    c_load, c_icpt, c_off, c_coef, c_const, cost_mean, lat_mean,
    lam, mu, nu, cs, ls, priv_col, is_local,
):
    """Chosen model index of the float32 feature row ``x``, or ``-1`` (run the general path).

    ``-1`` when ``x`` is not finite, when a privacy-sensitive row has no local model (the
    general path raises the error), when a value is not finite, or when the argmax is not
    certain under the error bounds (a near tie).
    """
    d = x.size
    m = base_logit.size
    for i in range(d):
        if not math.isfinite(x[i]):
            return -1
    # --- quality: trees on [x; linear logits], logits, sigmoid, calibration, clip, shrinkage
    ft = np.empty(d + lin.size, dtype=np.float32)
    ft[:d] = x
    ft[d:] = lin
    raw = predict_one(ft, q_feat, q_thr, q_clear, q_all, q_delta, q_nleaves, q_base, q_present, q_start)
    q = np.empty(m)
    eq = np.empty(m)  # bound on |q - q of the general path|
    for j in range(m):
        if q_load.shape[0] > 0:
            z = 0.0
            za = 0.0
            for k in range(q_load.shape[0]):
                t = raw[k] * q_load[k, j]
                z += t
                za += abs(t)
            dz = (q_load.shape[0] + 1) * _EPS * za
        else:
            z = raw[j]
            dz = 0.0
        z = z + base_logit[j]
        p = 1.0 / (1.0 + np.exp(-z))
        ep = _SAFETY * (0.25 * dz + 4.0 * _EPS)
        if cal_kind == 1:  # isotonic (knots non-decreasing: checked when the plan is built)
            v = _interp(cal_x, cal_y, p)
            lo = _seg(cal_x, p - ep)
            hi = _seg(cal_x, p + ep)
            var = _fp_at(cal_y, hi + 1) - _fp_at(cal_y, lo)  # the function's variation over p ± ep
            e = 0.0 if var == 0.0 else var + _SAFETY * _EPS
        else:
            v = p
            e = ep
        if v < 0.0:
            v = 0.0
        elif v > 1.0:
            v = 1.0
        if shrink > 0:
            v = (1.0 - shrink) * v + shrink * prior[j]
            if e > 0:
                e = e + _SAFETY * _EPS
        q[j] = v
        eq[j] = e
    # --- cost / latency
    cost = np.empty(m)
    lat = np.empty(m)
    ec = np.zeros(m)
    el = np.zeros(m)
    if c_on:
        craw = predict_one(x, c_feat, c_thr, c_clear, c_all, c_delta, c_nleaves, c_base, c_present, c_start)
        r, k_t = c_load.shape
        y = np.empty(k_t)
        ey = np.empty(k_t)
        for t in range(k_t):
            a = 0.0
            aa = 0.0
            for i in range(r):
                v = craw[i] * c_load[i, t]
                a += v
                aa += abs(v)
            a = a + c_icpt[t]
            da = _SAFETY * (r + 2) * _EPS * (aa + abs(c_icpt[t]))
            ex = np.exp(a)
            if not math.isfinite(ex) or ex > 1e300:
                return -1
            v = ex - c_off[t]
            ey[t] = ex * (math.expm1(da) + _SAFETY * _EPS) + _SAFETY * _EPS * abs(c_off[t])
            y[t] = v if v > 0.0 else 0.0
        for j in range(2 * m):
            s = 0.0
            sa = 0.0
            e = 0.0
            for t in range(k_t):
                s += y[t] * c_coef[t, j]
                sa += abs(y[t] * c_coef[t, j])
                e += abs(c_coef[t, j]) * ey[t]
            s += c_const[j]
            e = e + _SAFETY * (k_t + 2) * _EPS * (sa + abs(c_const[j]))
            if j < m:
                cost[j] = s
                ec[j] = e
            else:
                lat[j - m] = s
                el[j - m] = e
    else:
        for j in range(m):
            cost[j] = cost_mean[j]
            lat[j] = lat_mean[j]
    # --- utility (the general path's operations in its order), privacy mask, certified argmax
    sensitive = priv_col >= 0 and x[priv_col] > 0.5
    if sensitive:
        n_local = 0
        for j in range(m):
            if is_local[j]:
                n_local += 1
        if n_local == 0:
            return -1
    util = np.empty(m)
    eu = np.empty(m)
    for j in range(m):
        if not math.isfinite(cost[j]) or not math.isfinite(lat[j]):
            return -1
        u = q[j] - lam * cost[j] / cs
        e = eq[j] + lam * ec[j] / cs
        if mu > 0:
            u = u - mu * lat[j] / ls
            e += mu * el[j] / ls
        if nu > 0:
            u = u + nu * (1.0 if is_local[j] else 0.0)
        if e > 0:
            e += _SAFETY * _EPS * (abs(q[j]) + lam * abs(cost[j]) / cs + mu * abs(lat[j]) / ls + nu)
        util[j] = u
        eu[j] = e
    best = -1
    for j in range(m):
        if sensitive and not is_local[j]:
            continue
        if best < 0 or util[j] > util[best]:
            best = j
    for j in range(m):
        if j == best or (sensitive and not is_local[j]):
            continue
        gap = util[best] - util[j]
        if eu[best] == 0.0 and eu[j] == 0.0:
            if gap > 0.0 or (gap == 0.0 and best < j):
                continue  # exact on both sides: the same comparison, the same first-max rule
            return -1
        if gap <= eu[best] + eu[j]:
            return -1
    return best

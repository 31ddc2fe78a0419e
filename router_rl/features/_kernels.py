"""numba kernels of the single-request feature path (imported lazily: this module imports numba).

* :func:`hash_one_row`: :func:`router_rl.features.hashing.hash_ngrams_one`, the same integer
  arithmetic as the numpy forms in :mod:`router_rl.features.hashing` (wrapping uint64
  throughout) in one pass per block.
* :func:`substring_counts`: ``text.count(kw)`` for a whole table of ASCII keywords in one pass
  (:func:`router_rl.features.text_stats.substring_counts_one`).

The tests compare their results with the batch forms, bytes for bytes.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from router_rl.features.hashing import _C1, _C2, _COMBINE, _LEN_MUL, _Q_INV

_u64 = nb.uint64
_K1 = _u64(int(_C1))
_K2 = _u64(int(_C2))
_QI = _u64(_Q_INV)
_KC = _u64(int(_COMBINE))
_KL = _u64(int(_LEN_MUL))


@nb.njit(cache=True, nogil=True)
def _mix(x: Any) -> Any:
    x ^= x >> _u64(30)
    x *= _K1
    x ^= x >> _u64(27)
    x *= _K2
    x ^= x >> _u64(31)
    return x


@nb.njit(cache=True, nogil=True)
def _bucket(key: Any, two_nb: Any) -> Any:
    """``2 * bucket + sign`` of an already tagged key (the arithmetic of ``_accumulate``)."""
    h = key * _K1
    h ^= h >> _u64(29)
    h *= _K2
    h >>= _u64(32)
    h *= two_nb
    return h >> _u64(32)


@nb.njit(cache=True, nogil=True)
def _finish(counts: Any, out: Any) -> None:
    """Signed counts into ``out``, l2-normalised (the sum of squares of integers is exact)."""
    ss = 0
    for j in range(out.size):
        v = counts[2 * j] - counts[2 * j + 1]
        out[j] = v
        ss += v * v
    if ss > 0:
        norm = np.sqrt(np.float64(ss))
        for j in range(out.size):
            out[j] /= norm


@nb.njit(cache=True, nogil=True)
def hash_one_row(buf, word, char, wlo, whi, clo, chi, wtag, ctag, word_table, ws_table):
    """Fill the zero rows ``word`` / ``char`` with the hashed n-gram blocks of ``buf`` (uint8)."""
    size = buf.size
    n_word, n_char = word.size, char.size
    if n_word > 0:
        two_nb = _u64(2 * n_word)
        counts = np.zeros(2 * n_word, dtype=np.int64)
        tok = np.empty(size // 2 + 1, dtype=np.uint64)
        nt = 0
        i = 0
        while i < size:
            if not word_table[buf[i]]:
                i += 1
                continue
            s = i
            h = _u64(0)
            p = _u64(1)
            while i < size and word_table[buf[i]]:  # sum_t b[s+t] * Q**-t (the batch prefix-sum form)
                h += _u64(buf[i]) * p
                p *= _QI
                i += 1
            if i - s >= 2:
                tok[nt] = _mix(h + _u64(i - s) * _KL)
                nt += 1
        cur = tok[:nt].copy()
        for n in range(1, whi + 1):
            m = nt - n + 1
            if m <= 0:
                break
            if n > 1:
                for k in range(m):
                    cur[k] = _mix(cur[k] * _KC + tok[k + n - 1] + _u64(n))
            if n >= wlo:
                for k in range(m):
                    counts[_bucket(cur[k] ^ wtag, two_nb)] += 1
        _finish(counts, word)
    if n_char > 0:
        two_nb = _u64(2 * n_char)
        counts = np.zeros(2 * n_char, dtype=np.int64)
        b = np.empty(size, dtype=np.uint64)
        nb_ = 0
        prev_ws = False
        for i in range(size):
            ws = ws_table[buf[i]]
            if ws and prev_ws:
                continue  # the 2nd+ byte of a whitespace run is dropped
            b[nb_] = _u64(0x20) if ws else _u64(buf[i])
            nb_ += 1
            prev_ws = ws
        # packed[k] = bytes k .. k+chi-1 big-endian (zero beyond the end); key of n = packed >> 8*(chi-n)
        g = _u64(0)
        for j in range(chi - 1):
            g = (g << _u64(8)) | (b[j] if j < nb_ else _u64(0))
        for k in range(nb_):
            j = k + chi - 1
            g = (g << _u64(8)) | (b[j] if j < nb_ else _u64(0))
            if chi < 8:
                g &= (_u64(1) << _u64(8 * chi)) - _u64(1)
            for n in range(clo, chi + 1):
                if k + n > nb_:
                    break
                key = g >> _u64(8 * (chi - n))
                counts[_bucket(key ^ ctag ^ (_u64(n) << _u64(56)), two_nb)] += 1
        _finish(counts, char)


@nb.njit(cache=True, nogil=True)
def substring_counts(buf, kw, kw_start, first_start, first_ids, pair_bits, counts):
    """Add to ``counts[k]`` the non-overlapping occurrences of keyword ``k`` in ``buf`` (as ``bytes.count``).

    Keyword ``k`` (at least 2 bytes) is ``kw[kw_start[k]:kw_start[k+1]]``; the keywords starting
    with byte ``c`` are ``first_ids[first_start[c]:first_start[c+1]]``; bit ``256*a + b`` of
    ``pair_bits`` is set when some keyword starts with bytes ``a b`` (a prefilter). Scanning left
    to right and counting a match only where the previous match of the same keyword has ended is
    what ``count`` does.
    """
    size = buf.size
    next_ok = np.zeros(kw_start.size - 1, dtype=np.int64)
    for i in range(size - 1):
        c = buf[i]
        pair = np.int64(c) * 256 + np.int64(buf[i + 1])
        if (pair_bits[pair >> 3] >> (pair & 7)) & 1 == 0:
            continue
        for t in range(first_start[c], first_start[c + 1]):
            k = first_ids[t]
            if i < next_ok[k]:
                continue
            a = kw_start[k]
            n = kw_start[k + 1] - a
            if i + n > size:
                continue
            ok = True
            for j in range(1, n):
                if buf[i + j] != kw[a + j]:
                    ok = False
                    break
            if ok:
                counts[k] += 1
                next_ok[k] = i + n

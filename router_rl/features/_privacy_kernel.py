"""numba kernel of the privacy prefilter (:mod:`router_rl.features.privacy_prefilter`).

Imported lazily (it imports numba) through :func:`router_rl.features.jit.compiled`. One pass over
both byte views: at each position a bigram table says whether any literal of that view starts
with these two bytes (one load); only then are the literals starting with that byte (a first-byte index into a flat
table) compared in full. The shapes (a run of 40 base64 characters; 13 digits with a run of 4;
``@`` followed by an e-mail domain character) are tracked with counters. Work per position is
bounded by the table (no input makes it more than linear). The numpy twin is
:func:`router_rl.features.privacy_prefilter.mask_reference` (the same bits, tested).
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, inline="always")
def _literal_at(buf, i, lits, start, length):
    """Whether ``lits[start : start + length]`` occurs in ``buf`` at ``i`` (its first byte already matched)."""
    if i + length > len(buf):
        return False
    for t in range(1, length):  # noqa: SIM110 (numba compiles no generator expression)
        if buf[i + t] != lits[start + t]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _literals_at(buf, i, view, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids):
    """Bits of the literals of ``view`` that start at ``buf[i]`` (compared in full)."""
    mask = np.uint64(0)
    base = view * 256 + buf[i]
    for k in range(first_ptr[base], first_ptr[base + 1]):
        lit = first_ids[k]
        if _literal_at(buf, i, lits, lit_start[lit], lit_len[lit]):
            mask |= np.uint64(1) << np.uint64(lit_bit[lit])
    return mask


@nb.njit(cache=True, nogil=True)
def _assign_possible(lab, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids, assign_bit, run_class):
    """Whether an assignment can be accepted: ``--`` somewhere, or a keyword in a name followed by an operator.

    A name is a maximal run of ``[a-z0-9_.-]`` (the keyword's and the tail's class); after the
    run, an optional quote, blanks, then ``:`` or ``=``. Each byte is looked at a bounded number
    of times (runs and the blanks after them are walked once).
    """
    n = len(lab)
    for i in range(n - 1):
        if lab[i] == 45 and lab[i + 1] == 45:
            return True
    kw_in_run = False
    for i in range(n):
        c = lab[i]
        if run_class[c]:
            if not kw_in_run:
                for k in range(first_ptr[256 + c], first_ptr[256 + c + 1]):
                    lit = first_ids[k]
                    if lit_bit[lit] == assign_bit and _literal_at(lab, i, lits, lit_start[lit], lit_len[lit]):
                        kw_in_run = True
                        break
            continue
        if kw_in_run:
            j = i
            if lab[j] == 34 or lab[j] == 39:
                j += 1
            while j < n and (lab[j] == 32 or lab[j] == 9):
                j += 1
            if j < n and (lab[j] == 58 or lab[j] == 61):
                return True
            kw_in_run = False
    return False


@nb.njit(cache=True, nogil=True)
def prefilter_mask(
    ab, lab, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids, bigram, b64_class, b64_bit, card_bit,
    email_class, email_bit, assign_bit, run_class,
):
    """Bit ``b`` set when the rule group with bit ``b`` may hit (see the module docstring)."""
    n = len(ab)
    mask = np.uint64(0)
    b64_run = 0
    digit_run = 0
    digits = 0
    best_b64 = 0
    best_digit = 0
    has_at = False
    for i in range(n):  # one pass: both views' bigram tests, then branch-free counters
        c = ab[i]
        lc = lab[i]
        if i + 1 < n:
            g = c * 256 + ab[i + 1]  # bigram bits (packed, 16 KB: stays in cache between requests)
            if (bigram[g >> 3] >> (g & 7)) & 1:
                mask |= _literals_at(ab, i, 0, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids)
            g = 65536 + lc * 256 + lab[i + 1]
            if (bigram[g >> 3] >> (g & 7)) & 1:
                mask |= _literals_at(lab, i, 1, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids)
            if lc == 64 and email_class[lab[i + 1]]:
                has_at = True
        else:
            mask |= _literals_at(ab, i, 0, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids)
            mask |= _literals_at(lab, i, 1, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids)
        k = b64_class[c]  # byte classes: 1 base64, 2 digit
        b64_run = (b64_run + 1) * (k & 1)
        best_b64 = max(best_b64, b64_run)
        dg = k >> 1
        digit_run = (digit_run + 1) * dg
        digits += dg
        best_digit = max(best_digit, digit_run)
    has_b64 = best_b64 >= 40
    has_run4 = best_digit >= 4
    if has_b64 and b64_bit >= 0:
        mask |= np.uint64(1) << np.uint64(b64_bit)
    if has_run4 and digits >= 13 and card_bit >= 0:
        mask |= np.uint64(1) << np.uint64(card_bit)
    if has_at and email_bit >= 0:
        mask |= np.uint64(1) << np.uint64(email_bit)
    if assign_bit >= 0:
        a = np.uint64(1) << np.uint64(assign_bit)
        if mask & a and not _assign_possible(
            lab, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids, assign_bit, run_class
        ):
            mask &= ~a
    return mask

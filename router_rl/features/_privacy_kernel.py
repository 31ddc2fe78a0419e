"""numba kernel of the privacy prefilter (:mod:`router_rl.features.privacy_prefilter`).

Imported lazily (it imports numba) through :func:`router_rl.features.jit.compiled`. One pass per
byte view: at each position a bigram table says whether any literal starts with these two bytes
(one load); only then are the literals starting with that byte (a first-byte index into a flat
table) compared in full. The shapes (a run of 40 base64 characters; 13 digits with a run of 4;
``@`` followed by an e-mail domain character) are tracked with counters. Work per position is
bounded by the table (no input makes it more than linear). The numpy twin is
:func:`router_rl.features.privacy_prefilter.mask_reference` (the same bits, tested).
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _literals(buf, view, bigram, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids):
    n = len(buf)
    mask = np.uint64(0)
    off = view * 65536
    for i in range(n):
        c = buf[i]
        nxt = buf[i + 1] if i + 1 < n else 256  # 256: the end (only one-byte literals can start here)
        if nxt < 256:
            if not bigram[off + c * 256 + nxt]:
                continue
        base = view * 256 + c
        for k in range(first_ptr[base], first_ptr[base + 1]):
            lit = first_ids[k]
            ln = lit_len[lit]
            if i + ln > n:
                continue
            s = lit_start[lit]
            ok = True
            for t in range(1, ln):
                if buf[i + t] != lits[s + t]:
                    ok = False
                    break
            if ok:
                mask |= np.uint64(1) << np.uint64(lit_bit[lit])
    return mask


@nb.njit(cache=True, nogil=True)
def prefilter_mask(
    ab, lab, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids, bigram, b64_class, b64_bit, card_bit,
    email_class, email_bit,
):
    """Bit ``b`` set when the rule group with bit ``b`` may hit (see the module docstring)."""
    mask = _literals(ab, 0, bigram, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids)
    mask |= _literals(lab, 1, bigram, lits, lit_start, lit_len, lit_bit, first_ptr, first_ids)
    n = len(ab)
    b64_run = 0
    digit_run = 0
    digits = 0
    best_b64 = 0
    best_digit = 0
    has_at = False
    for i in range(n):  # branch-free counters (byte classes: 1 base64, 2 digit)
        c = ab[i]
        k = b64_class[c]
        b64_run = (b64_run + 1) * (k & 1)
        best_b64 = max(best_b64, b64_run)
        dg = k >> 1
        digit_run = (digit_run + 1) * dg
        digits += dg
        best_digit = max(best_digit, digit_run)
        if c == 64 and i + 1 < n and email_class[lab[i + 1]]:
            has_at = True
    has_b64 = best_b64 >= 40
    has_run4 = best_digit >= 4
    if has_b64 and b64_bit >= 0:
        mask |= np.uint64(1) << np.uint64(b64_bit)
    if has_run4 and digits >= 13 and card_bit >= 0:
        mask |= np.uint64(1) << np.uint64(card_bit)
    if has_at and email_bit >= 0:
        mask |= np.uint64(1) << np.uint64(email_bit)
    return mask

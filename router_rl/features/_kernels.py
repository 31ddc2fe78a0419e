"""numba kernels of the single-request feature path (imported lazily: this module imports numba).

* :func:`hash_one_row`: :func:`router_rl.features.hashing.hash_ngrams_one`, the same integer
  arithmetic as the numpy forms in :mod:`router_rl.features.hashing` (wrapping uint64
  throughout) in one pass per block.
* :func:`substring_counts`: ``text.count(kw)`` for a whole table of ASCII keywords in one pass
  (:func:`router_rl.features.text_stats.substring_counts_one`).
* :func:`structure_counts`: the structure statistics of one ASCII text, the counts the regexes of
  :mod:`router_rl.features.text_stats` give (:func:`~router_rl.features.text_stats.prompt_stats_one`).
* :func:`prefilter_mask`: which privacy rules can hit a text (:mod:`router_rl.features.privacy_prefilter`):
  one pass over both byte views; at each position a bigram table says whether any literal of that
  view starts with these two bytes (one load); only then are the literals starting with that byte
  (a first-byte index into a flat table) compared in full. The shapes (a run of 40 base64
  characters; 13 digits with a run of 4; ``@`` followed by an e-mail domain character) are tracked
  with counters. Its numpy twin is :func:`router_rl.features.privacy_prefilter.mask_reference`.
* :func:`encode_text_row`: all of them on one request in one call (the encoder's one-row path).

The tests compare their results with the batch forms and the regexes, bytes for bytes. (Over 500
lines on purpose:) one file because numba's on-disk cache of a function is invalidated only by a change
of its own file: the fused :func:`encode_text_row` must live with the kernels it calls.
Work per byte is bounded by the tables in every kernel here (no input makes one more than linear).

Structure statistics: one pass over the lines of the lower-cased text (and one over its bytes for
the fences and file paths). Why each regex reduces to a per-line test (every rule is anchored at
a line start and none of its matches reaches into the next line's start; each character class
run is matched maximally because the byte after it can never continue the pattern) is written
next to each test below. ASCII only: Python's ``\\w`` / ``\\s`` / ``\\d`` / ``\\b`` are Unicode
classes, so a text with a non-ASCII character takes the regex path. Work per byte is bounded by a
constant (each line's leading blanks and class runs are walked once): no input makes it more
than linear.
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
    size = len(buf)
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
        b = np.empty(size, dtype=np.uint8)  # the kept bytes (1 byte each: a small working set)
        nb_ = 0
        prev_ws = False
        for i in range(size):
            ws = ws_table[buf[i]]
            if ws and prev_ws:
                continue  # the 2nd+ byte of a whitespace run is dropped
            b[nb_] = 0x20 if ws else buf[i]
            nb_ += 1
            prev_ws = ws
        # packed[k] = bytes k .. k+chi-1 big-endian (zero beyond the end); key of n = packed >> 8*(chi-n)
        g = _u64(0)
        for j in range(chi - 1):
            g = (g << _u64(8)) | (_u64(b[j]) if j < nb_ else _u64(0))
        for k in range(nb_):
            j = k + chi - 1
            g = (g << _u64(8)) | (_u64(b[j]) if j < nb_ else _u64(0))
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
    size = len(buf)
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


_NL, _SP, _TAB = 10, 32, 9


@nb.njit(cache=True, nogil=True, inline="always")
def _is_word(c):
    """ASCII ``\\w``: ``[A-Za-z0-9_]``."""
    return (97 <= c <= 122) or (65 <= c <= 90) or (48 <= c <= 57) or c == 95


@nb.njit(cache=True, nogil=True, inline="always")
def _is_digit(c):
    return 48 <= c <= 57


@nb.njit(cache=True, nogil=True, inline="always")
def _is_space(c):
    """ASCII ``\\s`` of a ``str`` pattern: ``[ \\t\\n\\r\\f\\v]`` and the separators ``\\x1c``-``\\x1f``."""
    return c == 32 or (9 <= c <= 13) or (28 <= c <= 31)


@nb.njit(cache=True, nogil=True, inline="always")
def _at(buf, i, lits, a, b):
    """Whether ``lits[a:b]`` occurs in ``buf`` at ``i``."""
    n = b - a
    if i + n > len(buf):
        return False
    for t in range(n):  # noqa: SIM110 (numba compiles no generator expression)
        if buf[i + t] != lits[a + t]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _code_start(buf, p, lits, starts):
    """``_CODE_START_NL_RE`` after the line's blanks (``p``): a keyword, ``from X import `` or ``@name(``.

    The literal keywords are ``lits[starts[k]:starts[k+1]]`` for ``k < starts.size - 3``; the last two
    entries are ``from `` and `` import ``. ``[\\w.]+`` and ``\\w+`` runs are maximal: the byte
    that follows (``' '`` / ``(``) is outside the class, so backtracking finds no other split.
    """
    c = buf[p]
    nk = starts.size - 3
    for k in range(nk):
        if lits[starts[k]] == c and _at(buf, p, lits, starts[k], starts[k + 1]):
            return True
    if _at(buf, p, lits, starts[nk], starts[nk + 1]):  # "from "
        q = p + starts[nk + 1] - starts[nk]
        r = q
        while r < len(buf) and (_is_word(buf[r]) or buf[r] == 46):
            r += 1
        if r > q and _at(buf, r, lits, starts[nk + 1], starts[nk + 2]):  # " import "
            return True
    if c == 64:  # "@\w+\("
        r = p + 1
        while r < len(buf) and _is_word(buf[r]):
            r += 1
        if r > p + 1 and r < len(buf) and buf[r] == 40:
            return True
    return False


@nb.njit(cache=True, nogil=True, inline="always")
def _frame_class(c):
    """``[\\w$.<>/@:\\[\\]-]`` (the Java / JS frame's name)."""
    return _is_word(c) or c == 36 or c == 46 or c == 60 or c == 62 or c == 47 or c == 64 or c == 58 \
        or c == 91 or c == 93 or c == 45


@nb.njit(cache=True, nogil=True)
def _stack_line(buf, s, p, e, lits, starts):
    """``_STACK_NL_RE`` at the line ``buf[s:e]`` whose blanks end at ``p``.

    ``lits`` holds ``file "``, ``", line ``, ``at ``, ``traceback (most recent call last)`` and
    ``goroutine `` (``starts`` delimits them). Branch by branch:

    * ``[ \\t]*file "[^"\\n]+", line \\d+``: the quoted run stops at the first ``"`` of the line.
    * ``[ \\t]+at [\\w$.<>/@:\\[\\]-]+ ?\\(``: the name run is maximal (``' '`` and ``(`` are outside it).
    * ``[ \\t]+at [^\\s()]+:\\d+:\\d+\\s*$``: the maximal non-space, non-paren run must be followed by
      blanks to the end of the line and end in ``:digits:digits`` after at least one byte (the
      digit runs are maximal: the byte before each is ``:``).
    * ``traceback (most recent call last)`` and ``goroutine \\d+ \\[`` directly at the line start.
    """
    size = len(buf)
    if _at(buf, p, lits, starts[0], starts[1]):  # file "
        q = p + starts[1] - starts[0]
        r = q
        while r < e and buf[r] != 34:
            r += 1
        if r > q and r < e and _at(buf, r, lits, starts[1], starts[2]):  # ", line
            d = r + starts[2] - starts[1]
            if d < size and _is_digit(buf[d]):
                return True
    if p > s and _at(buf, p, lits, starts[2], starts[3]):  # at
        q = p + starts[3] - starts[2]
        r = q
        while r < size and _frame_class(buf[r]):
            r += 1
        if r > q and r < size and (buf[r] == 40 or (buf[r] == 32 and r + 1 < size and buf[r + 1] == 40)):
            return True
        r = q
        while r < size and not (_is_space(buf[r]) or buf[r] == 40 or buf[r] == 41):
            r += 1
        if r > q:
            t = r
            while t < e and _is_space(buf[t]):
                t += 1
            if t == e:  # blanks only up to the newline / the end
                t = r - 1
                d2 = 0
                while t >= q and _is_digit(buf[t]):
                    t -= 1
                    d2 += 1
                if d2 > 0 and t >= q and buf[t] == 58:
                    t -= 1
                    d1 = 0
                    while t >= q and _is_digit(buf[t]):
                        t -= 1
                        d1 += 1
                    if d1 > 0 and t >= q and buf[t] == 58 and t - 1 >= q:
                        return True
    if p == s:
        if _at(buf, p, lits, starts[3], starts[4]):  # traceback (most recent call last)
            return True
        if _at(buf, p, lits, starts[4], starts[5]):  # goroutine
            r = p + starts[5] - starts[4]
            q = r
            while r < size and _is_digit(buf[r]):
                r += 1
            if r > q and r + 1 < size and buf[r] == 32 and buf[r + 1] == 91:
                return True
    return False


@nb.njit(cache=True, nogil=True)
def _ext_code(buf, a, b):
    """The extension ``buf[a:b]`` packed 6 bits a byte (``[a-z0-9_]`` -> 1..37); 0 when it cannot be one."""
    if b - a > 10:
        return np.uint64(0)
    code = np.uint64(0)
    for t in range(a, b):
        c = buf[t]
        if 97 <= c <= 122:
            v = c - 96
        elif 48 <= c <= 57:
            v = c - 48 + 27
        elif c == 95:
            v = 37
        else:
            return np.uint64(0)
        code = (code << np.uint64(6)) | np.uint64(v)
    return code


@nb.njit(cache=True, nogil=True)
def structure_counts(buf, code_lits, code_starts, stack_lits, stack_starts, ext_codes, out):
    """Fill ``out`` with the newlines, fences, code-start lines, code-end lines, stack lines, hunks, file paths.

    ``buf`` is the ASCII text (uint8); ``ext_codes`` the sorted packed extensions (:func:`_ext_code`).
    """
    size = len(buf)
    newlines = 0
    fences = 0
    code_start = 0
    code_end = 0
    stack = 0
    hunks = 0
    paths = 0
    s = 0
    while s <= size:
        e = s
        while e < size and buf[e] != _NL:
            e += 1
        p = s
        while p < e and (buf[p] == _SP or buf[p] == _TAB):
            p += 1
        if p < e:
            # "\n[ \t]*(?:...)": one match at most per line (no alternative contains a newline)
            if _code_start(buf, p, code_lits, code_starts):
                code_start += 1
            # "[;{}][ \t]*$" (multiline): the line's last byte that is not a blank is ; { or }
            t = e - 1
            while t >= s and (buf[t] == _SP or buf[t] == _TAB):
                t -= 1
            if t >= s and (buf[t] == 59 or buf[t] == 123 or buf[t] == 125):
                code_end += 1
            if _stack_line(buf, s, p, e, stack_lits, stack_starts):
                stack += 1
            if p == s and s + 2 < size and buf[s] == 64 and buf[s + 1] == 64 and buf[s + 2] == 32:
                hunks += 1
        if e < size:
            newlines += 1
        s = e + 1
    i = 0
    while i + 2 < size:  # "```", non-overlapping (str.count)
        if buf[i] == 96 and buf[i + 1] == 96 and buf[i + 2] == 96:
            fences += 1
            i += 3
        else:
            i += 1
    # "\.(?:ext)\b" after [A-Za-z0-9_-]: the maximal word run after the dot is one extension
    for i in range(1, size):
        if buf[i] != 46:
            continue
        c = buf[i - 1]
        if not (_is_word(c) or c == 45):
            continue
        r = i + 1
        while r < size and _is_word(buf[r]):
            r += 1
        if r == i + 1:
            continue
        code = _ext_code(buf, i + 1, r)
        if code == 0:
            continue
        k = np.searchsorted(ext_codes, code)
        if k < ext_codes.size and ext_codes[k] == code:
            paths += 1
    out[0] = newlines
    out[1] = fences
    out[2] = code_start
    out[3] = code_end
    out[4] = stack
    out[5] = hunks
    out[6] = paths


# --- privacy prefilter (router_rl.features.privacy_prefilter) ---------------------------------
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


@nb.njit(cache=True, nogil=True)
def encode_text_row(buf, row, res, ab, do_stats, do_priv, log_col, hdr, u8, i64, u64, f64):
    """One request's text blocks in one call, written into the feature row; returns ``(logs written, mask)``.

    ``buf`` is the lower-cased text's UTF-8 (``bytes`` or a uint8 array; every kernel here reads
    either), ``ab`` the original ASCII text's bytes when ``do_priv``.

    The fixed tables come packed by dtype (four arrays and a header of scalars and segment bounds,
    the layout of :func:`router_rl.features.one_row.packed_tables`): a call passes 12 arguments,
    not 43 (numba's dispatch cost grows with each).

    * ``row[:n_word + n_char]`` (float32 zeros) gets the hashed n-grams (computed in float64 and
      rounded once on store, as the batch form's float32 output).
    * ``res`` (int64 zeros) gets the structure counts in ``res[:7]`` when ``do_stats`` (see
      :func:`structure_counts`) and, from ``res[7]`` on, the occurrences of the keywords summed per
      group (keyword ``k`` counts towards group ``group_of[k]``; groups 0 and 1 are the test and
      error keywords).
    * With ``do_stats`` and ``log_col >= 0``, ``row[log_col : log_col + 9]`` gets ``log1p`` of the
      nine statistics in :data:`router_rl.features.text_stats.STAT_NAMES` order, read from
      ``f64`` (NumPy's ``log1p`` of the small integers, so the batch form's bits); it returns
      ``False`` without writing them when a statistic is beyond the table (the caller computes them).
    * With ``do_priv``, the privacy prefilter's mask of the views ``(ab, buf)`` (:func:`prefilter_mask`;
      ``buf`` is the lower-cased view of ``ab`` when the text is ASCII); else 0.
    """
    n_word, n_char, wlo, whi, clo, chi = hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5]
    b64_bit, card_bit, email_bit, assign_bit = hdr[6], hdr[7], hdr[8], hdr[9]
    u = hdr[10:21]  # bounds of the 10 uint8 segments
    q = hdr[21:34]  # bounds of the 12 int64 segments
    word_table, ws_table, kw, pair_bits = u8[u[0]:u[1]], u8[u[1]:u[2]], u8[u[2]:u[3]], u8[u[3]:u[4]]
    code_lits, stack_lits, lits, bigram = u8[u[4]:u[5]], u8[u[5]:u[6]], u8[u[6]:u[7]], u8[u[7]:u[8]]
    email_class, run_class = u8[u[8]:u[9]], u8[u[9]:u[10]]
    kw_start, first_start, first_ids, group_of = i64[q[0]:q[1]], i64[q[1]:q[2]], i64[q[2]:q[3]], i64[q[3]:q[4]]
    code_starts, stack_starts, lit_start, lit_len = i64[q[4]:q[5]], i64[q[5]:q[6]], i64[q[6]:q[7]], i64[q[7]:q[8]]
    lit_bit, first_ptr, lit_ids, b64_class = i64[q[8]:q[9]], i64[q[9]:q[10]], i64[q[10]:q[11]], i64[q[11]:q[12]]
    wtag, ctag, ext_codes = u64[0], u64[1], u64[2:]
    mask = np.uint64(0)
    if do_priv:
        mask = prefilter_mask(ab, buf, lits, lit_start, lit_len, lit_bit, first_ptr, lit_ids, bigram, b64_class,
                              b64_bit, card_bit, email_class, email_bit, assign_bit, run_class)
    if n_word + n_char > row.size:
        return False, mask  # a caller's error: nothing is written out of bounds
    if len(buf) > 0 and n_word + n_char > 0:
        hashed = np.zeros(n_word + n_char, dtype=np.float64)
        hash_one_row(buf, hashed[:n_word], hashed[n_word:], wlo, whi, clo, chi, wtag, ctag, word_table, ws_table)
        for j in range(n_word + n_char):
            row[j] = hashed[j]
    if group_of.size > 0:
        counts = np.zeros(group_of.size, dtype=np.int64)
        substring_counts(buf, kw, kw_start, first_start, first_ids, pair_bits, counts)
        for k in range(group_of.size):
            res[7 + group_of[k]] += counts[k]
    if not do_stats:
        return False, mask
    structure_counts(buf, code_lits, code_starts, stack_lits, stack_starts, ext_codes, res[:7])
    if log_col < 0 or log_col + 9 > row.size:
        return False, mask
    n = len(buf)  # ASCII: bytes are characters
    # STAT_NAMES: chars, lines, code_fences, code_lines, stack_trace_lines, diff_hunks, test_keywords,
    # file_paths, error_keywords
    v = np.empty(9, dtype=np.int64)
    v[0] = n
    v[1] = res[0] + 1 if n > 0 else 0
    v[2] = res[1]
    v[3] = res[2] + res[3]
    v[4] = res[4]
    v[5] = res[5]
    v[6] = res[7]
    v[7] = res[6]
    v[8] = res[8]
    for i in range(9):
        if v[i] >= f64.size:
            return False, mask
    for i in range(9):
        row[log_col + i] = f64[v[i]]
    return True, mask

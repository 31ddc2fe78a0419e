"""Stateless, process-stable signed feature hashing of word and character n-grams (numpy only).

Why not Python's ``hash()``: it is salted per process. Why not sklearn's ``HashingVectorizer``:
its analyzers build every n-gram as a Python string, which is too slow for the live router's
budget. Here a whole batch of prompts is concatenated into one ``uint8`` buffer and every n-gram
key is computed with vectorised 64-bit integer arithmetic (wrapping mod 2**64), then mixed with
a splitmix64-style multiply-xorshift finaliser. The result depends only on the bytes, the n-gram ranges, the bucket
count and the seed, so it is identical across processes, machines and Python versions.

Definitions (lower-casing happens in the caller):

* **Words**: maximal runs of ``[a-z0-9_]`` or non-ASCII bytes, at least 2 bytes long (as
  sklearn's default ``token_pattern``); word n-grams join consecutive words of one prompt.
* **Chars**: byte n-grams of the UTF-8 text after collapsing every whitespace run to one space
  (identical to character n-grams for ASCII text); ``n`` at most 7.
* Each n-gram adds ``+1`` or ``-1`` (sign from the top bit of its hash) to bucket
  ``hash % n_buckets``; every block is then l2-normalised (an empty text gives a zero row).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any, Final

import numpy as np

from router_rl.features.jit import compiled

_U64 = np.uint64
_C1: Final = _U64(0xBF58476D1CE4E5B9)
_C2: Final = _U64(0x94D049BB133111EB)
_GOLDEN: Final = 0x9E3779B97F4A7C15
_Q: Final = 0x100000001B3  # odd multiplier of the polynomial word hash (FNV-64 prime)
_Q_INV: Final = pow(_Q, -1, 1 << 64)
_COMBINE: Final = _U64(0xD6E8FEB86659FD93)
_LEN_MUL: Final = _U64(0xFF51AFD7ED558CCD)

MIN_WORD_BYTES: Final = 2
MAX_CHAR_N: Final = 7
#: Target bytes per internal chunk (bounds temporary memory; results do not depend on it).
CHUNK_BYTES: Final = 1 << 16

_WORD_TABLE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD_TABLE[_c] = True
_WORD_TABLE[0x80:] = True
_WS_TABLE = np.zeros(256, dtype=bool)
for _c in b" \t\n\r\x0b\x0c":
    _WS_TABLE[_c] = True

_POW_CACHE: dict[str, np.ndarray] = {}


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (returns a new array)."""
    x = x ^ (x >> _U64(30))
    x *= _C1
    x ^= x >> _U64(27)
    x *= _C2
    x ^= x >> _U64(31)
    return x


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """``Q**k`` and ``Q**-k`` (mod 2**64) for ``k < length``, cached and grown on demand."""
    have = _POW_CACHE.get("q")
    if have is None or have.size < length:
        size = max(length, 1 << 16, 2 * (0 if have is None else have.size))
        q = np.full(size, _Q, dtype=np.uint64)
        q[0] = 1
        qi = np.full(size, _Q_INV, dtype=np.uint64)
        qi[0] = 1
        _POW_CACHE["q"] = np.cumprod(q, dtype=np.uint64)
        _POW_CACHE["qi"] = np.cumprod(qi, dtype=np.uint64)
    return _POW_CACHE["q"][:length], _POW_CACHE["qi"][:length]


@functools.lru_cache(maxsize=64)
def _seed_tag(seed: int, salt: int) -> np.uint64:
    v = np.array([(seed * _GOLDEN + salt) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    return _U64(_mix(v)[0])


def _concat(chunk: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join with a one-byte separator; return buffer, row of each byte, separator mask."""
    n = len(chunk)
    lens = np.fromiter((len(b) for b in chunk), dtype=np.int64, count=n)
    buf = np.frombuffer(b"\x00".join(chunk), dtype=np.uint8)
    row = np.repeat(np.arange(n, dtype=np.int64), lens + 1)[: buf.size]
    is_sep = np.zeros(buf.size, dtype=bool)
    is_sep[(np.cumsum(lens + 1) - 1)[:-1]] = True
    return buf, row, is_sep


def _char_keys(
    buf: np.ndarray, row: np.ndarray, is_sep: np.ndarray, ngram_range: tuple[int, int]
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(n, keys, rows, bad)`` per n; ``bad`` indexes n-grams that touch a separator."""
    ws = _WS_TABLE[buf]
    drop = np.zeros(buf.size, dtype=bool)
    if buf.size > 1:
        drop[1:] = ws[1:] & ws[:-1]
    keep = ~drop
    b = np.where(ws, np.uint8(0x20), buf)[keep].astype(np.uint64)
    r = row[keep]
    sep_pos = np.flatnonzero(is_sep[keep])
    g = b
    lo, hi = ngram_range
    for n in range(1, hi + 1):
        m = b.size - n + 1
        if m <= 0:
            return
        if n > 1:
            g = g[:m] << _U64(8)
            g |= b[n - 1 :]
        if n >= lo:
            bad = (sep_pos[:, None] - np.arange(n)[None, :]).ravel()
            yield n, g, r[:m], bad[(bad >= 0) & (bad < m)]


def _word_keys(buf: np.ndarray, row: np.ndarray, ngram_range: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    w = _WORD_TABLE[buf]
    prev = np.zeros(buf.size, dtype=bool)
    nxt = np.zeros(buf.size, dtype=bool)
    if buf.size > 1:
        prev[1:] = w[:-1]
        nxt[:-1] = w[1:]
    starts = np.flatnonzero(w & ~prev)
    ends = np.flatnonzero(w & ~nxt) + 1
    ok = (ends - starts) >= MIN_WORD_BYTES
    starts, ends = starts[ok], ends[ok]
    if starts.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    qpow, qinv = _powers(buf.size)
    # C[k] = sum_{j<k} b[j] * Q**-j ; segment [s, e) -> sum_j b[s+j] * Q**-j (first byte weight 1)
    c = np.zeros(buf.size + 1, dtype=np.uint64)
    np.cumsum(buf.astype(np.uint64) * qinv, out=c[1:])
    seg = (c[ends] - c[starts]) * qpow[starts]
    tok = _mix(seg + (ends - starts).astype(np.uint64) * _LEN_MUL)
    trow = row[starts]
    keys: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    lo, hi = ngram_range
    cur = tok
    for n in range(1, hi + 1):
        m = tok.size - n + 1
        if m <= 0:
            break
        if n > 1:
            cur = _mix(cur[:m] * _COMBINE + tok[n - 1 :] + _U64(n))
        if n >= lo:
            valid = trow[:m] == trow[n - 1 :]
            keys.append(cur[valid])
            rows.append(trow[:m][valid])
    if not keys:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return np.concatenate(keys), np.concatenate(rows)


def _accumulate(
    keys: np.ndarray,
    rows: np.ndarray,
    bad: np.ndarray | None,
    n_rows: int,
    n_buckets: int,
    tag: np.uint64,
    out: np.ndarray,
) -> None:
    """Add the signed bucket counts of ``keys`` (row ``rows``) to ``out`` (``(n_rows, n_buckets)``).

    ``bad`` (optional) indexes keys that must not count. Each key is mixed with ``tag``; the high
    32 bits ``x`` of the mixed hash give ``floor(x * 2 * n_buckets / 2**32)``, whose upper part
    is the bucket and whose lowest bit is the sign (uniform for any bucket count, no division).
    """
    if keys.size == 0:
        return
    h = keys ^ tag
    h *= _C1
    h ^= h >> _U64(29)
    h *= _C2
    h >>= _U64(32)
    h *= _U64(2 * n_buckets)
    h >>= _U64(32)
    h += rows.astype(np.uint64) * _U64(2 * n_buckets)
    if bad is not None and bad.size:
        h[bad] = 2 * n_rows * n_buckets  # trash slot
    counts = np.bincount(h.view(np.int64), minlength=2 * n_rows * n_buckets + 1)
    pairs = counts[: 2 * n_rows * n_buckets].reshape(n_rows, n_buckets, 2)
    out += pairs[:, :, 0]
    out -= pairs[:, :, 1]


def _l2_normalise(out: np.ndarray) -> None:
    norm = np.sqrt(np.einsum("ij,ij->i", out, out))
    nz = norm > 0
    out[nz] /= norm[nz, None]


def _chunks(encoded: Sequence[bytes]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, b in enumerate(encoded):
        size += len(b) + 1
        if size >= CHUNK_BYTES:
            spans.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(encoded):
        spans.append((start, len(encoded)))
    return spans


def encode_texts(texts: Sequence[str]) -> list[bytes]:
    """UTF-8 bytes of each text (lone surrogates kept byte-exactly)."""
    return [t.encode("utf-8", "surrogatepass") for t in texts]


def hash_ngrams(
    encoded: Sequence[bytes],
    *,
    n_word: int,
    n_char: int,
    word_ngram_range: tuple[int, int] = (1, 2),
    char_ngram_range: tuple[int, int] = (3, 5),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Hashed word and char n-gram blocks of a batch of (lower-cased, UTF-8 encoded) texts.

    Args:
        encoded: One ``bytes`` per text (see :func:`encode_texts`).
        n_word: Buckets of the word block (0 disables it).
        n_char: Buckets of the char block (0 disables it).
        word_ngram_range: Inclusive ``(min_n, max_n)`` of word n-grams.
        char_ngram_range: Inclusive ``(min_n, max_n)`` of byte n-grams, ``max_n <= 7``.
        seed: Hash seed; different seeds give independent bucket assignments.

    Returns:
        ``(word_block, char_block)``: float64 arrays ``(n, n_word)`` and ``(n, n_char)``,
        each row l2-normalised (zero for texts without any n-gram).
    """
    if char_ngram_range[1] > MAX_CHAR_N:
        raise ValueError(f"hash_ngrams: char n-grams are limited to n <= {MAX_CHAR_N}, got {char_ngram_range}")
    n = len(encoded)
    word = np.zeros((n, n_word), dtype=np.float64)
    char = np.zeros((n, n_char), dtype=np.float64)
    if n == 0 or (n_word == 0 and n_char == 0):
        return word, char
    wtag, ctag = _seed_tag(seed, 1), _seed_tag(seed, 2)
    for a, b in _chunks(encoded):
        buf, row, is_sep = _concat(encoded[a:b])
        if n_word:
            k, r = _word_keys(buf, row, word_ngram_range)
            _accumulate(k, r, None, b - a, n_word, wtag, word[a:b])
        if n_char:
            for n, k, r, bad in _char_keys(buf, row, is_sep, char_ngram_range):
                _accumulate(k, r, bad, b - a, n_char, ctag ^ _U64(n << 56), char[a:b])
    _l2_normalise(word)
    _l2_normalise(char)
    return word, char


def hash_ngrams_one(
    encoded: bytes,
    *,
    n_word: int,
    n_char: int,
    word_ngram_range: tuple[int, int] = (1, 2),
    char_ngram_range: tuple[int, int] = (3, 5),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hash_ngrams` of one text, bit-identical to its row, with far fewer numpy calls.

    The live router encodes one request at a time, where the batch form's per-call overhead
    (separators, row bookkeeping, one bincount per n) dominates. Here all char n-grams of every
    ``n`` are tagged and bucketed in one pass, and word and char buckets share one ``bincount``;
    bucket counts are integers, so summing them in another order gives the same floats.

    With numba (:mod:`router_rl.features.jit`) one compiled loop does it all; otherwise the
    numpy form below runs (same bytes; ``tests/features/test_feat_encoder_one.py`` checks both).

    Returns:
        ``(word, char)``: float64 ``(n_word,)`` and ``(n_char,)``, each l2-normalised.
    """
    if char_ngram_range[1] > MAX_CHAR_N:
        raise ValueError(f"hash_ngrams: char n-grams are limited to n <= {MAX_CHAR_N}, got {char_ngram_range}")
    word = np.zeros(n_word, dtype=np.float64)
    char = np.zeros(n_char, dtype=np.float64)
    if not encoded or (n_word == 0 and n_char == 0):
        return word, char
    kernel = _one_row_kernel()
    if kernel is not None:
        args = one_row_args(word_ngram_range, char_ngram_range, seed)
        kernel(np.frombuffer(encoded, dtype=np.uint8), word, char, *args)
        return word, char
    return _hash_one_numpy(encoded, word, char, word_ngram_range, char_ngram_range, seed)


@functools.lru_cache(maxsize=16)
def one_row_args(word_ngram_range: tuple[int, int], char_ngram_range: tuple[int, int], seed: int) -> tuple[Any, ...]:
    """The one-row kernel's arguments after ``(buf, word, char)``: ranges, seed tags, byte tables (cached).

    Raises:
        ValueError: ``char_ngram_range`` goes beyond :data:`MAX_CHAR_N`.
    """
    if char_ngram_range[1] > MAX_CHAR_N:
        raise ValueError(f"hash_ngrams: char n-grams are limited to n <= {MAX_CHAR_N}, got {char_ngram_range}")
    wlo, whi = word_ngram_range
    clo, chi = char_ngram_range
    return wlo, whi, clo, chi, _seed_tag(seed, 1), _seed_tag(seed, 2), _WORD_TABLE, _WS_TABLE


def _hash_one_numpy(
    encoded: bytes,
    word: np.ndarray,
    char: np.ndarray,
    word_ngram_range: tuple[int, int],
    char_ngram_range: tuple[int, int],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The numpy form of :func:`hash_ngrams_one` (fills the zero rows ``word`` and ``char``)."""
    n_word, n_char = word.size, char.size
    buf = np.frombuffer(encoded, dtype=np.uint8)
    parts: list[np.ndarray] = []  # bucket index + sign bit, already offset into one [word | char] space
    if n_word:
        keys = _word_keys_one(buf, word_ngram_range)
        if keys.size:
            parts.append(_buckets(keys, n_word, _seed_tag(seed, 1)))
    if n_char:
        ctag = _seed_tag(seed, 2)
        ws = _WS_TABLE[buf]
        b8 = np.where(ws, np.uint8(0x20), buf)
        if buf.size > 1:
            dup = np.flatnonzero(ws[1:] & ws[:-1])  # the 2nd+ byte of each whitespace run is dropped
            if dup.size:
                b8 = np.delete(b8, dup + 1)
        lo, hi = char_ngram_range
        size = b8.size
        # packed[i] = bytes i .. i+hi-1 (zero beyond the end) as one big-endian integer; the
        # n-gram key at i is packed[i] >> 8*(hi-n), exactly the batch form's shift-or chain
        padded = np.zeros(size + hi - 1, dtype=np.uint64)
        padded[:size] = b8
        packed = padded[:size] << _a(8 * (hi - 1))
        for j in range(1, hi):
            packed |= padded[j : j + size] << _a(8 * (hi - 1 - j))
        keyed = [
            (packed[: size - n + 1] >> _a(8 * (hi - n))) ^ _a(ctag ^ _U64(n << 56))
            for n in range(lo, hi + 1)
            if size - n + 1 > 0
        ]
        if keyed:
            parts.append(_buckets(np.concatenate(keyed), n_char, _U64(0)) + 2 * n_word)
    if not parts:
        return word, char
    idx = parts[0] if len(parts) == 1 else np.concatenate(parts)
    counts = np.bincount(idx.view(np.int64), minlength=2 * (n_word + n_char)).reshape(-1, 2)
    signed = (counts[:, 0] - counts[:, 1]).astype(np.float64)
    word[:] = signed[:n_word]
    char[:] = signed[n_word:]
    for v in (word, char):
        norm = math.sqrt(float(np.dot(v, v)))
        if norm > 0:
            v /= norm
    return word, char


def _a(v: int | np.uint64) -> np.ndarray:
    return np.array(v, dtype=np.uint64)


# The one-row path uses 0-d uint64 arrays instead of numpy scalars as operands: the same ufunc
# loops (identical results), but NumPy dispatches an array operand ~2x faster than a scalar one,
# which matters when each call touches only ~1,000 elements.
_A = {k: _a(k) for k in (8, 16, 24, 27, 29, 30, 31, 32, 40, 48)}
_AC1, _AC2, _ACOMBINE, _ALEN = _a(_C1), _a(_C2), _a(_COMBINE), _a(_LEN_MUL)


def _mix1(x: np.ndarray) -> np.ndarray:
    """:func:`_mix` with array operands (see above); returns a new array."""
    x = x ^ (x >> _A[30])
    x *= _AC1
    x ^= x >> _A[27]
    x *= _AC2
    x ^= x >> _A[31]
    return x


def _word_keys_one(buf: np.ndarray, ngram_range: tuple[int, int]) -> np.ndarray:
    """:func:`_word_keys` of one text (no row bookkeeping; word edges from one ``diff``)."""
    edges = np.flatnonzero(np.diff(_WORD_TABLE[buf], prepend=False, append=False))
    starts, ends = edges[0::2], edges[1::2]
    ok = (ends - starts) >= MIN_WORD_BYTES
    starts, ends = starts[ok], ends[ok]
    if starts.size == 0:
        return np.zeros(0, np.uint64)
    qpow, qinv = _powers(buf.size)
    c = np.zeros(buf.size + 1, dtype=np.uint64)
    np.cumsum(buf * qinv, out=c[1:])
    tok = _mix1((c[ends] - c[starts]) * qpow[starts] + (ends - starts).astype(np.uint64) * _ALEN)
    lo, hi = ngram_range
    keys: list[np.ndarray] = []
    cur = tok
    for n in range(1, hi + 1):
        m = tok.size - n + 1
        if m <= 0:
            break
        if n > 1:
            cur = _mix1(cur[:m] * _ACOMBINE + tok[n - 1 :] + _a(n))
        if n >= lo:
            keys.append(cur)
    if not keys:
        return np.zeros(0, np.uint64)
    return keys[0] if len(keys) == 1 else np.concatenate(keys)


def _buckets(keys: np.ndarray, n_buckets: int, tag: np.uint64) -> np.ndarray:
    """``2 * bucket + sign`` of each key (the arithmetic of :func:`_accumulate`, for one row)."""
    h = keys ^ _a(tag)
    h *= _AC1
    h ^= h >> _A[29]
    h *= _AC2
    h >>= _A[32]
    h *= _a(2 * n_buckets)
    h >>= _A[32]
    return h



#: The compiled form of :func:`hash_ngrams_one` (``None`` without numba; see :mod:`router_rl.features.jit`).
_one_row_kernel = compiled("router_rl.features._kernels", "hash_one_row")

"""The text blocks of one request (hashed n-grams, keyword group totals, structure statistics) in one call.

The live router encodes one request at a time. With numba (:mod:`router_rl.features.jit`) the
three blocks come from one compiled call over the request's bytes
(:func:`router_rl.features._kernels.encode_text_row`); without it, or for a text the kernel does
not cover (structure statistics of a non-ASCII text: the regexes' Unicode classes), the separate
forms run. Both give the same numbers (``tests/features/test_feat_encoder_one.py`` compares the
encoder's row with the batch form, ``tests/features/test_feat_stats_kernel.py`` the statistics
with the regexes, ``tests/features/test_feat_one_row_blocks.py`` the two forms here).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from router_rl.features.config import EncoderConfig
from router_rl.features.hashing import hash_ngrams_one, one_row_args
from router_rl.features.jit import compiled
from router_rl.features.privacy import sensitive_given_mask
from router_rl.features.privacy_prefilter import prefilter_tables
from router_rl.features.text_stats import (
    KeywordTable,
    prompt_stats_one,
    stats_from_counts,
    stats_tables,
    substring_counts_one,
)

_kernel = compiled("router_rl.features._kernels", "encode_text_row")


class KeywordGroups:
    """Keywords counted in one pass and summed per group (built once, reused per request).

    Groups 0 and 1 are the test and the error keywords (their totals go into the structure
    statistics); the others are whatever the caller needs (the complexity heuristic's groups).

    Args:
        groups: The keywords of each group, in order.
    """

    def __init__(self, groups: Sequence[Sequence[str]]) -> None:
        if len(groups) < 2:
            raise ValueError("KeywordGroups: groups 0 and 1 (test and error keywords) are required")
        self.n_groups = len(groups)
        self.table = KeywordTable([k for g in groups for k in g])
        self.group_of = np.array([i for i, g in enumerate(groups) for _ in g], dtype=np.int64)


@functools.cache
def _no_keywords() -> KeywordGroups:
    return KeywordGroups([(), ()])


@functools.cache
def log1p_table() -> np.ndarray:
    """``np.log1p`` of the integers below 4,096 (the batch path's own function, so the same bits)."""
    return np.log1p(np.arange(4096, dtype=np.float64))


@functools.lru_cache(maxsize=16)
def packed_tables(
    n_word: int,
    n_char: int,
    word_ngram_range: tuple[int, int],
    char_ngram_range: tuple[int, int],
    seed: int,
    groups: KeywordGroups | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fused kernel's fixed tables packed by dtype: ``(hdr, u8, i64, u64, f64)`` (built once per setting).

    ``hdr`` holds ``n_word, n_char, wlo, whi, clo, chi`` and the privacy shape bits, then the bounds
    of the 10 uint8 segments (hashing's byte classes, the keyword table, the structure literals, the
    privacy literals, bigrams and byte classes) and of the 12 int64 segments, in the order
    :func:`router_rl.features._kernels.encode_text_row` slices them; ``u64`` is the two seed tags
    then the packed file extensions; ``f64`` is :func:`log1p_table`.
    """
    g = groups if groups is not None else _no_keywords()
    wlo, whi, clo, chi, wtag, ctag, word_table, ws_table = one_row_args(word_ngram_range, char_ngram_range, seed)
    kw, kw_start, first_start, first_ids, pair_bits = g.table.kernel_args()
    code_lits, code_starts, stack_lits, stack_starts, ext_codes = stats_tables()
    (lits, lit_start, lit_len, lit_bit, first_ptr, lit_ids, bigram, b64_class, b64_bit, card_bit, email_class,
     email_bit, assign_bit, run_class) = prefilter_tables()
    group_of = g.group_of if groups is not None else g.group_of[:0]
    u8_parts = [word_table, ws_table, kw, pair_bits, code_lits, stack_lits, lits, bigram, email_class, run_class]
    i64_parts = [kw_start, first_start, first_ids, group_of, code_starts, stack_starts, lit_start, lit_len, lit_bit,
                 first_ptr, lit_ids, b64_class]

    def bounds(parts: list[Any]) -> list[int]:
        return np.concatenate([[0], np.cumsum([np.asarray(p).size for p in parts])]).astype(int).tolist()

    hdr = np.array([n_word, n_char, wlo, whi, clo, chi, b64_bit, card_bit, email_bit, assign_bit,
                    *bounds(u8_parts), *bounds(i64_parts)], dtype=np.int64)
    u8 = np.concatenate([np.asarray(p).astype(np.uint8).ravel() for p in u8_parts])
    i64 = np.concatenate([np.asarray(p, dtype=np.int64).ravel() for p in i64_parts])
    u64 = np.concatenate([np.array([wtag, ctag], dtype=np.uint64), np.asarray(ext_codes, dtype=np.uint64)])
    return hdr, u8, i64, u64, log1p_table()


def text_blocks_one(
    row: np.ndarray,
    lowered: str,
    encoded: bytes,
    cfg: EncoderConfig,
    groups: KeywordGroups | None,
    log_col: int = -1,
    text: str | None = None,
) -> tuple[list[int], dict[str, int] | None, bool, bool | None]:
    """Write one lower-cased text's hashed n-grams into ``row``; count its keyword groups and statistics.

    Args:
        row: The float32 feature row (zeros); ``row[:n_word_hash + n_char_hash]`` gets the hashed
            blocks (each l2-normalised, rounded once to float32 like the batch form's output).
        lowered: The lower-cased text (``""`` for a missing prompt).
        encoded: ``lowered`` as UTF-8 (surrogates passed through).
        cfg: The encoder's settings (bucket counts, n-gram ranges, seed).
        groups: The keywords to count, or ``None`` when neither structure nor complexity is on
            (then no totals and no statistics).
        log_col: Where ``log1p`` of the nine statistics (:data:`~router_rl.features.text_stats.STAT_NAMES`
            order) go, or -1 (not written).
        text: The text before lower-casing, when the caller wants its privacy verdict
            (:func:`~router_rl.features.privacy.is_sensitive`) from the same call.

    Raises:
        ValueError: ``row`` is not float32 or too short for the hashed blocks and the log block.

    Returns:
        ``(totals, stats, logs_written, sensitive)``: the occurrences of each group's keywords
        (``str.count``, summed), :func:`~router_rl.features.text_stats.prompt_stats_one`'s dict
        (``[]`` and ``None`` without groups), whether the ``log1p`` block was written (else the
        caller writes it: numba off, a non-ASCII text, or a statistic beyond :func:`log1p_table`)
        and ``is_sensitive(text)`` (``None`` when not asked, or not computed here: numba off or a
        non-ASCII text, whose privacy views are not its UTF-8 bytes; the caller scans it).
    """
    too_short = row.size < cfg.n_word_hash + cfg.n_char_hash or (log_col >= 0 and log_col + 9 > row.size)
    if row.dtype != np.float32 or too_short:
        raise ValueError(f"text_blocks_one: row of {row.size} {row.dtype} cannot hold the blocks (log_col {log_col})")
    kernel = _kernel()
    if kernel is None or (groups is not None and not groups.table.ascii):
        return _separately(row, lowered, encoded, cfg, groups)
    g = groups if groups is not None else _no_keywords()
    res = np.zeros(7 + g.n_groups, dtype=np.int64)
    ascii_text = lowered.isascii()
    do_stats = groups is not None and ascii_text
    # the privacy views of an ASCII text: its bytes and their lower case (= ``encoded``); the text
    # itself must be ASCII, not only its lower case (the Kelvin sign lower-cases to "k")
    ab = text.encode("ascii") if text is not None and text.isascii() else b""
    packed = packed_tables(cfg.n_word_hash, cfg.n_char_hash, cfg.word_ngram_range, cfg.char_ngram_range, cfg.seed,
                           groups)
    written, mask = kernel(encoded, row, res, ab, do_stats, bool(ab), log_col, *packed)  # bytes: no array view
    sensitive = sensitive_given_mask(ab, encoded, int(mask)) if ab else (False if text == "" else None)
    if groups is None:
        return [], None, False, sensitive
    c = res.tolist()
    totals = c[7:]
    if do_stats:
        return totals, stats_from_counts(len(lowered), c, (totals[0], totals[1])), bool(written), sensitive
    return totals, prompt_stats_one(lowered, keyword_totals=(totals[0], totals[1])), False, sensitive


def _separately(
    row: np.ndarray, lowered: str, encoded: bytes, cfg: EncoderConfig, groups: KeywordGroups | None
) -> tuple[list[int], dict[str, int] | None, bool, bool | None]:
    """:func:`text_blocks_one` through the separate forms (numba off, or a non-ASCII keyword table)."""
    nw, nc = cfg.n_word_hash, cfg.n_char_hash
    word, char = hash_ngrams_one(
        encoded, n_word=nw, n_char=nc, word_ngram_range=cfg.word_ngram_range, char_ngram_range=cfg.char_ngram_range,
        seed=cfg.seed,
    )
    row[:nw] = word
    row[nw : nw + nc] = char
    if groups is None:
        return [], None, False, None
    totals = [0] * groups.n_groups
    for k, c in zip(groups.group_of.tolist(), substring_counts_one(lowered, encoded, groups.table), strict=True):
        totals[k] += c
    return totals, prompt_stats_one(lowered, keyword_totals=(totals[0], totals[1])), False, None

"""Which privacy rules can possibly hit a text: one compiled pass instead of ~23 rule scans.

Every rule of :mod:`router_rl.features.privacy_rules` declares a necessary condition for a hit:

* token rules (grouped by first byte, :data:`~router_rl.features.privacy_rules.TOKEN_ANY_PATTERNS`):
  the literal heads every match starts with (:func:`~router_rl.features.privacy_rules.literal_heads`,
  read from the parsed patterns, so a head can never be missing from a text that matches);
* context rules: :attr:`~router_rl.features.privacy_rules.ContextRule.needs` (the literal their
  patterns or candidate searches start with) or ``needs_shape`` (the scan's own first exit, or
  for e-mail ``@`` followed by a domain character, which ``_EMAIL_AT`` requires; with both, both
  must hold: an assignment needs a keyword literal *and* ``"assign_op"``, a name holding the
  keyword followed by an optional quote, blanks and ``:`` / ``=``, or a ``--`` flag somewhere,
  which every accepted ``_ASSIGN`` match has).

:func:`rule_mask` evaluates all of them in one linear pass (the numba kernel of
:func:`router_rl.features._kernels.prefilter_mask`); a rule whose bit is clear is skipped, so the
detections are exactly those of the unfiltered scan (``tests/features/test_feat_privacy_prefilter.py``
checks that on the privacy corpus and on random and adversarial texts). Without numba
(``ROUTER_RL_NUMBA=0``) every bit is set: every rule runs, as before the prefilter.
:func:`mask_reference` computes the same bits as the kernel with ``in`` tests (its twin, tested).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np

from router_rl.features.jit import compiled
from router_rl.features.privacy_rules import _ALNUM, CONTEXT_RULES, TOKEN_ANY_PATTERNS

#: Bit of token group ``g`` is ``g``; bit of context rule ``k`` is ``CONTEXT_BASE + k``.
CONTEXT_BASE: Final = len(TOKEN_ANY_PATTERNS)
#: Every rule bit set (the mask without numba).
ALL_RULES: Final = (1 << (CONTEXT_BASE + len(CONTEXT_RULES))) - 1
_VIEWS: Final = ("ab", "lab")
_B64: Final = frozenset(_ALNUM + b"/+")
#: What may follow the ``@`` of an e-mail address (``_EMAIL_AT`` of privacy_rules, on ``lab``).
_EMAIL_NEXT: Final = frozenset(_ALNUM + b"-")
#: A secret-like name's characters (``_ASSIGN``'s keyword and tail class, on ``lab``).
_NAME_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")

_kernel = compiled("router_rl.features._kernels", "prefilter_mask")


@dataclass(frozen=True)
class Literal:
    """One literal of the prefilter: ``text`` in view ``view`` (0 ``ab``, 1 ``lab``) sets ``bit``."""

    view: int
    text: bytes
    bit: int


def literals() -> tuple[Literal, ...]:
    """Every literal condition of the rules (see the module docstring)."""
    out = [Literal(0, h, g) for g, (heads, _) in enumerate(TOKEN_ANY_PATTERNS) for h in heads]
    for k, rule in enumerate(CONTEXT_RULES):
        out += [Literal(_VIEWS.index(v), lit, CONTEXT_BASE + k) for v, lit in rule.needs]
    if any(not lit.text for lit in out):
        raise ValueError("privacy prefilter: an empty literal (a rule without a usable head)")
    return tuple(out)


def _shape_bit(shape: str) -> int:
    bits = [CONTEXT_BASE + k for k, r in enumerate(CONTEXT_RULES) if r.needs_shape == shape]
    return bits[0] if bits else -1


def always_run() -> int:
    """Bits of the context rules with no condition (they always run)."""
    return sum(1 << (CONTEXT_BASE + k) for k, r in enumerate(CONTEXT_RULES) if not r.needs and not r.needs_shape)


@functools.lru_cache(maxsize=1)
def _table() -> tuple[object, ...]:
    """Flat arrays of :func:`literals` with a first-byte index per view (built on first use)."""
    known = {"", "b64_run_40", "card_digits", "email_at", "assign_op"}
    for r in CONTEXT_RULES:
        if r.needs_shape not in known:
            raise ValueError(f"privacy prefilter: rule {r.name!r} has unknown needs_shape {r.needs_shape!r}")
    lits = literals()
    flat = b"".join(lit.text for lit in lits)
    start = np.cumsum([0] + [len(lit.text) for lit in lits[:-1]]).astype(np.int64)
    order = sorted(range(len(lits)), key=lambda i: (lits[i].view, lits[i].text[0], i))
    first_ptr = np.zeros(2 * 256 + 1, dtype=np.int64)
    for i in order:
        first_ptr[lits[i].view * 256 + lits[i].text[0] + 1] += 1
    first_ptr = np.cumsum(first_ptr).astype(np.int64)
    bigram = np.zeros(2 * 65536, dtype=np.bool_)  # (view, first byte, second byte): a literal may start
    for lit in lits:
        row = lit.view * 65536 + lit.text[0] * 256
        if len(lit.text) == 1:
            bigram[row : row + 256] = True
        else:
            bigram[row + lit.text[1]] = True
    b64 = np.zeros(256, dtype=np.int64)  # byte classes: 1 base64, 2 digit (digits are both)
    b64[list(_B64)] = 1
    b64[list(b"0123456789")] = 3
    email = np.zeros(256, dtype=np.bool_)
    email[list(_EMAIL_NEXT)] = True
    return (
        np.frombuffer(flat, dtype=np.uint8).copy(),
        start,
        np.array([len(lit.text) for lit in lits], dtype=np.int64),
        np.array([lit.bit for lit in lits], dtype=np.int64),
        first_ptr,
        np.array(order, dtype=np.int64),
        np.packbits(bigram, bitorder="little"),
        b64,
        _shape_bit("b64_run_40"),
        _shape_bit("card_digits"),
        email,
        _shape_bit("email_at"),
        _shape_bit("assign_op"),
        np.array([c in _NAME_CHARS for c in range(256)], dtype=np.bool_),
    )


def rule_mask(ab: bytes, lab: bytes) -> int:
    """Bits of the rules that may hit the views ``(ab, lab)`` (:data:`ALL_RULES` without numba)."""
    kernel = _kernel()
    if kernel is None:
        return ALL_RULES
    return int(kernel(ab, lab, *_table())) | always_run_bits()


def prefilter_tables() -> tuple[object, ...]:
    """The kernel's table arguments after the two views (built once; the encoder's fused call passes them)."""
    return _table()


@functools.lru_cache(maxsize=1)
def always_run_bits() -> int:
    """:func:`always_run`, cached."""
    return always_run()


def _assign_possible_reference(lab: bytes, bit: int) -> bool:
    """The kernel's assignment condition, from each keyword occurrence (another algorithm, same answer)."""
    if b"--" in lab:
        return True
    n = len(lab)
    for lit in literals():
        if lit.bit != bit:
            continue
        p = lab.find(lit.text)
        while p >= 0:
            e = p
            while e < n and lab[e] in _NAME_CHARS:
                e += 1
            j = e + 1 if e < n and lab[e] in b"\"'" else e
            while j < n and lab[j] in b" \t":
                j += 1
            if j < n and lab[j] in b":=":
                return True
            p = lab.find(lit.text, p + 1)
    return False


def mask_reference(ab: bytes, lab: bytes) -> int:
    """The kernel's bits computed with ``in`` tests and counters (its twin, for the tests)."""
    views = (ab, lab)
    mask = 0
    for lit in literals():
        if lit.text in views[lit.view]:
            mask |= 1 << lit.bit
    run = best = 0
    for c in ab:
        run = run + 1 if c in _B64 else 0
        best = max(best, run)
    if best >= 40 and (b := _shape_bit("b64_run_40")) >= 0:
        mask |= 1 << b
    n_digits = sum(48 <= c <= 57 for c in ab)
    run4 = any(ab[i : i + 4].isdigit() and len(ab[i : i + 4]) == 4 for i in range(len(ab)))
    if n_digits >= 13 and run4 and (b := _shape_bit("card_digits")) >= 0:
        mask |= 1 << b
    at = any(lab[i] == 64 and lab[i + 1] in _EMAIL_NEXT for i in range(len(lab) - 1))
    if at and (b := _shape_bit("email_at")) >= 0:
        mask |= 1 << b
    b = _shape_bit("assign_op")
    if b >= 0 and mask >> b & 1 and not _assign_possible_reference(lab, b):
        mask &= ~(1 << b)
    return mask | always_run()

"""Detect secrets and personal data in prompt text (the live router forces local-only models on a hit).

Findings carry the kind and the character span, never the matched text, so they are safe to log.
The rules live in :mod:`router_rl.features.privacy_rules` (kinds, sources and the linear-time
argument are documented there and in ``docs/features.md``).

Scan rule (:data:`SCAN_RULE`): the whole text is scanned, however long; there is no cap, and no
part of a request is ever left unscanned. Every rule is linear in the text length (no input makes
any pattern backtrack quadratically), so the cost of a scan is proportional to its size: callers
that may receive megabytes (the live router) should run it off their event loop for large texts;
:data:`LARGE_TEXT_CHARS` is the size above which that is advised.

Kinds: ``aws_access_key``, ``aws_secret_key`` (labelled, or a random-looking 40-char run on its
own), ``api_key`` (OpenAI / Anthropic ``sk-``, Google ``AIza``, Slack ``xox?-``), ``github_token``,
``gitlab_token``, ``stripe_key``, ``slack_webhook``, ``google_oauth``, ``npm_token``,
``pypi_token``, ``huggingface_token``, ``sendgrid_key``, ``twilio_key``, ``shopify_token``,
``digitalocean_token``, ``databricks_token``, ``square_token``, ``age_secret_key``,
``azure_storage_key``, ``jwt``, ``private_key``, ``bearer_token``, ``basic_auth``, ``password``
(assignments to password-like names, quoted or not, URL query parameters, ``mysql -pX``),
``secret_assignment``, ``env_secret``, ``url_credentials``, ``email``, ``credit_card``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from router_rl.features.privacy_prefilter import CONTEXT_BASE, always_run_bits, rule_mask
from router_rl.features.privacy_rules import CONTEXT_RULES, TOKEN_ANY_PATTERNS, TOKEN_RULES, Hit

#: The per-request scan rule, as documented (also in ``docs/features.md``).
SCAN_RULE: Final = "scan-all-linear"
#: Texts longer than this (characters) take > ~1 ms to scan; run such scans off an event loop.
LARGE_TEXT_CHARS: Final = 64 * 1024


@dataclass(frozen=True)
class Finding:
    """One sensitive span; ``repr`` never shows the text itself.

    Attributes:
        kind: What was found (``aws_access_key``, ``email``, ...).
        start: Start offset (code points) in the scanned text.
        end: End offset (exclusive).
    """

    kind: str
    start: int
    end: int

    def __repr__(self) -> str:
        return f"Finding(kind={self.kind!r}, span=({self.start}, {self.end}))"


def _views(text: str) -> tuple[bytes, bytes]:
    """``(ab, lab)``: one byte per code point (non-ASCII -> ``?``), and its ASCII lower case."""
    ab = text.encode("ascii", "replace")
    return ab, ab.lower()


def _hits(text: str) -> Iterator[Hit]:
    ab, lab = _views(text)
    mask = rule_mask(ab, lab)  # rules that cannot hit are skipped (privacy_prefilter)
    for rule, groups in zip(TOKEN_RULES, _token_groups(), strict=True):
        for pat, g in zip(rule.patterns, groups, strict=True):
            if mask >> g & 1:
                for m in pat.finditer(ab):
                    yield rule.kind, m.start(), m.end()
    for k, crule in enumerate(CONTEXT_RULES):
        if mask >> (CONTEXT_BASE + k) & 1 and crule.applies(lab):
            yield from crule.scan(ab, lab)


def _any_hit(text: str) -> bool:
    ab, lab = _views(text)
    return _any_hit_masked(ab, lab, rule_mask(ab, lab))


def sensitive_given_mask(ab: bytes, lab: bytes, kernel_mask: int) -> bool:
    """:func:`is_sensitive` of the text whose views are ``(ab, lab)``, its prefilter kernel's mask already computed.

    The encoder's one-row path runs the prefilter inside its fused text kernel
    (:func:`router_rl.features._kernels.encode_text_row`); the rules it leaves possible run here.
    """
    return _any_hit_masked(ab, lab, kernel_mask | always_run_bits())


def _any_hit_masked(ab: bytes, lab: bytes, mask: int) -> bool:
    if not mask:
        return False
    for g, (_, pat) in enumerate(TOKEN_ANY_PATTERNS):
        if mask >> g & 1 and pat.search(ab) is not None:
            return True
    for k, crule in enumerate(CONTEXT_RULES):
        if mask >> (CONTEXT_BASE + k) & 1 and crule.applies(lab) and next(crule.scan(ab, lab), None) is not None:
            return True
    return False


@functools.lru_cache(maxsize=1)
def _token_groups() -> tuple[tuple[int, ...], ...]:
    """Per token rule, the prefilter bit (first-byte group) of each of its patterns."""
    first = [pat.pattern[:1] for _, pat in TOKEN_ANY_PATTERNS]
    return tuple(tuple(first.index(p[:1]) for p in rule.prefixes) for rule in TOKEN_RULES)


def detect_sensitive(text: str | None) -> list[Finding]:
    """All sensitive spans in ``text``, sorted by start (overlaps between kinds are kept).

    The whole text is scanned in time linear in its length (see :data:`SCAN_RULE`).

    Args:
        text: Prompt or message text (``None`` -> no findings).

    Returns:
        Findings with kind and span only.

    Raises:
        TypeError: ``text`` is not a string.
    """
    if text is None:
        return []
    if not isinstance(text, str):
        raise TypeError(f"detect_sensitive: expected a str or None, got {type(text).__name__}")
    if not text:
        return []
    found = [Finding(k, s, e) for k, s, e in _hits(text)]
    found.sort(key=lambda f: (f.start, f.end, f.kind))
    return found


def is_sensitive(text: str | None) -> bool:
    """True when :func:`detect_sensitive` would find anything (stops at the first hit)."""
    if text is None:
        return False
    if not isinstance(text, str):
        raise TypeError(f"is_sensitive: expected a str or None, got {type(text).__name__}")
    if not text:
        return False
    return _any_hit(text)


def is_sensitive_any(texts: Iterable[str | None]) -> bool:
    """True when any of ``texts`` is sensitive (every text is scanned separately, none is skipped).

    Scanning separately matters: joining texts could create or break a match across the join.
    """
    return any(is_sensitive(t) for t in texts)


def redact(text: str, findings: list[Finding] | None = None) -> str:
    """``text`` with every sensitive span replaced by ``[REDACTED:<kind>]`` (overlapping spans merged)."""
    fs = detect_sensitive(text) if findings is None else sorted(findings, key=lambda f: (f.start, f.end))
    merged: list[list[Any]] = []
    for f in fs:
        if merged and f.start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], f.end)
        else:
            merged.append([f.start, f.end, f.kind])
    out: list[str] = []
    pos = 0
    for start, end, kind in merged:
        out.append(text[pos:start])
        out.append(f"[REDACTED:{kind}]")
        pos = end
    out.append(text[pos:])
    return "".join(out)

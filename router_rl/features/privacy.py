"""Detect secrets and personal data in prompt text (the live router forces local-only models on a hit).

Findings carry the kind and the character span, never the matched text, so they are safe to log.

Detected kinds (see ``docs/features.md`` for the exact rules and the false-positive policy):

``aws_access_key``   ``AKIA``/``ASIA`` + 16 upper-case alphanumerics
``aws_secret_key``   ``aws_secret_access_key`` = 40-char base64-ish value
``api_key``          ``sk-...`` (OpenAI/Anthropic style), ``AIza...`` (Google), ``xox?-`` (Slack)
``github_token``     ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` + 36 chars, ``github_pat_...``
``bearer_token``     ``Bearer <20+ token chars>`` (HTTP Authorization headers)
``jwt``              three base64url segments starting ``eyJ``
``private_key``      ``-----BEGIN ... PRIVATE KEY-----``
``password``         a password-like name assigned a *quoted literal* (``password = "hunter22"``,
                     ``"passwd": "..."``); ``password_field = form.get("password")`` is NOT flagged
``secret_assignment`` a secret-like name (``api_key``, ``secret``, ``token``...) assigned a quoted
                     literal of >= 16 token characters
``env_secret``       ``.env`` style line ``NAME_WITH_SECRET|PASSWORD|TOKEN|KEY=value`` (unquoted ok)
``url_credentials``  ``scheme://user:password@host``
``email``            e-mail addresses, except reserved example domains (example.com/.org/.net,
                     ``*.test``, ``*.example``, ``*.invalid``, ``localhost``) and ``git@host`` SSH remotes
``credit_card``      13-19 digits (spaces/dashes allowed) that pass the Luhn check and start 2-6

Placeholders are not secrets: values starting with ``$``, ``{``, ``<``, ``%`` or made of one
repeated character (``****``, ``xxxx``) are ignored by the assignment rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final


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


#: Not a placeholder: no leading ``$ < { %`` and not one repeated character up to the closing quote.
_PLACEHOLDER: Final = r"(?![$<{%])(?!(?P<rep>.)(?P=rep)*(?P=q))"

_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "aws_secret_key",
        re.compile(r"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),
    ),
    ("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}")),
    (
        "api_key",
        re.compile(
            r"(?<![\w-])sk-(?:proj-|ant-(?:api\d\d-)?|live_|test_)?[A-Za-z0-9_-]{20,}"
            r"|\bAIza[0-9A-Za-z_-]{35}\b"
            r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
        ),
    ),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    (
        "password",
        re.compile(
            r"(?i)[\"']?\b\w*(?:password|passwd|pwd|passphrase)\w*[\"']?\s*(?::|=|:=|=>)\s*"
            rf"(?P<q>[\"']){_PLACEHOLDER}[^\"'\s]{{4,}}(?P=q)"
        ),
    ),
    (
        "secret_assignment",
        re.compile(
            r"(?i)[\"']?\b\w*(?:api[_-]?key|apikey|secret|token|access[_-]?key|auth[_-]?key|client[_-]?secret)"
            r"\w*[\"']?\s*(?::|=|:=|=>)\s*"
            rf"(?P<q>[\"']){_PLACEHOLDER}[A-Za-z0-9_\-./+=]{{16,}}(?P=q)"
        ),
    ),
    (
        "env_secret",
        re.compile(
            r"(?m)^[ \t]*(?:export[ \t]+)?[A-Z][A-Z0-9_]*"
            r"(?:SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS)[A-Z0-9_]*"
            r"[ \t]*=[ \t]*[\"']?(?![$<{%])(?!(?P<rep>.)(?P=rep)*[\"']?[ \t]*$)[^\s\"'#]{6,}"
        ),
    ),
    ("url_credentials", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:(?![$<{%])[^\s:/@]{3,}@[\w.-]+")),
)

_EMAIL: Final = re.compile(r"\b(?<![\w.%+-])(?!git@)[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b")
_RESERVED_EMAIL_DOMAINS: Final = ("example.com", "example.org", "example.net", "localhost")
_RESERVED_EMAIL_TLDS: Final = (".test", ".example", ".invalid", ".localhost")
_CARD: Final = re.compile(r"(?<![\d.-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d-])")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _email_ok(domain: str) -> bool:
    d = domain.lower()
    return not (
        d in _RESERVED_EMAIL_DOMAINS
        or any(d.endswith("." + r) for r in _RESERVED_EMAIL_DOMAINS)
        or d.endswith(_RESERVED_EMAIL_TLDS)
    )


def detect_sensitive(text: str | None) -> list[Finding]:
    """All sensitive spans in ``text``, sorted by start (overlaps between kinds are kept).

    Args:
        text: Prompt or message text (``None`` -> no findings).

    Returns:
        Findings with kind and span only.
    """
    if not text:
        return []
    found: list[Finding] = []
    for kind, pat in _PATTERNS:
        found.extend(Finding(kind, m.start(), m.end()) for m in pat.finditer(text))
    if "@" in text:
        found.extend(Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text) if _email_ok(m.group(1)))
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group(0))
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            found.append(Finding("credit_card", m.start(), m.end()))
    found.sort(key=lambda f: (f.start, f.end, f.kind))
    return found


def is_sensitive(text: str | None) -> bool:
    """True when :func:`detect_sensitive` would find anything (stops at the first hit)."""
    if not text:
        return False
    if any(pat.search(text) for _, pat in _PATTERNS):
        return True
    if "@" in text and any(_email_ok(m.group(1)) for m in _EMAIL.finditer(text)):
        return True
    return any(_luhn_ok(re.sub(r"[ -]", "", m.group(0))) for m in _CARD.finditer(text) if _card_len_ok(m.group(0)))


def _card_len_ok(s: str) -> bool:
    return 13 <= sum(c.isdigit() for c in s) <= 19


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

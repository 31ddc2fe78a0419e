"""The rules of the privacy detector (:mod:`router_rl.features.privacy`), each linear-time by construction.

(Over 500 lines on purpose: one rule table with the linear-time audit of each rule next to it.)

Every rule runs on two byte views of the text that keep code-point offsets: ``ab`` (the text
encoded as ASCII with each non-ASCII code point replaced by ``?``, one byte per code point) and
``lab`` (``ab`` lower-cased). Spans found in them are spans of the original ``str``.

Why each rule is linear (audited, and pinned by ``tests/features/test_feat_privacy_linear.py``):

* Every pattern starts with a literal (or a small set of literals), so ``re`` skips to candidate
  positions in C and never starts an attempt elsewhere; case-insensitive rules run on ``lab``
  instead of using ``(?i)``, which would disable that literal search.
* Every quantifier after the literal is bounded (``{m,N}``, N <= 8,192), and runs of one character
  class are possessive (``{m,N}+``) or followed by a character outside the class, so one attempt
  costs at most O(N) and there is no backtracking between adjacent runs.
* Context that a regex would need a variable-width look-behind for (the name before a keyword, the
  scheme before ``://``, the local part before ``@``) is read by Python from a bounded window
  (<= 64 bytes) before the match, reversed, with an anchored ``match``.
* Rules that would have no literal anchor (an AWS secret key without its label, a card number)
  first find candidate runs with ``bytes.translate`` + ``bytes.find`` (C, linear) and only then
  look at those runs.

So a scan is O(number of rules x text length x N) in the worst case and O(text length) in the
typical case, with no input making any rule quadratic.

Pattern families and where they come from (credited; patterns re-written here, not copied):
gitleaks default rules (``config/gitleaks.toml``: aws-access-token, github-pat / -fine-grained-pat /
-oauth / -app-token / -refresh-token, gitlab-pat / -ptt / -rrt, slack-bot / -user / -app-token /
-webhook-url, stripe-access-token, gcp-api-key, openai-api-key, anthropic-api-key, npm-access-token,
pypi-upload-token, huggingface-access-token, sendgrid-api-token, twilio-api-key, shopify tokens,
digitalocean tokens, databricks-api-token, telegram-bot-api-token, mailchimp-api-key,
square-access-token, age-secret-key, jwt, private-key, generic-api-key with its entropy > 3.5
criterion) and Yelp's detect-secrets plugins (AWSKeyDetector, AzureStorageKeyDetector,
BasicAuthDetector, JwtTokenDetector, KeywordDetector, PrivateKeyDetector, Base64HighEntropyString
with its Shannon-entropy criterion).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

#: ``(kind, start, end)`` in code points.
Hit = tuple[str, int, int]


def shannon_entropy(s: bytes) -> float:
    """Shannon entropy in bits per symbol of ``s`` (0 for an empty string)."""
    n = len(s)
    if n == 0:
        return 0.0
    counts: dict[int, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def _table(chars: bytes, hit: bytes = b"x", miss: bytes = b" ") -> bytes:
    t = bytearray(miss * 256)
    for c in chars:
        t[c] = hit[0]
    return bytes(t)


_ALNUM: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_B64_CLASS: Final = _table(_ALNUM + b"/+")
_IS_ALNUM: Final = frozenset(_ALNUM)
_IS_WORD: Final = frozenset(_ALNUM + b"_")
_IS_TOKEN: Final = frozenset(_ALNUM + b"_-")
_IS_LOWER: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz")


def _before(ab: bytes, pos: int) -> int:
    """The byte before ``pos`` (``-1`` at the start)."""
    return ab[pos - 1] if pos > 0 else -1


@dataclass(frozen=True)
class TokenRule:
    """A fixed-shape token found by a literal-prefixed pattern on ``ab`` (case-sensitive).

    Attributes:
        kind: Finding kind.
        patterns: Bytes patterns, each starting with one literal (one pattern per literal keeps
            ``re``'s literal search; an alternation of literals would not); all quantifiers bounded; the "not glued to
            a longer word" check is a look-behind placed *after* the literal, so ``re`` keeps its
            fast literal search and rejects a glued candidate in O(1).
        source: Where the pattern family comes from (credited in the docs).
        prefixes: The literal each pattern starts with (the adversarial tests repeat them).
    """

    kind: str
    patterns: tuple[re.Pattern[bytes], ...]
    source: str
    prefixes: tuple[bytes, ...] = ()
    branches: tuple[bytes, ...] = ()
    #: Per pattern, literals one of which starts every match (:func:`literal_heads`).
    heads: tuple[tuple[bytes, ...], ...] = ()

    def scan(self, ab: bytes, lab: bytes) -> Iterator[Hit]:
        """Yield the hits of this rule."""
        for pat in self.patterns:
            for m in pat.finditer(ab):
                yield self.kind, m.start(), m.end()


#: At most this many literal heads per pattern (a longer expansion stops at the shorter heads).
MAX_HEADS: Final = 32


def literal_heads(src: bytes) -> tuple[bytes, ...]:
    """Literals one of which every match of the (case-sensitive) pattern ``src`` starts with.

    Read from the parsed pattern: leading literals, small character sets of literals and
    alternations of those are expanded (at most :data:`MAX_HEADS` heads), zero-width assertions
    are skipped, and the expansion stops at the first other item. So ``h in text`` for no head
    ``h`` proves the pattern has no match (the privacy scan's prefilter; a head that is a
    substring of another is enough, so only the minimal ones are kept).
    """
    import importlib

    c: Any = importlib.import_module("re._constants")  # the parser of ``re`` itself (private, stable in 3.11+)
    sre_parse: Any = importlib.import_module("re._parser")

    def heads(items: Any) -> tuple[set[bytes], bool]:
        cur = {b""}
        for op, av in items:
            if op in (c.ASSERT, c.ASSERT_NOT):
                continue  # zero width
            if op is c.LITERAL:
                cur = {h + bytes([av]) for h in cur}
                continue
            if op is c.IN and all(o is c.LITERAL for o, _ in av):
                alts, complete = {bytes([v]) for _, v in av}, True
            elif op is c.BRANCH:
                alts, complete = set(), True
                for branch in av[1]:
                    h, ok = heads(branch)
                    alts |= h
                    complete &= ok
            elif op is c.SUBPATTERN and not av[1] and not av[2]:
                alts, complete = heads(av[3])
            else:
                return cur, False
            if len(cur) * len(alts) > MAX_HEADS:
                return cur, False
            cur = {h + a for h in cur for a in alts}
            if not complete:
                return cur, False
        return cur, True

    pat = sre_parse.parse(src, re.DOTALL)
    if pat.state.flags & re.IGNORECASE:
        return (b"",)
    found, _ = heads(pat)
    minimal = sorted({h for h in found if not any(o != h and o in h for o in found)})
    return tuple(minimal) if minimal else (b"",)


_TOKEN_CLASS: Final = rb"A-Za-z0-9_\-"


def _branch(prefix: bytes, rest: bytes, boundary: bytes | None) -> bytes:
    """``prefix`` + a look-behind refusing a token glued to ``boundary`` chars + ``rest``."""
    lit = re.escape(prefix)
    if boundary is None:
        return lit + rest
    return lit + rb"(?<![" + boundary + rb"]" + rb"." * len(prefix) + rb")" + rest


def _tok(
    kind: str, branches: list[tuple[bytes, bytes]], source: str, boundary: bytes | None = _TOKEN_CLASS
) -> TokenRule:
    srcs = tuple(_branch(p, r, boundary) for p, r in branches)
    pats = tuple(re.compile(b, re.DOTALL) for b in srcs)
    return TokenRule(kind, pats, source, tuple(p for p, _ in branches), srcs, tuple(literal_heads(b) for b in srcs))


_GH: Final = rb"_[A-Za-z0-9]{36,255}+"
_AWS_ID: Final = rb"[A-Z0-9]{16}(?![A-Za-z0-9])"

#: Fixed-shape tokens (vendor prefixes). Each branch starts with a literal.
TOKEN_RULES: Final[tuple[TokenRule, ...]] = (
    _tok("aws_access_key", [(b"A", rb"(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])" + _AWS_ID)],
         "gitleaks aws-access-token; detect-secrets AWSKeyDetector", rb"A-Za-z0-9"),
    _tok("github_token", [(b"gh", rb"[pousr]" + _GH), (b"github_pat_", rb"[A-Za-z0-9_]{22,255}+")],
         "gitleaks github-pat/-oauth/-app-token/-refresh-token/-fine-grained-pat; detect-secrets GitHubTokenDetector"),
    _tok("gitlab_token", [(b"gl", rb"(?:pat|ptt|dt|rt|cbt|oas|imt|soat|ffct|agent)-[A-Za-z0-9_-]{20,255}+")],
         "gitleaks gitlab-pat/-ptt/-rrt/-deploy-token; detect-secrets GitLabTokenDetector"),
    _tok("api_key", [(b"sk-", rb"(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_-]{20,1024}+")],
         "gitleaks openai-api-key, anthropic-api-key; detect-secrets OpenAIDetector"),
    _tok("api_key", [(b"AIza", rb"[0-9A-Za-z_-]{35}")], "gitleaks gcp-api-key"),
    _tok("api_key", [(b"xox", rb"[abposr]-[A-Za-z0-9-]{10,255}+"), (b"xapp-", rb"\d-[A-Za-z0-9-]{10,255}+")],
         "gitleaks slack-bot-token/-user-token/-app-token; detect-secrets SlackDetector"),
    _tok("slack_webhook", [(b"hooks.slack.com/", rb"(?:services|workflows|triggers)/[A-Za-z0-9_/]{20,255}+")],
         "gitleaks slack-webhook-url", None),
    _tok("google_oauth", [(b"GOCSPX-", rb"[A-Za-z0-9_-]{28}"), (b"ya29.", rb"[0-9A-Za-z_-]{20,1024}+")],
         "gitleaks gcp client secret / oauth access token"),
    _tok("stripe_key", [(p, rb"_(?:live|test|prod)_[A-Za-z0-9]{10,255}+") for p in (b"sk", b"rk")],
         "gitleaks stripe-access-token; detect-secrets StripeDetector"),
    _tok("npm_token", [(b"npm_", rb"[A-Za-z0-9]{36}(?![A-Za-z0-9])")],
         "gitleaks npm-access-token; detect-secrets NpmDetector"),
    _tok("pypi_token", [(b"pypi-AgEIcHlwaS5vcmc", rb"[A-Za-z0-9_-]{50,1024}+")],
         "gitleaks pypi-upload-token; detect-secrets PypiTokenDetector"),
    _tok("huggingface_token", [(b"hf_", rb"[A-Za-z0-9]{34}(?![A-Za-z0-9])")], "gitleaks huggingface-access-token"),
    _tok("sendgrid_key", [(b"SG.", rb"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")],
         "gitleaks sendgrid-api-token; detect-secrets SendGridDetector"),
    _tok("twilio_key", [(b"SK", rb"[0-9a-fA-F]{32}(?![A-Za-z0-9])")],
         "gitleaks twilio-api-key; detect-secrets TwilioKeyDetector"),
    _tok("shopify_token", [(b"shp", rb"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}")], "gitleaks shopify-access-token etc."),
    _tok("digitalocean_token", [(b"do", rb"[por]_v1_[a-f0-9]{64}")], "gitleaks digitalocean-pat/-access-token"),
    _tok("databricks_token", [(b"dapi", rb"[a-f0-9]{32}(?![A-Za-z0-9])")], "gitleaks databricks-api-token"),
    _tok("square_token", [(b"sq0", rb"(?:atp|csp)-[0-9A-Za-z_-]{22,60}+"), (b"EAAA", rb"[0-9A-Za-z_-]{60}")],
         "gitleaks square-access-token/-secret; detect-secrets SquareOAuthDetector"),
    _tok("age_secret_key", [(b"AGE-SECRET-KEY-1", rb"[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}")],
         "gitleaks age-secret-key"),
    _tok("azure_storage_key", [(b"AccountKey=", rb"[A-Za-z0-9+/]{86}=="),
                               (b"SharedAccessKey=", rb"[A-Za-z0-9+/]{43}=")],
         "detect-secrets AzureStorageKeyDetector", None),
    _tok("jwt", [(b"eyJ", rb"[A-Za-z0-9_-]{8,4096}+\.eyJ[A-Za-z0-9_-]{8,8192}+\.[A-Za-z0-9_-]{8,4096}+")],
         "gitleaks jwt; detect-secrets JwtTokenDetector"),
)



def _grouped_by_first_byte(rules: tuple[TokenRule, ...]) -> tuple[tuple[tuple[bytes, ...], re.Pattern[bytes]], ...]:
    """One pattern per first byte: ``c(?:rest1|rest2|...)`` (a single-byte literal prefix each).

    Used by :func:`~router_rl.features.privacy.is_sensitive`: it finds a match whenever any
    member pattern has one (the leftmost position where some branch matches), with ~14 scans of
    the text instead of ~35. :func:`~router_rl.features.privacy.detect_sensitive` keeps the
    separate patterns, which also report overlapping matches of different families.
    """
    groups: dict[int, list[bytes]] = {}
    group_heads: dict[int, set[bytes]] = {}
    for r in rules:
        for prefix, src, hs in zip(r.prefixes, r.branches, r.heads, strict=True):
            lit = re.escape(prefix[:1])
            assert src.startswith(lit), (prefix, src)
            groups.setdefault(prefix[0], []).append(src[len(lit) :])
            group_heads.setdefault(prefix[0], set()).update(hs)
    out = []
    for c, rests in groups.items():
        found = group_heads[c]
        minimal = tuple(sorted(h for h in found if not any(o != h and o in h for o in found)))
        out.append((minimal, re.compile(re.escape(bytes([c])) + b"(?:" + b"|".join(rests) + b")", re.DOTALL)))
    return tuple(out)


#: :data:`TOKEN_RULES` grouped by first byte, each with its literal heads (the boolean fast path:
#: a group runs only when one of its heads occurs).
TOKEN_ANY_PATTERNS: Final = _grouped_by_first_byte(TOKEN_RULES)

# --- rules that read context around a literal anchor --------------------------------------------

_PEM_BEGIN: Final = (
    re.compile(rb"-----BEGIN [A-Z0-9 ]{0,48}?PRIVATE KEY(?: BLOCK)?-----"),
    re.compile(rb"PuTTY-User-Key-File-\d: "),
)
_PEM_END: Final = (
    re.compile(rb"-----END [A-Z0-9 ]{0,48}?PRIVATE KEY(?: BLOCK)?-----"),
    re.compile(rb"Private-MAC: [0-9a-f]{1,128}+"),
)


def scan_private_keys(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """PEM / PGP / OpenSSH / PuTTY private keys; the span reaches the END line when there is one.

    (gitleaks private-key; detect-secrets PrivateKeyDetector.) END markers are collected once, so
    each BEGIN costs a binary search, not a scan.
    """
    begins = [m for pat in _PEM_BEGIN for m in pat.finditer(ab)]
    if not begins:
        return
    ends = sorted(m.end() for pat in _PEM_END for m in pat.finditer(ab))
    import bisect

    for m in begins:
        k = bisect.bisect_left(ends, m.end())
        yield "private_key", m.start(), ends[k] if k < len(ends) else m.end()


_URL_CRED: Final = re.compile(rb"://([^\s:/@?#\"'<>]{0,128}+):([^\s/@?#\"'<>]{1,256}+)@(?=[A-Za-z0-9\[_-])")
_SCHEME_REV: Final = re.compile(rb"[a-z0-9+.-]{0,31}[a-z]")


def scan_url_credentials(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """``scheme://user:password@host`` (connection strings of every database / broker / VCS)."""
    for m in _URL_CRED.finditer(lab):
        pw = lab[m.start(2) : m.end(2)]
        if pw[:1] in (b"$", b"<", b"{", b"%") or _is_repeated(pw):
            continue
        s = m.start()
        rev = _SCHEME_REV.match(lab[max(0, s - 32) : s][::-1])
        if rev is None:
            continue
        yield "url_credentials", s - rev.end(), m.end()


_EMAIL_AT: Final = re.compile(rb"@((?:[A-Za-z0-9-]{1,63}\.){1,32}[A-Za-z]{2,24})(?![A-Za-z0-9_])")
_LOCAL_REV: Final = re.compile(rb"[A-Za-z0-9._%+-]{1,64}")
_RESERVED_EMAIL_DOMAINS: Final = (b"example.com", b"example.org", b"example.net", b"localhost")
_RESERVED_EMAIL_TLDS: Final = (b".test", b".example", b".invalid", b".localhost")


def _email_domain_ok(d: bytes) -> bool:
    return not (
        d in _RESERVED_EMAIL_DOMAINS
        or any(d.endswith(b"." + r) for r in _RESERVED_EMAIL_DOMAINS)
        or d.endswith(_RESERVED_EMAIL_TLDS)
    )


def scan_emails(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """E-mail addresses (PII), except reserved documentation domains and ``git@host`` remotes."""
    for m in _EMAIL_AT.finditer(lab):
        at = m.start()
        rev = _LOCAL_REV.match(lab[max(0, at - 64) : at][::-1])
        if rev is None:
            continue
        start = at - rev.end()
        if lab[start:at] == b"git" or not _email_domain_ok(m.group(1)):
            continue
        yield "email", start, m.end()


_CARD: Final = re.compile(rb"[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d-])")
_CARD_BEFORE: Final = frozenset(b"0123456789.-")
_DIGITS_DELETE: Final = bytes(c for c in range(256) if not 48 <= c <= 57)


def _luhn_ok(digits: bytes) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ch - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_DIGIT_CLASS: Final = _table(b"0123456789", b"d", b" ")


def scan_cards(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """Payment card numbers: 13-19 digits (single spaces / dashes allowed), first digit 2-6, Luhn-valid.

    Cheap exits first: fewer than 13 digits in all, or no run of 4 digits (a card starts with one).
    """
    if len(ab.translate(None, _DIGITS_DELETE)) < 13 or b"dddd" not in ab.translate(_DIGIT_CLASS):
        return
    for m in _CARD.finditer(ab):
        if _before(ab, m.start()) in _CARD_BEFORE:
            continue
        digits = m.group(0).replace(b" ", b"").replace(b"-", b"")
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            yield "credit_card", m.start(), m.end()


def scan_aws_secret_unlabelled(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """A 40-character base64-ish run on its own that looks random: an AWS secret access key.

    (detect-secrets Base64HighEntropyString's criterion narrowed to AWS's shape.) Candidates are
    runs of exactly 40 ``[A-Za-z0-9/+]`` not glued to ``_`` or ``-`` (nor followed by ``=``
    padding: then it is part of a longer base64 blob); a candidate needs an
    upper-case letter, a lower-case letter and a digit, and Shannon entropy >= 4.0 bits per
    character (random keys average ~4.9; English words and paths stay well below).
    """
    t = ab.translate(_B64_CLASS)
    pos = t.find(b"x" * 40)
    while pos >= 0:
        start = t.rfind(b" ", 0, pos) + 1
        end = t.find(b" ", pos)
        end = len(t) if end < 0 else end
        if end - start == 40 and ab[start - 1 : start] not in (b"_", b"-") and ab[end : end + 1] not in (
            b"=",
            b"_",
            b"-",
        ):
            cand = ab[start:end]
            if _looks_random(cand, 4.0):
                yield "aws_secret_key", start, end
        pos = t.find(b"x" * 40, end)


def _looks_random(v: bytes, min_entropy: float) -> bool:
    has_up = any(65 <= c <= 90 for c in v)
    has_low = any(97 <= c <= 122 for c in v)
    has_dig = any(48 <= c <= 57 for c in v)
    return has_up and has_low and has_dig and shannon_entropy(v) >= min_entropy


_AWS_LABELLED: Final = re.compile(
    rb"aws_?secret_?(?:access_?)?key[\"']?[ \t]{0,8}+[:=][ \t]{0,8}+[\"']?+([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
)


def scan_aws_secret_labelled(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """``aws_secret_access_key = <40 base64 chars>`` (any case; detect-secrets AWSKeyDetector)."""
    for m in _AWS_LABELLED.finditer(lab):
        yield "aws_secret_key", m.start(), m.end()


_BEARER: Final = re.compile(rb"bearer[ \t]{1,8}+[a-z0-9._~+/-]{20,4096}+=*+")
_BASIC: Final = re.compile(rb"basic[ \t]{1,8}+([A-Za-z0-9+/]{8,1024}+={0,2})")


def scan_auth_headers(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """``Bearer <token>`` and ``Basic <base64(user:password)>`` (detect-secrets BasicAuthDetector)."""
    for m in _BEARER.finditer(lab):
        if _before(lab, m.start()) not in _IS_WORD:
            yield "bearer_token", m.start(), m.end()
    for m in _BASIC.finditer(lab):
        if _before(lab, m.start()) in _IS_WORD:
            continue
        raw = ab[m.start(1) : m.end(1)]
        if len(raw) % 4:
            continue
        try:
            dec = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            continue
        if b":" in dec and dec.index(b":") > 0 and all(32 <= c < 127 for c in dec):
            yield "basic_auth", m.start(), m.end()


_PW_VALUE: Final = re.compile(rb"'[^'\n]{1,128}'|\"[^\"\n]{1,128}\"|[^\s'\"-][^\s'\"]{0,127}")
#: Clients whose ``-p`` takes the password glued to it (``-p SECRET`` with a space prompts instead).
_CLI_GLUED: Final = (b"mysql", b"mariadb")
_CLI_WINDOW: Final = 256


def _occurrences(view: bytes, lit: bytes) -> list[int]:
    out = []
    i = view.find(lit)
    while i >= 0:
        out.append(i)
        i = view.find(lit, i + 1)
    return out


def scan_cli_passwords(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """``mysql ... -pSECRET`` (password glued to ``-p``; ``-P`` is a port) and ``sshpass -p SECRET``.

    A client name, then within 256 bytes of the same line a `` -p`` followed by a value. Both
    positions are walked with monotonic pointers (each byte is looked at a bounded number of
    times however many client names or ``-p`` flags the text repeats).
    """
    flags = [i for i in _occurrences(ab, b"-p") if i > 0 and ab[i - 1] in b" \t"]
    if not flags:
        return
    for lit, glued in ((b"mysql", True), (b"mariadb", True), (b"sshpass", False)):
        j = 0
        last_end = -1
        for i in _occurrences(ab, lit):
            if i < last_end or _before(ab, i) in _IS_WORD:
                continue
            while j < len(flags) and flags[j] <= i:
                j += 1
            k = j
            while k < len(flags) and flags[k] - i <= _CLI_WINDOW:
                f = flags[k]
                if b"\n" in ab[i:f]:
                    break
                v = f + 2
                if not glued:
                    while v < len(ab) and ab[v] in b" \t" and v - f < 10:
                        v += 1
                m = _PW_VALUE.match(ab, v)
                if m is not None:
                    last_end = m.end()
                    yield "password", i, m.end()
                    break
                k += 1
                if k - j > 16:
                    break  # at most 16 flags looked at per client name (bounded work)


# --- assignments to secret-like names -----------------------------------------------------------

#: Keyword alternation (lower-case). ``pass`` alone only counts at the start of a name.
_ASSIGN: Final = re.compile(
    rb"(?P<kw>pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key"
    rb"|private[_-]?key|credentials?|signature|sig)"
    rb"(?P<tail>[a-z0-9_.-]{0,32}+)(?P<kq>[\"']?+)"
    rb"(?:[ \t]{0,8}+(?P<op>:=|=>|=|:)(?![=:])[ \t]{0,8}+|(?P<sp>[ \t]{1,8}+))"
    rb"(?:(?P<q>[\"'])(?P<qv>[^\"'\n]{1,512}+)(?P=q)|(?P<v>[^\s\"'`,;&#()\[\]{}<>|\\]{1,512}+))"
)
_NAME_REV: Final = re.compile(rb"[a-z0-9_.-]{0,40}")
_PASSWORD_KWS: Final = frozenset((b"pass", b"password", b"passwd", b"passphrase", b"pwd"))
_STOP_VALUES: Final = frozenset(
    b"none null nil true false str string bytes int bool any optional secretstr undefined required empty "
    b"self this yes no password passwd secret token value text char varchar hidden redacted masked "
    b"placeholder example dummy sensitive number integer object".split()
)
_CODE_ROOTS: Final = frozenset(
    b"self this cls os env process config settings cfg args opts options request req params props secrets "
    b"vault creds credentials conf app ctx context form data user input kwargs environ import_meta".split()
)
_DOTTED: Final = re.compile(rb"[A-Za-z_$][A-Za-z0-9_$]{0,64}(?:\.[A-Za-z_$][A-Za-z0-9_$]{0,64}){1,8}")
_VAR_REF: Final = frozenset(b"${@")
_IS_NAME_START: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz")


def _is_repeated(v: bytes) -> bool:
    """``****``, ``xxxx`` (two or more of one character)."""
    return len(v) > 1 and v.count(v[:1]) == len(v)


def _placeholder(v: bytes) -> bool:
    lv = v.lower()
    return (
        v[:1] in (b"$", b"<", b"{", b"%", b"*", b"[", b"(", b"?")
        or _is_repeated(v)
        or b"${" in v
        or b"{{" in v
        or lv.startswith((b"your", b"my_", b"my-", b"<", b"xxx", b"***", b"..."))
        or lv in _STOP_VALUES
    )


#: Literals every keyword of :data:`_ASSIGN` starts with (candidates are found with ``bytes.find``).
_KW_STARTS: Final = (
    b"pass", b"pwd", b"secret", b"token", b"api", b"access", b"auth", b"private", b"credential", b"sig"
)


def _assignment_matches(lab: bytes) -> Iterator[re.Match[bytes]]:
    """``_ASSIGN`` matches, non-overlapping, tried only where a keyword literal occurs.

    ``_ASSIGN.finditer`` would start an attempt at every ``p``/``s``/``t``/``a``/``c``; locating
    the literals with ``bytes.find`` (C, linear) and ``match``-ing there is ~10x cheaper and keeps
    each C call short.
    """
    cands: set[int] = set()
    for kw in _KW_STARTS:
        i = lab.find(kw)
        while i >= 0:
            cands.add(i)
            i = lab.find(kw, i + 1)
    last = 0
    for pos in sorted(cands):
        if pos < last:
            continue
        m = _ASSIGN.match(lab, pos)
        if m is not None:
            last = m.end()
            yield m


def scan_assignments(ab: bytes, lab: bytes) -> Iterator[Hit]:
    """Secret-like names assigned a value: ``password=x``, ``"api_key": "..."``, ``?token=...``.

    Kinds: ``password`` for password-like names (any non-placeholder value), ``secret_assignment``
    for other secret-like names (a quoted value of >= 16 token characters, or an unquoted value
    of >= 10 characters with letters and digits and Shannon entropy >= 3.0, or any value of >= 4
    characters in a URL query string), ``env_secret`` for upper-case ``.env`` lines
    (``DB_TOKEN=value``, >= 6 characters). Code that *reads* a secret is not flagged: a value
    followed by ``(`` or ``[``, a dotted path rooted at ``self``/``os``/``config``/``settings``...,
    a value naming the keyword itself (``password=password``), type names (``password: str``) and
    placeholders (``$VAR``, ``${VAR}``, ``<...>``, ``{{...}}``, ``****``, ``your_password``).
    """
    for m in _assignment_matches(lab):
        kw_start = m.start()
        kw = m.group("kw")
        rev = _NAME_REV.match(lab[max(0, kw_start - 40) : kw_start][::-1])
        name_start = kw_start - (rev.end() if rev else 0)
        prev = _before(lab, name_start)
        if prev in _VAR_REF:
            continue  # ${PASSWORD:-x}, $password: a variable reference, not an assignment
        if kw in (b"pass", b"sig") and kw_start != name_start and lab[kw_start - 1] in _IS_LOWER:
            continue  # "bypass", "compass", "config"
        if kw == b"sig" and prev not in (ord("?"), ord("&")):
            continue  # "sig=" only as a URL query parameter (SAS / presigned URLs)
        is_flag = lab[name_start : name_start + 2] == b"--"
        if m.group("sp") is not None and not is_flag:
            continue  # "password reset", "token budget": a bare space only separates a --flag's value
        if m.group("kq") and m.group("sp") is not None:
            continue
        query = prev in (ord("?"), ord("&"))
        quoted = m.group("q") is not None
        vs, ve = (m.start("qv"), m.end("qv")) if quoted else (m.start("v"), m.end("v"))
        value = ab[vs:ve]
        lvalue = lab[vs:ve]
        if _placeholder(value) or _names_itself(lvalue, kw):
            continue
        if quoted and (b" " in value or b"\t" in value):
            continue  # prose in quotes ("Enter your password"), not a credential
        if not quoted:
            after = ab[ve : ve + 1]
            if after in (b"(", b"[") or (after == b"." and not query):
                continue  # a call, an index or an attribute: code reading a value
            if _DOTTED.fullmatch(value) is not None:
                root = lvalue.split(b".", 1)[0]
                if root in _CODE_ROOTS or kw in root or value == lvalue:
                    continue  # settings.SECRET_KEY, password_input.value, cfg.db.pass: attribute paths
        name = lab[name_start : m.end("tail")]
        end = ve + (1 if quoted else 0)
        if (
            m.group("op") == b"="
            and len(value) >= 6
            and ab[name_start : kw_start + len(kw)].isupper()
            and _line_prefix_blank(lab, name_start)
        ):
            yield "env_secret", name_start, end
        if kw in _PASSWORD_KWS:
            yield "password", name_start, end
        elif (quoted and len(value) >= 16 and _token_chars(value)) or (query and len(value) >= 4) or (
            len(value) >= 10
            and any(48 <= c <= 57 for c in value)
            and any(c in _IS_NAME_START for c in lvalue)
            and shannon_entropy(value) >= 3.0
            and not name.endswith((b"_count", b"_len", b"_length", b"_size", b"_limit", b"s"))
        ):
            yield "secret_assignment", name_start, end


_IDENT: Final = re.compile(rb"[a-z_][a-z0-9_]{0,64}")


def _names_itself(lvalue: bytes, kw: bytes) -> bool:
    """``password=password``, ``password=user_password``: a variable named after the secret."""
    if lvalue == kw:
        return True
    if kw not in lvalue or _IDENT.fullmatch(lvalue) is None:
        return False
    i = lvalue.index(kw)
    return (i > 0 and lvalue[i - 1] == 95) or lvalue[i + len(kw) : i + len(kw) + 1] == b"_"


def _token_chars(v: bytes) -> bool:
    return all(c in _IS_TOKEN or c in b"./+=" for c in v)


def _line_prefix_blank(lab: bytes, pos: int) -> bool:
    """Only blanks or ``export `` between the line start and ``pos`` (looked at within 64 bytes)."""
    nl = lab.rfind(b"\n", max(0, pos - 64), pos)
    if nl < 0 and pos > 64:
        return False
    prefix = lab[nl + 1 : pos].strip(b" \t")
    return prefix in (b"", b"export")


@dataclass(frozen=True)
class ContextRule:
    """A rule implemented by a scan function over ``(ab, lab)`` (see the module docstring).

    Attributes:
        name: Rule name (kinds are chosen by the scan function).
        scan: The scan function.
        source: Where the pattern family comes from.
        triggers: Lower-case literals, one of which every hit contains; the rule is skipped when
            none occurs in ``lab`` (a C-speed ``in`` test; empty = always run; rules whose scan
            starts with a literal search need none).
    """

    name: str
    scan: Callable[[bytes, bytes], Iterator[Hit]]
    source: str
    triggers: tuple[bytes, ...] = ()
    #: The prefilter's proof that the rule cannot hit (:mod:`router_rl.features.privacy_prefilter`):
    #: ``(view, literal)`` pairs (view ``"ab"`` or ``"lab"``), one of which occurs wherever the
    #: rule hits (the literal its patterns or candidate search start with), or a shape the scan
    #: itself requires first (``"b64_run_40"``: a run of 40 ``[A-Za-z0-9/+]``; ``"card_digits"``:
    #: 13 digits in all and a run of 4; ``"email_at"``: ``@`` followed by ``[A-Za-z0-9-]`` in
    #: ``lab``; ``"assign_op"``: see :mod:`~router_rl.features.privacy_prefilter`). With both, both
    #: must hold. Neither: the rule always runs.
    needs: tuple[tuple[str, bytes], ...] = ()
    needs_shape: str = ""

    def applies(self, lab: bytes) -> bool:
        """False when no trigger occurs (the rule cannot hit)."""
        return not self.triggers or any(t in lab for t in self.triggers)


def _lab(*lits: bytes) -> tuple[tuple[str, bytes], ...]:
    return tuple(("lab", lit) for lit in lits)


CONTEXT_RULES: Final[tuple[ContextRule, ...]] = (
    # every hit starts at a BEGIN marker (searched in ab)
    ContextRule("private_key", scan_private_keys, "gitleaks private-key; detect-secrets PrivateKeyDetector",
                needs=(("ab", b"-----BEGIN "), ("ab", b"PuTTY-User-Key-File-"))),
    ContextRule("aws_secret_key_labelled", scan_aws_secret_labelled, "detect-secrets AWSKeyDetector",
                needs=_lab(b"aws")),
    ContextRule("aws_secret_key_unlabelled", scan_aws_secret_unlabelled,
                "detect-secrets Base64HighEntropyString (entropy), AWS key shape", needs_shape="b64_run_40"),
    ContextRule("url_credentials", scan_url_credentials, "detect-secrets BasicAuthDetector (URL form)",
                needs=_lab(b"://")),
    ContextRule("auth_headers", scan_auth_headers, "detect-secrets BasicAuthDetector; HTTP Authorization",
                needs=_lab(b"bearer", b"basic")),
    ContextRule("cli_passwords", scan_cli_passwords, "mysql(1) -p option; sshpass(1)",
                (b"mysql", b"mariadb", b"sshpass"), needs=(("ab", b"mysql"), ("ab", b"mariadb"), ("ab", b"sshpass"))),
    # candidates are only tried where a keyword literal occurs (_assignment_matches); an accepted
    # match has an operator after the name's run of [a-z0-9_.-] (and an optional quote and
    # blanks), or is a --flag (a bare blank is refused otherwise): "assign_op"
    ContextRule("assignments", scan_assignments,
                "detect-secrets KeywordDetector; gitleaks generic-api-key (entropy > 3.5 idea)",
                needs=_lab(*_KW_STARTS), needs_shape="assign_op"),
    # _EMAIL_AT: "@" then [A-Za-z0-9-] (on lab)
    ContextRule("email", scan_emails, "PII (kept from the first detector)", needs_shape="email_at"),
    ContextRule("credit_card", scan_cards, "PII (kept from the first detector), Luhn", needs_shape="card_digits"),
)

"""Vectorised length / structure statistics of prompts (the inputs of structure + complexity features).

Everything here works on a batch of already lower-cased texts and returns one numpy array per
statistic, so the single-prompt helpers (:func:`router_rl.features.complexity.complexity_score`)
and the batch encoder share one implementation and cannot drift apart (the compiled one-text
pass of the live router, ``_kernels.structure_counts``, is tested against these regexes).

Counting rules (documented in ``docs/features.md``):

* ``chars``: length in Unicode code points; ``lines``: ``text.count("\\n") + 1`` (0 for empty).
* ``code_fences``: occurrences of ```` ``` ````.
* ``code_lines``: lines that look like source code (start with ``def``/``class``/``import``/
  ``function``/``const``/``public``/``#include``/... or end with ``;``, ``{`` or ``}``).
* ``stack_trace_lines``: Python ``File "...", line N`` lines, Java/JS ``at x.y(...)`` frames,
  ``Traceback (most recent call last)`` headers, Go ``goroutine N [`` headers.
* ``diff_hunks``: lines starting with ``@@ `` (unified diff hunk headers).
* ``test_keywords``, ``error_keywords``: substring counts of the lists below in lower-cased text.
* ``file_paths``: tokens ending in a known source/config file extension (``foo/bar.py``, ``App.tsx``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Final

import numpy as np

from router_rl.features.jit import compiled

#: Substrings counted as test-related (lower-cased text).
TEST_KEYWORDS: Final = (
    "assert",
    "pytest",
    "def test_",
    "@test",
    "expect(",
    "describe(",
    " it(",
    "unittest",
    "junit",
    "jest",
    "mocha",
    "cypress",
    "playwright",
    "selenium",
    "test case",
    "test suite",
    "fixture",
    "mock",
)

#: Substrings counted as error-related (lower-cased text).
ERROR_KEYWORDS: Final = (
    "error",
    "exception",
    "fail",
    "traceback",
    "panic",
    "segfault",
    "segmentation fault",
    "undefined",
    "null pointer",
    "nullpointer",
    "timeout",
    "timed out",
    "crash",
    "fatal",
    "stack trace",
    "errno",
)

_FILE_EXTS: Final = (
    "py|pyi|js|mjs|cjs|ts|tsx|jsx|java|kt|kts|go|rs|rb|php|cs|cpp|cc|cxx|c|h|hpp|swift|scala|sql|sh|bash|"
    "ya?ml|json|xml|toml|ini|cfg|conf|md|rst|html|css|scss|feature|gradle|properties|lock|txt|csv|env|dockerfile"
)
#: ``.ext`` after a word character or ``-`` (checked in Python: a leading look-behind would disable
#: the regex engine's literal-prefix scan and make this ~15x slower).
_FILE_PATH_RE: Final = re.compile(rf"\.(?:{_FILE_EXTS})\b")
# The line-start rules are written as "a newline, then ..." and run on "\n" + text: a pattern
# starting with a literal is searched for in C, while a (?m)^ pattern is tried at every position
# (~5x slower). Both forms count the same matches: every match holds exactly one line start, and
# no match consumes the newline that precedes the next line's match (``\s*$`` can only end before
# a newline). ``tests/features/test_feat_text_stats.py`` checks this against the ^-forms.
_STACK_NL_RE: Final = re.compile(
    r'\n(?:[ \t]*file "[^"\n]+", line \d+'  # Python frame
    r"|[ \t]+at [\w$.<>/@:\[\]-]+ ?\("  # Java / JS frame "at pkg.Cls.meth(" / "at fn ("
    r"|[ \t]+at [^\s()]+:\d+:\d+\s*$"  # JS frame without function name
    r"|traceback \(most recent call last\)"  # Python header
    r"|goroutine \d+ \[)",  # Go header
    re.MULTILINE,
)
#: Literal starts of a code line (after its blanks); ``from X import `` and ``@name(`` are the two shapes.
_CODE_START_KEYWORDS: Final = (
    "def ", "class ", "import ", "function ", "async function ", "const ", "let ", "var ", "public ",
    "private ", "protected ", "#include", "package ", "func ", "fn ", "impl ", "return ",
)
#: Code lines: a line starting with a keyword, plus (counted separately) a line ending in ``; { }``.
_CODE_START_NL_RE: Final = re.compile(
    r"\n[ \t]*(?:" + "|".join(re.escape(k) for k in _CODE_START_KEYWORDS) + r"|from [\w.]+ import |@\w+\()"
)
_CODE_END_RE: Final = re.compile(r"[;{}][ \t]*$", re.MULTILINE)
_HUNK_NL_RE: Final = re.compile(r"\n@@ ")

#: Separator placed between prompts when regexes run over one joined string. ``\x00`` is neither
#: whitespace nor a word character and none of the patterns above can match across "\n\x00\n".
_SEP: Final = "\n\x00\n"

STAT_NAMES: Final = (
    "chars",
    "lines",
    "code_fences",
    "code_lines",
    "stack_trace_lines",
    "diff_hunks",
    "test_keywords",
    "file_paths",
    "error_keywords",
)


def _regex_counts(pattern: re.Pattern[str], joined: str, starts: np.ndarray, n: int) -> np.ndarray:
    """Matches per text; ``joined`` may carry a one-character prefix (match starts are then line starts)."""
    pos = np.fromiter((m.start() for m in pattern.finditer(joined)), dtype=np.int64)
    if pos.size == 0:
        return np.zeros(n, dtype=np.int64)
    rows = np.searchsorted(starts, pos, side="right") - 1
    return np.bincount(rows, minlength=n).astype(np.int64)


def _file_path_counts(joined: str, starts: np.ndarray, n: int) -> np.ndarray:
    pos = np.fromiter(
        (
            m.start()
            for m in _FILE_PATH_RE.finditer(joined)
            if m.start() > 0 and ((c := joined[m.start() - 1]).isalnum() or c in "_-")
        ),
        dtype=np.int64,
    )
    if pos.size == 0:
        return np.zeros(n, dtype=np.int64)
    return np.bincount(np.searchsorted(starts, pos, side="right") - 1, minlength=n).astype(np.int64)


def _substring_counts(texts: Sequence[str], keywords: Sequence[str]) -> np.ndarray:
    out = np.zeros(len(texts), dtype=np.int64)
    for kw in keywords:
        out += np.fromiter((t.count(kw) for t in texts), dtype=np.int64, count=len(texts))
    return out


def prompt_stats(lowered: Sequence[str]) -> dict[str, np.ndarray]:
    """Structure statistics of a batch of lower-cased prompts.

    Args:
        lowered: Prompt texts, already lower-cased (``""`` for a missing prompt).

    Returns:
        ``{name: (n,) int64}`` for every name in :data:`STAT_NAMES`.
    """
    n = len(lowered)
    lens = np.fromiter((len(t) for t in lowered), dtype=np.int64, count=n)
    newlines = np.fromiter((t.count("\n") for t in lowered), dtype=np.int64, count=n)
    starts = np.zeros(n, dtype=np.int64)
    if n > 1:
        starts[1:] = np.cumsum(lens[:-1] + len(_SEP))
    joined = _SEP.join(lowered)
    nl_joined = "\n" + joined  # a match at index k of nl_joined starts the line at index k of joined
    return {
        "chars": lens,
        "lines": np.where(lens > 0, newlines + 1, 0),
        "code_fences": np.fromiter((t.count("```") for t in lowered), dtype=np.int64, count=n),
        "code_lines": _regex_counts(_CODE_START_NL_RE, nl_joined, starts, n)
        + _regex_counts(_CODE_END_RE, joined, starts, n),
        "stack_trace_lines": _regex_counts(_STACK_NL_RE, nl_joined, starts, n),
        "diff_hunks": _regex_counts(_HUNK_NL_RE, nl_joined, starts, n),
        "test_keywords": _substring_counts(lowered, TEST_KEYWORDS),
        "file_paths": _file_path_counts(joined, starts, n),
        "error_keywords": _substring_counts(lowered, ERROR_KEYWORDS),
    }


def prompt_stats_one(lowered: str, *, keyword_totals: tuple[int, int] | None = None) -> dict[str, int]:
    """:func:`prompt_stats` of one lower-cased text, as Python ints (same rules, same counts).

    An ASCII text is counted by one compiled pass (``_kernels.structure_counts``: the regexes'
    line rules as byte tests, compared with the regexes in ``tests/features/test_feat_stats_kernel.py``);
    any other text, or without numba, by the same regexes and substring counts as the batch form
    on the text itself (the batch form joins texts with a separator no pattern can match across,
    so a one-text batch sees exactly this text).

    Args:
        lowered: The lower-cased text.
        keyword_totals: ``(test_keywords, error_keywords)`` when the caller already counted them
            (with :func:`substring_counts_one`); otherwise they are counted here.
    """
    n = len(lowered)
    if keyword_totals is None:
        keyword_totals = (
            sum(lowered.count(kw) for kw in TEST_KEYWORDS),
            sum(lowered.count(kw) for kw in ERROR_KEYWORDS),
        )
    kernel = _stats_kernel()
    if kernel is not None and lowered.isascii():
        c = np.zeros(7, dtype=np.int64)
        kernel(np.frombuffer(lowered.encode("ascii"), dtype=np.uint8), *stats_tables(), c)
        return stats_from_counts(n, c.tolist(), keyword_totals)
    return _stats_regex(lowered, keyword_totals)


def stats_from_counts(n: int, c: Sequence[int], keyword_totals: tuple[int, int]) -> dict[str, int]:
    """:func:`prompt_stats_one`'s dict from the 7 counts of the compiled kernel (``_kernels.structure_counts``).

    Args:
        n: The text's length (characters).
        c: Newlines, fences, code-start lines, code-end lines, stack lines, hunks, file paths.
        keyword_totals: ``(test_keywords, error_keywords)``.
    """
    return {
        "chars": n,
        "lines": c[0] + 1 if n else 0,
        "code_fences": c[1],
        "code_lines": c[2] + c[3],
        "stack_trace_lines": c[4],
        "diff_hunks": c[5],
        "test_keywords": keyword_totals[0],
        "file_paths": c[6],
        "error_keywords": keyword_totals[1],
    }


def _stats_regex(lowered: str, keyword_totals: tuple[int, int]) -> dict[str, int]:
    """The regex form of :func:`prompt_stats_one` (any text; the reference of the compiled kernel)."""
    n = len(lowered)
    nl = "\n" + lowered
    return {
        "chars": n,
        "lines": lowered.count("\n") + 1 if n else 0,
        "code_fences": lowered.count("```"),
        "code_lines": len(_CODE_START_NL_RE.findall(nl)) + _code_end_count(lowered),
        "stack_trace_lines": _stack_count(nl),
        "diff_hunks": len(_HUNK_NL_RE.findall(nl)),
        "test_keywords": keyword_totals[0],
        "file_paths": sum(
            1
            for m in _FILE_PATH_RE.finditer(lowered)
            if m.start() > 0 and ((c := lowered[m.start() - 1]).isalnum() or c in "_-")
        ),
        "error_keywords": keyword_totals[1],
    }


def _packed(words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``words`` as one uint8 array and the ``(len + 1,)`` offsets delimiting them."""
    enc = [w.encode("ascii") for w in words]
    starts = np.zeros(len(enc) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(e) for e in enc])
    return np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), starts


def _file_extensions() -> list[str]:
    """Every extension :data:`_FILE_PATH_RE` accepts (``ya?ml`` spelled out)."""
    out: list[str] = []
    for alt in _FILE_EXTS.split("|"):
        out.extend([alt.replace("a?", "a"), alt.replace("a?", "")] if "?" in alt else [alt])
    return out


def _ext_code(ext: str) -> int:
    """The packing of :func:`router_rl.features._kernels._ext_code` (``[a-z0-9_]`` -> 1..37, 6 bits each)."""
    code = 0
    for ch in ext:
        v = ord(ch) - 96 if ch.isalpha() else (37 if ch == "_" else ord(ch) - 48 + 27)
        code = (code << 6) | v
    return code


@functools.cache
def stats_tables() -> tuple[np.ndarray, ...]:
    """The kernel's literal tables: code-line keywords (then ``from `` and `` import ``), stack literals, extensions."""
    code_lits, code_starts = _packed([*_CODE_START_KEYWORDS, "from ", " import "])
    stack_lits, stack_starts = _packed(['file "', '", line ', "at ", "traceback (most recent call last)", "goroutine "])
    exts = np.array(sorted({_ext_code(e) for e in _file_extensions()}), dtype=np.uint64)
    return code_lits, code_starts, stack_lits, stack_starts, exts


_stats_kernel = compiled("router_rl.features._kernels", "structure_counts")


#: A literal every branch of :data:`_STACK_NL_RE` contains (the frame branches: a blank then ``at ``).
_STACK_LITERALS: Final = ('file "', " at ", "\tat ", "traceback (most recent call last)", "goroutine ")


def _stack_count(nl: str) -> int:
    """``len(_STACK_NL_RE.findall(nl))``; 0 when no branch's literal occurs (C ``in`` tests first)."""
    for lit in _STACK_LITERALS:
        if lit in nl:
            return len(_STACK_NL_RE.findall(nl))
    return 0


def _code_end_count(lowered: str) -> int:
    """``len(_CODE_END_RE.findall(lowered))``; 0 without a ``;``, ``{`` or ``}`` (every match starts with one).

    The regex has no literal prefix (it is tried at every position), so the ``in`` tests (C
    searches) save most of its cost on texts without code punctuation.
    """
    if ";" not in lowered and "{" not in lowered and "}" not in lowered:
        return 0
    return len(_CODE_END_RE.findall(lowered))


class KeywordTable:
    """A fixed tuple of keywords prepared for :func:`substring_counts_one` (built once, reused per request).

    Args:
        keywords: The substrings to count.
    """

    def __init__(self, keywords: Sequence[str]) -> None:
        self.keywords: tuple[str, ...] = tuple(keywords)
        #: All keywords ASCII of >= 2 characters: the compiled one-pass count applies (else ``str.count`` each).
        self.ascii = all(len(k) >= 2 and k.isascii() for k in self.keywords)
        enc = [k.encode("ascii", "replace") for k in self.keywords]
        self._kw = np.frombuffer(b"".join(enc), dtype=np.uint8)
        self._start = np.zeros(len(enc) + 1, dtype=np.int64)
        self._start[1:] = np.cumsum([len(e) for e in enc])
        firsts = np.array([e[0] if e else 0 for e in enc], dtype=np.int64)
        self._ids = np.argsort(firsts, kind="stable").astype(np.int64)
        self._first_start = np.searchsorted(firsts[self._ids], np.arange(257)).astype(np.int64)
        pairs = np.zeros(1 << 16, dtype=bool)
        pairs[[256 * e[0] + e[1] for e in enc if len(e) >= 2]] = True
        self._pair_bits = np.packbits(pairs, bitorder="little")

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        """The compiled count's table arguments (``_kernels.substring_counts`` after ``buf``)."""
        return self._kw, self._start, self._first_start, self._ids, self._pair_bits


def substring_counts_one(lowered: str, encoded: bytes, table: KeywordTable) -> list[int]:
    """``[lowered.count(kw) for kw in table.keywords]`` in one pass (compiled when numba is there).

    Args:
        lowered: The text.
        encoded: ``lowered`` as UTF-8 (an ASCII keyword matches the UTF-8 bytes exactly where it
            matches the text, since no multi-byte sequence holds an ASCII byte).
        table: The keywords; a table with a non-ASCII or 1-character keyword is counted on ``lowered``.
    """
    kernel = _substring_kernel()
    if kernel is None or not table.ascii:
        return [lowered.count(kw) for kw in table.keywords]
    counts = np.zeros(len(table.keywords), dtype=np.int64)
    kernel(np.frombuffer(encoded, dtype=np.uint8), *table.kernel_args(), counts)
    return counts.tolist()


_substring_kernel = compiled("router_rl.features._kernels", "substring_counts")

"""The compiled structure-statistics kernel counts what the regexes count (issue #13's one-row path).

The regex form (``text_stats._stats_regex``) is the reference: the kernel must give the same
counts on the simulated fleet's prompts, on the edge cases of every rule, and on 30,000 seeded
random texts made of the rules' own fragments (where a per-line reduction of a regex would go
wrong: runs, half-matches, blanks, carriage returns, the ``\\x1c`` separators that ``\\s``
matches). A text with a non-ASCII character goes to the regex path. The kernel is linear: the
time ratio of a 16x larger adversarial input stays far under the quadratic 256x.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from router_rl.features import text_stats as ts
from router_rl.features.jit import kernel_backend

pytestmark = pytest.mark.skipif(kernel_backend() != "numba", reason="numba switched off")

_FRAGMENTS = [
    "\n", "\n", " ", "  ", "\t", "\r", "\x0b", "\x1c", "x", "ab", "1", "42", ":", "::", ".", "-", "_", "(", ")", " (",
    ";", "{", "}", "```", "``", "def ", "def", "class ", "import ", " import ", "from ", "from a.b", "from .",
    "function ", "async function ", "const ", "let ", "var ", "public ", "private ", "protected ", "#include",
    "package ", "func ", "fn ", "impl ", "return ", "@", "@x(", "@app.route(", "@@ ", "@@", "at ", " at ", "\tat ",
    'file "', '"', '", line ', "line ", "a.py", "traceback (most recent call last)", "traceback (most",
    "goroutine ", " [", "[", "]", "$", "<init>", "/", "x.py", ".py", ".pyi", ".yml", ".yaml", ".yaml2", ".json",
    ".dockerfile", ".properties", ".propertiesx", ".c", ".cs", ".h", ".", "a-", "_.", "..", "x.txt.", ".env",
]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    k = len(_FRAGMENTS)
    return ["".join(_FRAGMENTS[int(i)] for i in rng.integers(0, k, int(rng.integers(0, 30)))) for _ in range(n)]


_EDGE = [
    "", "\n", "\n\n", " ", "x", "```", "````", "``````", "def ", " def x", "\tdef x",
    "def f() {\n}\nreturn x;\nconst {\n  a;;\n}; \n;\n",
    "  at foo:1:2\n\n\n  at bar:3:4\n  at baz (x.js:1:2)\n\tat a.b.C.m(X.java:3)\n",
    "  at foo:1:2   \n  at g:3:4", "  at :1:2", "  at a:1:2 x", "  at a::1:2", "  at a:1:2\x1c", "  at a:1:2\r",
    "  at a:1:", "  at a(:1:2", "  at a)b:1:2", "at a:1:2", "  at a.b (",  "  at a.b  (", "  at (",
    'traceback (most recent call last):\n  file "a.py", line 3, in f\n  file "b.py", line 9\ngoroutine 7 [running]:\n',
    'file "", line 3', 'file "a", line x', 'file "a"b", line 3', ' traceback (most recent call last)', "goroutine  [",
    "goroutine 1[", "@@ -1 +1 @@\n@@ x\n @@ no\n@@", "@@", "@@ ",
    "from a.b import c\nimport os\n@app.route(\n#include <x>\npackage main\nfunc main() {\n",
    "from  import x", "from a import", "from a import x", "@(", "@a (", "@a_1(",
    "x = 1;\r\ny = 2;\r\n", "x;\t \n", ";", "  ;  ",
    "see a.py, b.yaml, c.yml, d.yaml2, e.py.", ".py", "x.PY", "-.py", "_.py", " .py", "(.py", "a.py_", "a.py-x",
    "a.properties a.propertiesx a.dockerfile", "a..py", "a.b.c.txt", "1.2.3", "x.c x.cs x.h",
]


def _fleet_prompts() -> list[str]:
    from router_rl.traces.simulate import simulate_fleet

    return [p.lower() for p in simulate_fleet(400, seed=3).matrix().tasks["prompt"].to_list()]


def _kernel_path(t: str) -> dict[str, int]:
    assert t.isascii()
    return ts.prompt_stats_one(t, keyword_totals=(0, 0))


def _regex_path(t: str) -> dict[str, int]:
    return ts._stats_regex(t, (0, 0))


def test_the_kernel_counts_what_the_regexes_count() -> None:
    texts = _EDGE + _fleet_prompts() + _random_texts(30_000, seed=0)
    totals = dict.fromkeys(ts.STAT_NAMES, 0)
    for t in texts:
        want = _regex_path(t)
        assert _kernel_path(t) == want, repr(t)
        for k, v in want.items():
            totals[k] += v
    # the generated texts exercise every count, not just the zero case
    for k in ("code_fences", "code_lines", "stack_trace_lines", "diff_hunks", "file_paths"):
        assert totals[k] > 500, (k, totals[k])


def test_the_kernel_is_what_the_one_row_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = ts._stats_kernel()
    assert real is not None

    def spy(*a: object) -> None:
        calls.append(1)
        real(*a)

    monkeypatch.setattr(ts, "_stats_kernel", lambda: spy)
    ts.prompt_stats_one("def f():\n  return 1;\n")
    assert calls == [1]
    ts.prompt_stats_one("déf f():\n  return 1;\n")  # non-ASCII: the regex path
    assert calls == [1]


def test_non_ascii_texts_are_counted_by_the_regexes() -> None:
    t = "  at föo:1:2\nfrom é import x\n@ü(\nsee ü.py and a.py\n"
    assert ts.prompt_stats_one(t, keyword_totals=(0, 0)) == _regex_path(t)
    assert _regex_path(t)["stack_trace_lines"] == 1 and _regex_path(t)["file_paths"] == 2


def _best(fn: object, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.parametrize("shape", ["a.", "\n", " ", "  at ", "  at a:1", "from a", "@a", 'file "a', "```x", ".p",
                                   "goroutine 1", "x;", "\t \t", "a:1:"])
def test_the_kernel_is_linear(shape: str) -> None:
    """time(16x input) / time(1x input): ~16 for a linear scan, ~256 for a quadratic one (bound 64)."""
    base = 16_384
    small = (shape * (base // len(shape) + 1))[:base]
    big = (shape * (16 * base // len(shape) + 1))[: 16 * base]
    _kernel_path(small)
    ratio = 0.0
    for _ in range(3):  # re-measured before failing (a shared machine)
        t1 = max(_best(lambda: _kernel_path(small)), 20e-6)
        ratio = _best(lambda: _kernel_path(big)) / t1
        if ratio < 64:
            break
    assert ratio < 64, (shape, ratio)

"""Structure statistics counting rules (docs/features.md)."""

from __future__ import annotations

import re

from router_rl.features.text_stats import STAT_NAMES, prompt_stats

TEXT = """fix src/app/main.py and web-ui.tsx (not .py alone, not e.g. foo.)
traceback (most recent call last):
  file "src/app/main.py", line 12, in run
    at com.acme.cart.total(cart.java:41)
@@ -1,3 +1,4 @@
def test_total():
    assert total([1]) == 1;
```python
x = 1
```
error: failed with timeout"""


def test_counting_rules() -> None:
    s = {k: int(v[0]) for k, v in prompt_stats([TEXT, ""]).items()}
    assert s["file_paths"] == 4  # main.py twice, web-ui.tsx, cart.java
    assert s["stack_trace_lines"] == 3  # header, python frame, java frame
    assert s["diff_hunks"] == 1
    assert s["code_fences"] == 2
    assert s["code_lines"] == 2  # "def test_total():" and the line ending with ";"
    assert s["test_keywords"] == 2  # "def test_", "assert"
    assert s["error_keywords"] == 4  # traceback, error, fail, timeout
    assert s["lines"] == TEXT.count("\n") + 1 and s["chars"] == len(TEXT)
    empty = {k: int(v[1]) for k, v in prompt_stats([TEXT, ""]).items()}
    assert set(empty) == set(STAT_NAMES) and not any(empty.values())


def test_batch_rows_do_not_leak_into_each_other() -> None:
    a, b = "x = 1;", "@@ -1 +1 @@\nfoo.py"
    both = prompt_stats([a, b])
    for i, t in enumerate((a, b)):
        alone = prompt_stats([t])
        assert {k: int(v[i]) for k, v in both.items()} == {k: int(v[0]) for k, v in alone.items()}


# --- the newline-prefixed line rules count exactly what the (?m)^ forms counted ----------------

_REF_STACK = re.compile(
    r'^[ \t]*file "[^"\n]+", line \d+|^[ \t]+at [\w$.<>/@:\[\]-]+ ?\(|^[ \t]+at [^\s()]+:\d+:\d+\s*$'
    r"|^traceback \(most recent call last\)|^goroutine \d+ \[",
    re.MULTILINE,
)
_REF_CODE = re.compile(
    r"^[ \t]*(?:def |class |import |from [\w.]+ import |function |async function |const |let |var |"
    r"public |private |protected |#include|package |func |fn |impl |return |@\w+\()"
    r"|[;{}][ \t]*$",
    re.MULTILINE,
)
_REF_HUNK = re.compile(r"^@@ ", re.MULTILINE)

_EDGE = [
    "",
    "\n",
    "def f() {\n}\nreturn x;\nconst {\n  a;;\n}; \n;\n",
    "  at foo:1:2\n\n\n  at bar:3:4\n  at baz (x.js:1:2)\n\tat a.b.C.m(X.java:3)\n",
    "  at foo:1:2   \n  at g:3:4",
    'traceback (most recent call last):\n  file "a.py", line 3, in f\n  file "b.py", line 9\ngoroutine 7 [running]:\n',
    "@@ -1 +1 @@\n@@ x\n @@ no\n@@",
    "from a.b import c\nimport os\n@app.route(\n#include <x>\npackage main\nfunc main() {\n",
    "x = 1;\r\ny = 2;\r\n",
]


def test_line_rules_match_the_multiline_reference() -> None:
    from router_rl.features.text_stats import prompt_stats, prompt_stats_one
    from router_rl.traces.simulate import simulate_fleet

    texts = [p.lower() for p in simulate_fleet(300, seed=2).matrix().tasks["prompt"].to_list()] + _EDGE
    batch = prompt_stats(texts)
    for i, t in enumerate(texts):
        ref = {
            "code_lines": len(_REF_CODE.findall(t)),
            "stack_trace_lines": len(_REF_STACK.findall(t)),
            "diff_hunks": len(_REF_HUNK.findall(t)),
        }
        one = prompt_stats_one(t)
        assert {k: one[k] for k in ref} == ref, (i, t[:80])
        assert {k: int(batch[k][i]) for k in ref} == ref, (i, t[:80])


def test_literal_prechecks_count_like_the_regexes() -> None:
    """``_stack_count`` / ``_code_end_count`` skip their regex only where it cannot match."""
    import numpy as np

    from router_rl.features import text_stats as ts

    rng = np.random.default_rng(0)
    pieces = ['  File "a.py", line 3', "\tat com.x.Y.run(Y.java:1)", "    at f (/a.js:1:2)", " at ", "at ",
              "traceback (most recent call last)", "goroutine 7 [", "x;", "y {", "}", " ; ", "plain words", "\n",
              "\n\n", "file ", "goroutine", "\tat"]
    texts = ["".join(pieces[int(i)] for i in rng.integers(0, len(pieces), int(rng.integers(0, 12))))
             for _ in range(3000)]
    stack_hits = code_hits = 0
    for t in texts:
        nl = "\n" + t
        want_stack = len(ts._STACK_NL_RE.findall(nl))
        want_code = len(ts._CODE_END_RE.findall(t))
        assert ts._stack_count(nl) == want_stack, t
        assert ts._code_end_count(t) == want_code, t
        stack_hits += want_stack
        code_hits += want_code
    assert stack_hits > 100 and code_hits > 100

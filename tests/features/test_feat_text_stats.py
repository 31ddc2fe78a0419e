"""Structure statistics counting rules (docs/features.md)."""

from __future__ import annotations

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

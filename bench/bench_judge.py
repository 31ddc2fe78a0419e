"""Judged test files per minute on one core: a 200-line module with 30 tests.

The module and its tests are generated (30 small functions with two branches each, one test of
three asserts per function). Three figures, all pinned to one CPU (children inherit the affinity)
and with the mutation pool at one worker:

* the in-run baseline: plain ``python -m pytest`` of the same files in a subprocess with the
  judge's plugin set (no plugin autoload, pytest-timeout; no sandbox, no coverage), so the ratio
  is comparable across machines;
* the judge without mutation (sandbox + coverage + static checks);
* the judge with mutation (default budget: at most 40 mutants, one worker).

Usage::

    .venv/bin/python bench/bench_judge.py [--repeats 3] [--max-mutants 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_FUNCTIONS = 30


def module_source() -> str:
    """30 functions of 6 lines each plus a blank line: ~210 lines."""
    parts = []
    for i in range(N_FUNCTIONS):
        parts.append(
            f"def f_{i}(x, y):\n"
            f"    if x > y + {i}:\n"
            f"        return x - y\n"
            f"    if x == y:\n"
            f"        return {i}\n"
            f"    return x * {i % 3 + 1} + y\n"
        )
    return "\n".join(parts)


def tests_source() -> str:
    """One test per function, covering both branches and the fall-through."""
    lines = ["from bigmod import " + ", ".join(f"f_{i}" for i in range(N_FUNCTIONS)), ""]
    for i in range(N_FUNCTIONS):
        lines += [
            "",
            f"def test_f_{i}():",
            f"    assert f_{i}({i + 10}, 0) == {i + 10}",
            f"    assert f_{i}(2, 2) == {i}",
            f"    assert f_{i}(0, 1) == 1",
        ]
    return "\n".join(lines) + "\n"


def _pin() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned"


def main(argv: list[str] | None = None) -> None:
    """Print the three rates."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-mutants", type=int, default=40)
    a = p.parse_args(argv)
    from router_rl.judge.config import JudgeConfig, MutationBudget
    from router_rl.judge.tests_judge import judge_tests

    pin = _pin()
    with tempfile.TemporaryDirectory() as tmp:
        code, tests = Path(tmp) / "bigmod.py", Path(tmp) / "test_bigmod.py"
        code.write_text(module_source())
        tests.write_text(tests_source())
        n_lines = len(code.read_text().splitlines())

        def plain() -> None:
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_timeout", str(tests)],
                cwd=tmp, env={**os.environ, "PYTHONPATH": tmp, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
                capture_output=True, check=False,
            )
            if r.returncode != 0:
                raise SystemExit(f"baseline pytest failed:\n{r.stdout.decode()[-2000:]}")

        def judge(mutation: bool) -> float:
            cfg = JudgeConfig(mutation=MutationBudget(enabled=mutation, max_mutants=a.max_mutants, workers=1))
            j = judge_tests(code, tests, cfg)
            if j.details["tests"]["passed"] != N_FUNCTIONS:
                raise SystemExit(f"judge run did not pass every test: {j.details['tests']}")
            return j.score

        def rate(fn: object, repeats: int) -> tuple[float, float]:
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()  # type: ignore[operator]
            dt = (time.perf_counter() - t0) / repeats
            return 60.0 / dt, dt

        plain()  # warm the page cache
        base, base_s = rate(plain, a.repeats)
        nomut, nomut_s = rate(lambda: judge(False), a.repeats)
        mut, mut_s = rate(lambda: judge(True), max(1, a.repeats // 2))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_judge: {n_lines}-line module, {N_FUNCTIONS} tests, {pin}, mutation pool 1 worker, "
          f"load average {load:.1f}")
    print(f"  baseline: plain pytest subprocess     {base:7.1f} files/min  ({base_s:.2f} s/file)")
    print(f"  judge, no mutation                    {nomut:7.1f} files/min  ({nomut_s:.2f} s/file, "
          f"{nomut_s / base_s:.1f}x baseline)")
    print(f"  judge, mutation (<= {a.max_mutants} mutants)        {mut:7.1f} files/min  ({mut_s:.2f} s/file, "
          f"{mut_s / base_s:.1f}x baseline)")


if __name__ == "__main__":
    main()

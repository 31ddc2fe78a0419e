"""judge_tests end to end on a tiny module: the score orders good, weakened and broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router_rl.judge.tests_judge import JudgeInputError, judge_tests
from tests.judge.conftest import NO_ASSERT_TESTS, fast_config


def test_good_file_scores_high_and_details_are_json(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    j = judge_tests(code, tests, fast_config())
    d = json.loads(j.to_json())["details"]
    assert j.kind == "tests" and j.source == "judge:tests"
    assert d["tests"]["collected"] == 5 and d["tests"]["passed"] == 5
    assert d["components"]["line_coverage"] == 1.0 and d["components"]["branch_coverage"] == 1.0
    assert d["mutation"]["sampled"] == d["mutation"]["sites_total"] > 10
    assert d["mutation"]["score"] >= 0.7
    expected = sum(d["weights_used"][k] * d["components"][k] for k in d["weights_used"])
    assert j.score == pytest.approx(expected, abs=1e-6)
    assert j.score > 0.85


def test_assertions_removed_scores_lower_and_mutation_separates(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    weak = tests.with_name("test_weak.py")
    weak.write_text(NO_ASSERT_TESTS)
    good = judge_tests(code, tests, fast_config())
    bad = judge_tests(code, weak, fast_config())
    assert bad.details["tests"]["passed"] == 5  # they all "pass"
    assert bad.details["components"]["assertions"] == 0.0
    assert bad.details["mutation"]["score"] < good.details["mutation"]["score"] - 0.4
    assert bad.score < good.score - 0.3


def test_failing_and_invalid_files(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    wrong = tests.with_name("test_wrong.py")
    wrong.write_text(tests.read_text().replace("== 6", "== 7").replace("== 10", "== 11"))
    j = judge_tests(code, wrong, fast_config(max_mutants=5))
    assert j.details["tests"]["failed"] == 3 and j.details["tests"]["passed"] == 2

    broken = tests.with_name("test_broken.py")
    broken.write_text("def test_x(:\n")
    j = judge_tests(code, broken, fast_config())
    assert j.score == 0.0 and "not valid Python" in j.details["reason"]

    empty = tests.with_name("test_empty.py")
    empty.write_text("import tiny\n")
    j = judge_tests(code, empty, fast_config())
    assert j.score == 0.0 and j.details["reason"] == "no test was collected"


def test_no_mutation_renormalises(tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    j = judge_tests(code, tests, fast_config(mutation=False))
    assert j.details["mutation"] is None and "mutation" not in j.details["weights_used"]
    assert sum(j.details["weights_used"].values()) == pytest.approx(1.0)
    assert j.score == pytest.approx(1.0)


def test_bad_inputs_name_the_file(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    code, tests = tiny
    with pytest.raises(JudgeInputError, match=r"code under test .*nope\.py: no such file"):
        judge_tests(tmp_path / "nope.py", tests)
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n")
    with pytest.raises(JudgeInputError, match=r"code under test bad\.py: line 1"):
        judge_tests(bad, tests)
    with pytest.raises(JudgeInputError, match=r"test file .*missing\.py: no such file"):
        judge_tests(code, tmp_path / "missing.py")


def test_package_folder_under_test(tmp_path: Path) -> None:
    pkg = tmp_path / "shapes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from shapes.area import square\n")
    (pkg / "area.py").write_text("def square(x):\n    if x < 0:\n        raise ValueError(x)\n    return x * x\n")
    tests = tmp_path / "test_shapes.py"
    tests.write_text(
        "import pytest\nfrom shapes import square\n\n\ndef test_square():\n    assert square(3) == 9\n\n\n"
        "def test_negative():\n    with pytest.raises(ValueError):\n        square(-1)\n"
    )
    j = judge_tests(pkg, tests, fast_config())
    d = j.details
    assert d["tests"]["passed"] == 2 and d["components"]["line_coverage"] == 1.0
    assert set(d["coverage"]["missing_lines"]) == {"shapes/__init__.py", "shapes/area.py"}
    # `x < 0` -> `x <= 0` and `0` -> `1` survive: no test at x == 0
    assert d["mutation"]["sites_total"] == 4 and d["mutation"]["counts"] == {"killed": 2, "survived": 2}

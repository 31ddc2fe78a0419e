"""Run pytest on a test file against the code under test in an isolated subprocess.

(Slightly over 500 lines on purpose: the whole life of one sandbox, from set-up through limits and
reaping to the parsed result, in one place, so no step of the containment is split off and forgotten.)

One call = one fresh temporary folder (``code/`` holds a copy of the code under test, ``tests/``
the test file), one child process started by :mod:`router_rl.judge._sandbox_entry` which
confines itself before pytest is imported (network namespace, rlimits, a private uid keeping
only read access, no new privileges; see that module) and an environment built from an
allow-list, so no secret of the judge's environment reaches the tests.

The private uid is what makes containment reliable: ``RLIMIT_NPROC`` caps the processes of that
uid only (a fork bomb stops at ``max_processes``), the tests cannot write outside their folder
(ordinary permissions: everything else belongs to other users), and at the end the judge kills
every process that uid still owns (also those that left the process group), so nothing outlives
the run. The wall-clock limit sends ``SIGTERM`` first (pytest stops, coverage is saved), then
``SIGKILL`` to everything of the uid.

Limits: the tests can *read* files the judge can read (the kept capability is
``CAP_DAC_READ_SEARCH``); with the network gone they have no way to send them anywhere but the
result the judge reads, which carries only node ids and outcomes. Memory is capped per process
(``RLIMIT_AS``), so the worst case is ``max_processes * memory_mb``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router_rl.judge.config import SandboxLimits

_ENTRY = Path(__file__).with_name("_sandbox_entry.py")
_UID_BASE = 1_500_000_000
_uid_lock = threading.Lock()
_uid_counter = 0
_MAX_EVENTS_BYTES = 8 * 1024 * 1024


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not a property of the tests)."""


@dataclass
class SandboxRun:
    """What one sandboxed pytest run produced.

    Attributes:
        outcomes: Outcome per collected node id: ``passed``, ``failed``, ``error``, ``skipped`` or
            ``not_run`` (collected but no report: the run was killed or crashed first).
        collect_errors: Node ids (files/modules) whose collection failed.
        exit_code: pytest's exit code, or ``None`` when the run produced no result file.
        timed_out: The wall-clock limit expired.
        killed: Processes of the run's uid still alive at the end and killed by the judge.
        isolation: What the sandbox applied (``network``: netns | audit-hook | host; ``uid``).
        coverage: coverage.py's JSON report, when requested and produced.
        coverage_error: Why there is no coverage report.
        wall_s: Wall-clock seconds of the run.
        output_tail: Last characters of the run's stdout/stderr (not copied into judge details).
        uid: The private uid the run used.
    """

    outcomes: dict[str, str] = field(default_factory=dict)
    collect_errors: list[str] = field(default_factory=list)
    exit_code: int | None = None
    timed_out: bool = False
    killed: int = 0
    isolation: dict[str, Any] = field(default_factory=dict)
    coverage: dict[str, Any] | None = None
    coverage_error: str | None = None
    wall_s: float = 0.0
    output_tail: str = ""
    uid: int | None = None

    def count(self, outcome: str) -> int:
        """Number of tests with this outcome."""
        return sum(1 for o in self.outcomes.values() if o == outcome)


def _next_uid() -> int:
    global _uid_counter
    with _uid_lock:
        _uid_counter += 1
        return _UID_BASE + (os.getpid() % 400_000) * 1000 + _uid_counter % 1000


def _pids_of_uid(uid: int) -> list[int]:
    """Live (not zombie) processes whose real uid is ``uid``."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                state = ""
                for line in fh:
                    if line.startswith("State:"):
                        state = line.split()[1]
                    elif line.startswith("Uid:"):
                        if int(line.split()[1]) == uid and state not in ("Z", "X"):
                            pids.append(int(name))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return pids


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_uid(uid: int, *, rounds: int = 100) -> int:
    """SIGKILL every process whose real uid is ``uid`` until none is left; returns how many.

    Each round first SIGSTOPs every process of the uid until no new one shows up (a stopped
    process cannot fork, and nothing has died yet, so a fork bomb at its ``RLIMIT_NPROC`` has no
    free slot), then SIGKILLs them all.

    Raises:
        SandboxError: When processes of the uid are still alive after ``rounds`` rounds.
    """
    killed = 0
    for _ in range(rounds):
        pids = _pids_of_uid(uid)
        if not pids:
            return killed
        stopped: set[int] = set()
        for _ in range(100):
            new = [p for p in pids if p not in stopped]
            if not new:
                break
            for p in new:
                _signal(p, signal.SIGSTOP)
            stopped.update(new)
            pids = _pids_of_uid(uid)
        for p in stopped:
            killed += _signal(p, signal.SIGKILL)
        time.sleep(0.01)
    raise SandboxError(f"processes of sandbox uid {uid} survive {rounds} kill rounds")


def _outcomes(events: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    collected: list[str] = []
    collect_errors: list[str] = []
    phases: dict[str, dict[str, str]] = {}
    for ev in events:
        kind = ev.get("event")
        if kind == "collected":
            collected = [str(n) for n in ev.get("nodeids", [])]
        elif kind == "collect_error":
            collect_errors.append(str(ev.get("nodeid", "")))
        elif kind == "report":
            phases.setdefault(str(ev.get("nodeid")), {})[str(ev.get("when"))] = str(ev.get("outcome"))
    out: dict[str, str] = {}
    for nodeid in collected:
        ph = phases.get(nodeid, {})
        if ph.get("setup") == "failed":
            out[nodeid] = "error"
        elif ph.get("call") == "failed":
            out[nodeid] = "failed"
        elif ph.get("teardown") == "failed":
            out[nodeid] = "error"
        elif "skipped" in (ph.get("setup"), ph.get("call")):
            out[nodeid] = "skipped"
        elif ph.get("call") == "passed":
            out[nodeid] = "passed"
        else:
            out[nodeid] = "not_run"
    return out, collect_errors


def _read_untrusted(path: Path, limit: int) -> str | None:
    """Read a file the sandbox wrote, refusing symlinks and oversize content."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        return None
    return data.decode("utf-8", errors="replace")


def _copy_code(code: Path, dest: Path, overrides: dict[str, str] | None) -> None:
    dest.mkdir(parents=True)
    if code.is_dir():
        shutil.copytree(code, dest / code.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(code, dest / code.name)
    for rel, source in (overrides or {}).items():
        target = dest / rel
        if not target.is_file():
            raise SandboxError(f"mutant target {rel!r} is not a file of the code under test")
        target.write_text(source)


def _relative_files(report: dict[str, Any], tests_dir: Path, code_dir: Path) -> dict[str, Any]:
    files = report.get("files")
    if not isinstance(files, dict):
        return report
    renamed = {}
    for key, value in files.items():
        full = os.path.normpath(os.path.join(str(tests_dir), str(key)))
        renamed[os.path.relpath(full, str(code_dir))] = value
    return {**report, "files": renamed}


def sandbox_test_name(tests: Path) -> str:
    """The name the test file gets in the sandbox (pytest only collects ``test_*.py``)."""
    name = tests.name
    if (name.startswith("test_") or name.endswith("_test.py")) and name.endswith(".py"):
        return name
    return f"test_{tests.stem}.py"


@dataclass
class _Prepared:
    root: Path
    work: Path
    code_dir: Path
    tests_dir: Path
    uid: int
    spec: dict[str, Any]


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SandboxError(f"the judge needs {missing} in this interpreter: pip install 'router-rl[judge]'")


def _prepare(code: Path, tests: Path, limits: SandboxLimits, overrides: dict[str, str] | None) -> _Prepared:
    _require("pytest", "pytest_timeout", "coverage")
    root = Path(tempfile.mkdtemp(prefix="router-rl-judge-"))
    uid = _next_uid()
    work = root / "work"
    code_dir, tests_dir = work / "code", work / "tests"
    try:
        _copy_code(code, code_dir, overrides)
        tests_dir.mkdir(parents=True)
        shutil.copy2(tests, tests_dir / sandbox_test_name(tests))
        (work / "tmp").mkdir()
        ini = work / "pytest.ini"
        ini.write_text("[pytest]\n")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    spec = {
        "uid": uid,
        "work_dir": str(work),
        "code_dir": str(code_dir),
        "tests_dir": str(tests_dir),
        "ini_path": str(ini),
        "targets": [sandbox_test_name(tests)],
        "events_path": str(work / "events.jsonl"),
        "result_path": str(work / "result.json"),
        "coverage_path": str(work / "coverage.json"),
        "coverage": False,
        "exitfirst": False,
        "per_test_timeout_s": limits.per_test_timeout_s,
        "cpu_s": limits.cpu_s,
        "memory_mb": limits.memory_mb,
        "max_processes": limits.max_processes,
        "max_file_mb": limits.max_file_mb,
        "isolate_network": limits.isolate_network,
    }
    return _Prepared(root, work, code_dir, tests_dir, uid, spec)


def _launch(prep: _Prepared, wall_timeout_s: float) -> tuple[bool, int, float, str]:
    """Start the entry process and wait; returns ``(timed_out, killed, wall_s, output_tail)``."""
    spec_path = prep.root / "spec.json"
    spec_path.write_text(json.dumps(prep.spec))
    os.chmod(prep.root, 0o711)
    if os.getuid() == 0:
        for dirpath, _dirnames, filenames in os.walk(prep.work):
            os.chown(dirpath, prep.uid, prep.uid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), prep.uid, prep.uid)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(prep.work),
        "TMPDIR": str(prep.work / "tmp"),
        "PYTHONPATH": str(prep.code_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "LANG": "C.UTF-8",
    }
    out_path = prep.root / "output.txt"
    timed_out = False
    t0 = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(_ENTRY), str(spec_path)],
            cwd=str(prep.work),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        try:
            proc.wait(timeout=wall_timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3.0)
        finally:
            killed = kill_uid(prep.uid) if os.getuid() == 0 else 0
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall_s = time.monotonic() - t0
    tail = _read_untrusted(out_path, 64 * 1024 * 1024) or ""
    return timed_out, killed, wall_s, tail[-4000:]


def _cleanup(prep: _Prepared) -> None:
    if os.getuid() == 0:
        kill_uid(prep.uid)
    shutil.rmtree(prep.root, ignore_errors=True)


def _json_lines(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def run_pytest(
    code: Path,
    tests: Path,
    limits: SandboxLimits,
    *,
    coverage: bool = True,
    targets: list[str] | None = None,
    exitfirst: bool = False,
    code_overrides: dict[str, str] | None = None,
) -> SandboxRun:
    """Run pytest on ``tests`` against ``code`` in a fresh, confined subprocess.

    Args:
        code: The code under test: one ``.py`` module or a package folder.
        tests: The test file.
        limits: Resource limits.
        coverage: Measure line and branch coverage of ``code``.
        targets: pytest node ids to run (default: the whole test file).
        exitfirst: Stop at the first failure.
        code_overrides: ``{path relative to code's parent: source}`` replacing files of the copy.

    Returns:
        The :class:`SandboxRun`.

    Raises:
        SandboxError: When the sandbox folder cannot be prepared or its processes cannot be killed.
    """
    prep = _prepare(code, tests, limits, code_overrides)
    work = prep.work
    prep.spec.update(coverage=coverage, exitfirst=exitfirst)
    if targets is not None:
        prep.spec["targets"] = list(targets)
    run = SandboxRun(uid=prep.uid if os.getuid() == 0 else None)
    try:
        run.timed_out, run.killed, run.wall_s, run.output_tail = _launch(prep, limits.wall_timeout_s)
        events = _json_lines(_read_untrusted(work / "events.jsonl", _MAX_EVENTS_BYTES) or "")
        run.outcomes, run.collect_errors = _outcomes(events)
        result_text = _read_untrusted(work / "result.json", 1024 * 1024)
        if result_text:
            try:
                result = json.loads(result_text)
            except json.JSONDecodeError:
                result = {}
            if isinstance(result, dict):
                code_val = result.get("exit_code")
                run.exit_code = int(code_val) if isinstance(code_val, int) else None
                iso = result.get("isolation")
                run.isolation = iso if isinstance(iso, dict) else {}
                if coverage:
                    status = result.get("coverage")
                    if status == "ok":
                        cov_text = _read_untrusted(work / "coverage.json", 32 * 1024 * 1024)
                        try:
                            run.coverage = json.loads(cov_text) if cov_text else None
                        except json.JSONDecodeError:
                            run.coverage = None
                        if run.coverage is None:
                            run.coverage_error = "coverage report unreadable"
                        else:
                            run.coverage = _relative_files(run.coverage, prep.tests_dir, prep.code_dir)
                    else:
                        run.coverage_error = str(status)[:400]
        elif coverage:
            run.coverage_error = "the run produced no result (killed or crashed)"
        return run
    finally:
        _cleanup(prep)


@dataclass
class MutantRuns:
    """Outcome of a pool of mutant runs (:func:`run_mutants`).

    Attributes:
        status: Per mutant index: ``killed`` (a target test failed, errored or the import broke),
            ``survived`` (all targets passed), ``timeout`` (killed at ``per_mutant_timeout_s``),
            ``skipped_budget`` (not started: the total budget was spent) or ``error`` (no record:
            the pool itself died).
        wall_s: Per mutant index, seconds of its run (0 when none).
        pool_timed_out: The pool hit its own wall-clock limit.
        killed: Processes of the pool's uid killed at the end.
        isolation_output: Output tail of the pool process (debugging only).
    """

    status: list[str] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    pool_timed_out: bool = False
    killed: int = 0
    isolation_output: str = ""


def run_mutants(
    code: Path,
    tests: Path,
    mutants: list[dict[str, str]],
    targets: list[str],
    limits: SandboxLimits,
    *,
    workers: int,
    per_mutant_timeout_s: float,
    total_budget_s: float,
) -> MutantRuns:
    """Run ``targets`` against every mutant in one sandbox that forks a child per mutant.

    One confined process (same isolation as :func:`run_pytest`) imports pytest once and forks
    ``workers`` children at a time, each with its mutant's copy of the code first on
    ``sys.path``; pytest runs with ``-x``. This avoids one interpreter start per mutant.

    Args:
        code: Module or package folder under test.
        tests: The test file.
        mutants: One ``{path relative to code's parent: mutated source}`` per mutant.
        targets: Node ids to run (the tests that passed on the original code).
        limits: Sandbox limits (``max_processes`` is shared by the whole pool).
        workers: Mutants run at the same time.
        per_mutant_timeout_s: Wall-clock limit of one mutant.
        total_budget_s: No mutant starts after this many seconds.

    Returns:
        The :class:`MutantRuns`, in the order of ``mutants``.
    """
    prep = _prepare(code, tests, limits, None)
    try:
        jobs = []
        for i, overrides in enumerate(mutants):
            d = prep.work / "mutants" / str(i)
            _copy_code(code, d, overrides)
            jobs.append({"id": i, "code_dir": str(d)})
        results_path = prep.work / "mutants.jsonl"
        prep.spec.update(
            mutants=jobs,
            targets=list(targets),
            exitfirst=True,
            workers=workers,
            per_mutant_timeout_s=per_mutant_timeout_s,
            total_budget_s=total_budget_s,
            mutant_results_path=str(results_path),
        )
        rounds = -(-len(mutants) // max(1, workers))
        wall = min(total_budget_s, rounds * per_mutant_timeout_s) + per_mutant_timeout_s + 30.0
        timed_out, killed, _, tail = _launch(prep, wall)
        status = ["error"] * len(mutants)
        walls = [0.0] * len(mutants)
        for row in _json_lines(_read_untrusted(results_path, _MAX_EVENTS_BYTES) or ""):
            rid = row.get("id")
            if not isinstance(rid, int) or not 0 <= rid < len(mutants):
                continue
            i = rid
            kind = row.get("status")
            if kind == "exit":
                status[i] = "survived" if row.get("exit_code") == 0 else "killed"
            elif kind in ("timeout", "skipped_budget"):
                status[i] = str(kind)
            w = row.get("wall_s")
            walls[i] = float(w) if isinstance(w, int | float) else 0.0
        return MutantRuns(status, walls, timed_out, killed, tail)
    finally:
        _cleanup(prep)

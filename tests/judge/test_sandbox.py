"""The sandbox: outcomes, coverage, scrubbed environment, and containment of hostile tests.

Every hostile test file here runs for real; the assertions check the host's side (the file
outside survives, the loopback server saw no connection, no process of the sandbox uid is left).
"""

from __future__ import annotations

import os
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from router_rl.judge.config import SandboxLimits
from router_rl.judge.sandbox import _pids_of_uid, run_pytest

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="containment needs root (private uid, netns)")


def _write(tmp_path: Path, tests: str) -> tuple[Path, Path]:
    code = tmp_path / "target.py"
    code.write_text("def one():\n    return 1\n")
    t = tmp_path / "test_hostile.py"
    t.write_text(textwrap.dedent(tests))
    return code, t


def test_outcomes_coverage_and_scrubbed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_RL_TEST_SECRET", "hunter2")
    code, tests = _write(
        tmp_path,
        """
        import os
        import pytest
        from target import one

        def test_pass():
            assert one() == 1

        def test_fail():
            assert one() == 2

        @pytest.fixture
        def broken():
            raise RuntimeError("setup")

        def test_error(broken):
            pass

        @pytest.mark.skip(reason="x")
        def test_skip():
            pass

        def test_env_is_scrubbed():
            assert "ROUTER_RL_TEST_SECRET" not in os.environ
            assert os.environ["HOME"] == os.path.dirname(os.getcwd())
        """,
    )
    run = run_pytest(code, tests, SandboxLimits())
    assert run.outcomes == {
        "test_hostile.py::test_pass": "passed",
        "test_hostile.py::test_fail": "failed",
        "test_hostile.py::test_error": "error",
        "test_hostile.py::test_skip": "skipped",
        "test_hostile.py::test_env_is_scrubbed": "passed",
    }
    assert run.exit_code == 1 and not run.timed_out
    assert run.isolation["network"] == "netns" and run.isolation["uid"] != 0
    assert run.coverage is not None and list(run.coverage["files"]) == ["target.py"]
    assert run.coverage["totals"]["covered_lines"] == 2


def test_cannot_delete_files_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(outside, 0o755)
    victim = outside / "precious.txt"
    victim.write_text("keep me")
    code, tests = _write(
        tmp_path,
        f"""
        import os, shutil

        def test_delete():
            os.remove({str(victim)!r})

        def test_rmtree():
            shutil.rmtree({str(outside)!r})

        def test_overwrite():
            open({str(victim)!r}, "w").write("gone")
        """,
    )
    run = run_pytest(code, tests, SandboxLimits())
    assert victim.read_text() == "keep me"
    assert set(run.outcomes.values()) == {"failed"}


def test_no_network_even_to_loopback(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    code, tests = _write(
        tmp_path,
        f"""
        import socket

        def test_connect():
            s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
            s.sendall(b"leak")

        def test_listen():
            s = socket.socket()
            s.bind(("0.0.0.0", 0))
            s.listen()
            c = socket.create_connection(s.getsockname(), timeout=2)

        def test_dns():
            socket.getaddrinfo("example.com", 80)
        """,
    )
    try:
        run = run_pytest(code, tests, SandboxLimits())
        # the host's server is reachable from the host itself: the check is not vacuous
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        for _ in range(50):
            if accepted:
                break
            threading.Event().wait(0.05)
    finally:
        stop.set()
        th.join()
        server.close()
    assert len(accepted) == 1  # only the host's own probe
    assert set(run.outcomes.values()) == {"failed"}


@pytest.mark.slow
def test_fork_bomb_contained(tmp_path: Path) -> None:
    code, tests = _write(
        tmp_path,
        """
        import os

        def test_bomb():
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """,
    )
    limits = SandboxLimits(wall_timeout_s=8.0, per_test_timeout_s=4.0, max_processes=16)
    run = run_pytest(code, tests, limits)
    assert run.killed > 0 and run.uid is not None
    assert _pids_of_uid(run.uid) == []
    assert run.outcomes.get("test_hostile.py::test_bomb") != "passed"


def test_memory_and_escaping_daemon(tmp_path: Path) -> None:
    code, tests = _write(
        tmp_path,
        """
        import subprocess

        def test_ten_gigabytes():
            b = bytearray(10 * 1024 ** 3)
            assert len(b) > 0

        def test_daemon():
            subprocess.Popen(["sleep", "1000"], start_new_session=True)
        """,
    )
    run = run_pytest(code, tests, SandboxLimits(memory_mb=512))
    assert run.outcomes["test_hostile.py::test_ten_gigabytes"] == "failed"  # MemoryError
    assert run.outcomes["test_hostile.py::test_daemon"] == "passed"
    assert run.killed >= 1  # the escaped `sleep` was killed by uid
    assert run.uid == run.isolation["uid"] and _pids_of_uid(run.uid) == []


@pytest.mark.slow
def test_sleep_forever_hits_the_limits(tmp_path: Path) -> None:
    code, tests = _write(
        tmp_path,
        """
        import time

        def test_hang():
            time.sleep(10 ** 9)

        def test_after():
            assert True
        """,
    )
    run = run_pytest(code, tests, SandboxLimits(wall_timeout_s=20.0, per_test_timeout_s=1.0))
    assert run.outcomes == {"test_hostile.py::test_hang": "failed", "test_hostile.py::test_after": "passed"}
    assert not run.timed_out

    code, tests = _write(tmp_path, "import time\ntime.sleep(10 ** 9)\n\ndef test_never():\n    pass\n")
    run = run_pytest(code, tests, SandboxLimits(wall_timeout_s=2.0, per_test_timeout_s=1.0))
    assert run.timed_out and run.outcomes == {}


def test_interpreter_crash(tmp_path: Path) -> None:
    code, tests = _write(
        tmp_path,
        """
        import os

        def test_first():
            assert True

        def test_abort():
            os.abort()

        def test_later():
            assert True
        """,
    )
    run = run_pytest(code, tests, SandboxLimits())
    assert run.exit_code is None
    assert run.outcomes == {
        "test_hostile.py::test_first": "passed",
        "test_hostile.py::test_abort": "not_run",
        "test_hostile.py::test_later": "not_run",
    }

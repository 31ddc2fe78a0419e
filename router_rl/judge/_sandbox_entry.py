"""Entry point executed *inside* the sandbox (run by path, as a script, never imported).

It starts as root, confines itself and then runs pytest in-process:

1. a fresh network namespace (``unshare(CLONE_NEWNET)``: no interface but a loopback that is
   down), or, when the kernel refuses, an audit hook that blocks ``socket.connect``/``bind``
   (the result names which one applied);
2. ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE`` and ``RLIMIT_CORE=0``;
3. a private uid/gid with no supplementary groups, keeping only ``CAP_DAC_READ_SEARCH`` (so the
   interpreter's standard library, which may live under a root-only folder, stays readable; it
   gives read access, never write), then ``PR_SET_NO_NEW_PRIVS``. Because the uid is private,
   ``RLIMIT_NPROC`` counts only this run's processes and the parent can kill every one of them;
4. pytest with coverage.py (branch coverage of the code under test) and a small plugin that
   appends every test report to a JSON-lines file as it happens, so a crash keeps what ran.

This file imports only the standard library, pytest, pytest-timeout and coverage.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
from typing import Any

CLONE_NEWNET = 0x40000000
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _block_sockets() -> None:
    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"):
            raise PermissionError(f"network disabled by the judge sandbox ({event})")

    sys.addaudithook(hook)


def _isolate(spec: dict[str, Any]) -> dict[str, Any]:
    libc = _libc()
    applied: dict[str, Any] = {}
    if spec["isolate_network"]:
        if libc.unshare(CLONE_NEWNET) == 0:
            applied["network"] = "netns"
        else:
            applied["network"] = "audit-hook"
            applied["netns_errno"] = ctypes.get_errno()
    else:
        applied["network"] = "host"
    mb = 1024 * 1024
    limits = {
        resource.RLIMIT_CPU: (spec["cpu_s"], spec["cpu_s"] + 1),
        resource.RLIMIT_AS: (spec["memory_mb"] * mb, spec["memory_mb"] * mb),
        resource.RLIMIT_NPROC: (spec["max_processes"], spec["max_processes"]),
        resource.RLIMIT_FSIZE: (spec["max_file_mb"] * mb, spec["max_file_mb"] * mb),
        resource.RLIMIT_CORE: (0, 0),
    }
    for what, value in limits.items():
        resource.setrlimit(what, value)
    uid = spec["uid"]
    if os.getuid() == 0:
        libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        bit = 1 << CAP_DAC_READ_SEARCH
        data[0].effective = data[0].permitted = data[0].inheritable = bit
        if libc.capset(ctypes.byref(hdr), data) != 0:
            raise OSError(ctypes.get_errno(), "capset(CAP_DAC_READ_SEARCH) failed")
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0)
        applied["uid"] = uid
    else:
        applied["uid"] = os.getuid()
        applied["uid_note"] = "judge not running as root: the run keeps the judge's own uid"
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if applied["network"] == "audit-hook":
        _block_sockets()
    return applied


class _Collector:
    """pytest plugin: one JSON line per collected item and per test report."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "a", buffering=1)  # noqa: SIM115 - closed in pytest_unconfigure

    def _write(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self._write({"event": "collect_error", "nodeid": report.nodeid, "message": str(report.longrepr)[-400:]})

    def pytest_collection_finish(self, session: Any) -> None:
        self._write({"event": "collected", "nodeids": [item.nodeid for item in session.items]})

    def pytest_runtest_logreport(self, report: Any) -> None:
        self._write(
            {
                "event": "report",
                "nodeid": report.nodeid,
                "when": report.when,
                "outcome": report.outcome,
                "duration": float(report.duration),
            }
        )

    def pytest_unconfigure(self, config: Any) -> None:
        self._fh.close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _pytest_args(spec: dict[str, Any], targets: list[str]) -> list[str]:
    args = [
        *targets,
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "pytest_timeout",
        "--timeout",
        str(spec["per_test_timeout_s"]),
        "--timeout-method",
        "signal",
        "-c",
        spec["ini_path"],
        "--rootdir",
        spec["tests_dir"],
    ]
    if spec["exitfirst"]:
        args.append("-x")
    return args


def _mutant_pool(spec: dict[str, Any]) -> int:
    """Fork one child per mutant from this pytest-warm process, ``workers`` at a time.

    Each child puts its mutant's copy of the code first on ``sys.path``, runs pytest on the
    target tests and exits with pytest's code; a child past ``per_mutant_timeout_s`` is killed
    (its process group) and recorded as a timeout. One JSON line per finished mutant.
    """
    import time

    import pytest

    start = time.monotonic()
    pending = list(spec["mutants"])
    running: dict[int, tuple[int, float]] = {}
    out = open(spec["mutant_results_path"], "a", buffering=1)  # noqa: SIM115 - closed below
    base_path = [p for p in sys.path if os.path.abspath(p) != os.path.abspath(spec["code_dir"])]
    try:
        while pending or running:
            while pending and len(running) < spec["workers"]:
                job = pending.pop(0)
                if time.monotonic() - start > spec["total_budget_s"]:
                    out.write(json.dumps({"id": job["id"], "status": "skipped_budget"}) + "\n")
                    continue
                pid = os.fork()
                if pid == 0:
                    code = 3
                    try:
                        os.setpgid(0, 0)
                        sys.path[:] = [job["code_dir"], *base_path]
                        os.environ["PYTHONPATH"] = job["code_dir"]
                        devnull = os.open(os.devnull, os.O_WRONLY)
                        os.dup2(devnull, 1)
                        os.dup2(devnull, 2)
                        code = int(pytest.main(_pytest_args(spec, spec["targets"])))
                    finally:
                        os._exit(code)
                running[pid] = (job["id"], time.monotonic())
            done = False
            for pid, (mid, t0) in list(running.items()):
                waited, status = os.waitpid(pid, os.WNOHANG)
                if waited == pid:
                    code = os.waitstatus_to_exitcode(status)
                    out.write(json.dumps({"id": mid, "status": "exit", "exit_code": code,
                                          "wall_s": time.monotonic() - t0}) + "\n")
                    del running[pid]
                    done = True
                elif time.monotonic() - t0 > spec["per_mutant_timeout_s"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    out.write(json.dumps({"id": mid, "status": "timeout", "wall_s": time.monotonic() - t0}) + "\n")
                    del running[pid]
                    done = True
            if not done:
                time.sleep(0.005)
    finally:
        out.close()
    return 0


def main() -> int:
    # sys.path[0] is this file's folder (router_rl/judge): drop it so that nothing of the judge
    # shadows the tests' imports (e.g. a module named like a library).
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    applied = _isolate(spec)
    os.chdir(spec["tests_dir"])
    if spec.get("mutants") is not None:
        return _mutant_pool(spec)
    signal.signal(signal.SIGTERM, _interrupt)
    import pytest

    cov = None
    if spec["coverage"]:
        import coverage

        cov = coverage.Coverage(
            data_file=os.path.join(spec["work_dir"], ".coverage"),
            branch=True,
            source=[spec["code_dir"]],
            config_file=False,
        )
        cov.start()
    args = _pytest_args(spec, spec["targets"])
    exit_code: int | None = None
    try:
        exit_code = int(pytest.main(args, plugins=[_Collector(spec["events_path"])]))
    except KeyboardInterrupt:
        exit_code = 2
    finally:
        result: dict[str, Any] = {"isolation": applied, "exit_code": exit_code}
        if cov is not None:
            cov.stop()
            cov.save()
            try:
                cov.json_report(outfile=spec["coverage_path"], pretty_print=False)
                result["coverage"] = "ok"
            except Exception as e:
                result["coverage"] = f"{type(e).__name__}: {e}"[:400]
        with open(spec["result_path"], "w") as fh:
            json.dump(result, fh)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

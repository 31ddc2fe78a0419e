"""The runner's housekeeping that needs no Ray: stopping what a failed start left behind."""

from __future__ import annotations

import subprocess
import sys

import psutil

from router_rl.tune.runner import child_pids, stop_new_children


def test_stop_new_children_kills_only_what_was_started_since() -> None:
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = child_pids()
        new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        killed = stop_new_children(before)
        assert new.pid in killed and old.pid not in killed
        new.wait(timeout=10)
        assert not psutil.pid_exists(new.pid)  # killed (and reaped) long before its 60 s
        assert old.poll() is None  # still running
    finally:
        old.kill()
        old.wait(timeout=10)

"""`ray job submit` of a small benchmark run to a real local head.

The head is the session's (``ray_head`` in tests/conftest.py, started by ``tests/_ray_head.py``): the
dashboard on (the job-submission API lives there) on free loopback ports and its own temp dir;
stopping it touches only the processes it started (never ``ray stop``, which would stop every Ray
of the machine). The job uploads this checkout as its working dir and must run that copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def test_ray_job_submit_runs_a_benchmark_on_a_local_head(ray_head: Any, tmp_path: Path) -> None:
    if not RAY.is_file():
        pytest.skip(f"no ray command next to {sys.executable}")
    out = tmp_path / "bench"
    entry = ("python -c 'import router_rl; print(\"router_rl from\", router_rl.__file__)' && "
             "python experiments/benchmark.py --datasets simulated --seeds 0 1 --policies lgbm cheapest "
             f"--sim-tasks 300 --max-train-tasks 300 --preset quick --n-bootstrap 10 --address auto "
             f"--out-dir {out} --name job")
    cmd = [str(RAY), "job", "submit", "--address", ray_head.dashboard_url, "--working-dir", str(ROOT),
           "--submission-id", f"rrl-bench-{os.getpid()}", "--", "bash", "-c", entry]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_cli_env(), timeout=900, cwd=tmp_path)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert "succeeded" in log.lower()
    # the job ran the uploaded copy of the working dir, not an installed router_rl
    origin = next(line for line in log.splitlines() if line.startswith("router_rl from "))
    assert "runtime_resources" in origin and "working_dir_files" in origin, origin
    summary = json.loads((out / "job.json").read_text())
    rows = {(r["dataset"], r["policy"]) for r in summary["results"]}
    assert rows == {("simulated", "lgbm"), ("simulated", "cheapest")}
    assert summary["failures"] == []
    assert "--address auto" in summary["run"]["command"]
    assert (out / "job.md").is_file()

"""Package-level guarantees: fast import, no heavy dependency pulled in by ``import router_rl``."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("ray", "flwr", "torch", "transformers", "peft", "lightgbm", "stable_baselines3")


def test_import_router_rl_pulls_no_heavy_dependency() -> None:
    code = (
        "import sys, json, router_rl, router_rl.cli.main;"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_cli_help_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "router_rl", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout

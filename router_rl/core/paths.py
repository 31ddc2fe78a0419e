"""Where the third-party datasets live (never inside this repository)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "ROUTER_RL_DATASETS"


def datasets_dir() -> Path | None:
    """Return the datasets folder, or ``None`` when it is absent.

    Looks at ``$ROUTER_RL_DATASETS`` first, then ``../shared/datasets`` relative to the
    repository root (the parent of the installed ``router_rl`` package) and the current
    working directory.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    repo_root = Path(__file__).resolve().parents[2]
    for base in (repo_root, Path.cwd()):
        p = (base / ".." / "shared" / "datasets").resolve()
        if p.is_dir():
            return p
    return None


def require_datasets_dir(name: str | None = None) -> Path:
    """Like :func:`datasets_dir` but raise ``FileNotFoundError`` with guidance when absent.

    Args:
        name: Optional dataset sub-folder that must exist too.
    """
    root = datasets_dir()
    if root is None:
        raise FileNotFoundError(
            f"dataset folder not found: set ${ENV_VAR} or place the data at ../shared/datasets"
        )
    if name is not None:
        sub = root / name
        if not sub.is_dir():
            raise FileNotFoundError(f"dataset {name!r} not found under {root}")
        return sub
    return root

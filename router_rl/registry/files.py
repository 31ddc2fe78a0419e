"""Atomic, durable file primitives of the policy registry: JSON via tmp + ``os.replace``, sha256, ``flock``."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from router_rl.traces.parts import fsync_dir


def utc_now() -> str:
    """Current UTC time, ISO-8601 with milliseconds (``2026-12-01T14:00:00.123Z``)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def json_clean(obj: Any) -> Any:
    """A JSON-stable copy: non-finite floats become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(obj, Mapping):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_clean(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        return json_clean(obj.tolist())
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON via a temporary file + ``os.replace`` (fsynced)."""
    text = json.dumps(json_clean(data), indent=2, sort_keys=False, allow_nan=False)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_sha256(directory: Path) -> dict[str, str]:
    """``relative posix path -> sha256`` of every regular file under ``directory`` (sorted)."""
    out: dict[str, str] = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            out[p.relative_to(directory).as_posix()] = sha256_file(p)
    return out



@contextlib.contextmanager
def flock(path: Path) -> Iterator[None]:
    """Exclusive ``fcntl.flock`` on ``path`` (created if needed) for the duration of the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

"""Importers: dataset folder/file -> validated :class:`~router_rl.traces.TraceSet`.

``IMPORTERS`` maps a kind to ``fn(path, *, drop_invalid=False, seed=0) -> TraceSet``. Modules
are imported lazily on first use. ``llmperf`` is not an outcome matrix: see
:func:`router_rl.traces.importers.llmperf.load_provider_latency`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from router_rl.traces.traceset import TraceSet

Importer = Callable[..., TraceSet]

_SPECS: dict[str, tuple[str, str, str]] = {
    # kind: (module, function, dataset folder name)
    "long": ("router_rl.traces.importers.long", "import_long", ""),
    "routerbench": ("router_rl.traces.importers.routerbench", "import_routerbench", "routerbench-subset-via-routerdc"),
    "llmrouter": ("router_rl.traces.importers.llmrouter", "import_llmrouter", "llmrouter-dcrouter-9model"),
    "routerdc": ("router_rl.traces.importers.routerdc", "import_routerdc", "routerdc-7model-oss"),
    "bfcl": ("router_rl.traces.importers.bfcl", "import_bfcl", "bfcl-v2-2024-08-11"),
}
#: Dataset folder (under the shared datasets dir) of each kind; ``llmperf`` included.
DATASET_FOLDERS: dict[str, str] = {k: v[2] for k, v in _SPECS.items() if v[2]} | {
    "llmperf": "llmperf-provider-latency"
}


class _Registry(Mapping[str, Importer]):
    """Read-only kind -> importer mapping that imports each module on first access."""

    def __getitem__(self, kind: str) -> Importer:
        try:
            mod, fn, _ = _SPECS[kind]
        except KeyError:
            raise KeyError(f"unknown importer {kind!r}; known: {sorted(_SPECS)}") from None
        func: Importer = getattr(importlib.import_module(mod), fn)
        return func

    def __iter__(self) -> Iterator[str]:
        return iter(_SPECS)

    def __len__(self) -> int:
        return len(_SPECS)


IMPORTERS: Mapping[str, Importer] = _Registry()


def import_traces(kind: str, path: str | Path, **kw: Any) -> TraceSet:
    """Run importer ``kind`` on ``path`` (keyword args: ``drop_invalid``, ``seed``)."""
    return IMPORTERS[kind](path, **kw)


__all__ = ["DATASET_FOLDERS", "IMPORTERS", "Importer", "import_traces"]

"""A real llama.cpp server (llama-cpp-python) on 127.0.0.1 serving the tiny offline model.

The model (and its LoRA adapter) is built once per session; the engine is started once per module
and restarted by the tests that kill it. Without llama-cpp-python the tests skip locally and fail in
CI (``CI=true``): the ``local-engine`` extra is part of ``[all]``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _engine_helpers import engine_models

from router_rl.engines.llamacpp import LlamaCppServer
from router_rl.engines.tiny import TinyEngineModel, build_tiny_engine_model, build_tiny_lora

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require_engine() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        if IN_CI:
            pytest.fail("CI=true but llama-cpp-python is not installed (the local-engine extra is in [all])")
        pytest.skip("llama-cpp-python not installed (pip install -e '.[local-engine]')")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyEngineModel:
    _require_engine()
    return build_tiny_engine_model(tmp_path_factory.mktemp("tiny-engine"), seed=0)


@pytest.fixture(scope="session")
def tiny_lora(tiny_model: TinyEngineModel) -> Path:
    _peft, gguf = build_tiny_lora(tiny_model, tiny_model.root / "lora", seed=0)
    return gguf


@pytest.fixture(scope="module")
def engine(tiny_model: TinyEngineModel) -> Iterator[LlamaCppServer]:
    with LlamaCppServer(engine_models(tiny_model)) as srv:
        yield srv

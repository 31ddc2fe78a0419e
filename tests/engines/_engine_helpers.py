"""Shared names of the engine tests (a unique module name: ``conftest`` is ambiguous across folders)."""

from __future__ import annotations

from pathlib import Path

from router_rl.engines.llamacpp import EngineModel
from router_rl.engines.tiny import TinyEngineModel

BASE = "tiny"
ADAPTED = "tiny+qe"


def engine_models(tiny_model: TinyEngineModel, lora: Path | None = None) -> list[EngineModel]:
    """The base model, and the base with the LoRA adapter as its own alias when ``lora`` is given."""
    models = [EngineModel(BASE, tiny_model.gguf, n_ctx=tiny_model.context_length)]
    if lora is not None:
        models.append(EngineModel(ADAPTED, tiny_model.gguf, lora=lora, n_ctx=tiny_model.context_length))
    return models

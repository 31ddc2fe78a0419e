"""Real local inference engines behind the router (llama.cpp today), and the tiny model they serve in tests.

* :func:`build_tiny_engine_model`: a seeded random-init Llama-architecture model with a SentencePiece
  tokenizer trained on simulated QE prompts, written as a Hugging Face folder and as GGUF, offline
  and byte-for-byte reproducible (:mod:`router_rl.engines.tiny`).
* :func:`llama_to_gguf` / :func:`lora_to_gguf`: Hugging Face Llama weights and PEFT LoRA adapters to
  the GGUF files llama.cpp loads (:mod:`router_rl.engines.gguf_export`).
* :class:`LlamaCppServer`: ``python -m llama_cpp.server`` on a free loopback port, started and stopped
  by PID (:mod:`router_rl.engines.llamacpp`).

Heavy dependencies (torch, transformers, sentencepiece, gguf, llama_cpp) are imported where used; the
``local-engine`` extra installs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router_rl.engines.gguf_export import llama_to_gguf, lora_to_gguf
    from router_rl.engines.llamacpp import EngineModel, LlamaCppServer
    from router_rl.engines.tiny import TinyEngineModel, build_tiny_engine_model

__all__ = [
    "EngineModel",
    "LlamaCppServer",
    "TinyEngineModel",
    "build_tiny_engine_model",
    "llama_to_gguf",
    "lora_to_gguf",
]

_LAZY = {
    "llama_to_gguf": "router_rl.engines.gguf_export",
    "lora_to_gguf": "router_rl.engines.gguf_export",
    "EngineModel": "router_rl.engines.llamacpp",
    "LlamaCppServer": "router_rl.engines.llamacpp",
    "TinyEngineModel": "router_rl.engines.tiny",
    "build_tiny_engine_model": "router_rl.engines.tiny",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'router_rl.engines' has no attribute {name!r}")

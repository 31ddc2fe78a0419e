"""Async LLM providers (OpenAI-compatible, Ollama, Anthropic) behind one interface.

Only the contract (:mod:`router_rl.providers.base`) is imported here; the implementations are
loaded on demand by :func:`build_provider` or by importing their modules.
"""

from router_rl.providers.base import (
    PROVIDER_REGISTRY,
    CompletionRequest,
    CompletionResult,
    HealthStatus,
    Provider,
    ProviderConfig,
    ProviderError,
    ProviderErrorKind,
    ProviderInfo,
    Secret,
    StreamChunk,
    Usage,
    build_provider,
    build_providers,
    register_provider,
)

__all__ = [
    "PROVIDER_REGISTRY",
    "CompletionRequest",
    "CompletionResult",
    "HealthStatus",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderErrorKind",
    "ProviderInfo",
    "Secret",
    "StreamChunk",
    "Usage",
    "build_provider",
    "build_providers",
    "register_provider",
]

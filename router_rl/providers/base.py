"""The provider contract: one async interface for every LLM backend the router can call.

Everything the live router needs from a backend lives here: request/result dataclasses, a
typed error with a machine-readable :class:`ProviderErrorKind`, the :class:`Provider` ABC, the
validated :class:`ProviderConfig` and the provider registry (:func:`build_provider`).
(Over 500 lines on purpose: it is the one contract every provider module implements; split, a
provider author would need five files open to write one provider.)

Secrets: API keys come from an environment variable (``api_key_env``) or a file
(``api_key_file``), never inline. They are held in a :class:`Secret` whose ``repr``/``str`` is
masked, and :class:`ProviderError` messages never contain keys or prompt text.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from router_rl.core.errors import ConfigError, RouterRLError
from router_rl.traces.catalog import ModelCatalog, ModelSpec

if TYPE_CHECKING:
    import numpy as np

ProviderKind = Literal["openai_compatible", "ollama", "anthropic"]
Location = Literal["local", "cloud"]


# --- request / result -------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    """Token usage of one call.

    Attributes:
        input_tokens: Prompt tokens.
        output_tokens: Completion tokens.
        estimated: True when the backend did not report (part of) it and the counts are the
            provider's ``count_tokens`` estimate (e.g. a stream without a usage chunk).
    """

    input_tokens: int
    output_tokens: int
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class CompletionRequest:
    """One chat completion request, provider-neutral.

    Attributes:
        model: Model id (as in the catalog).
        messages: OpenAI-style ``{"role": ..., "content": ...}`` dicts; a ``system`` message is
            split out by providers whose API wants it separately (Anthropic).
        max_tokens: Maximum output tokens (provider default when ``None``).
        temperature: Sampling temperature (provider default when ``None``).
        stop: Stop sequences.
        timeout_s: Per-call read timeout overriding the provider's ``timeout_s``.
        extra: Provider-specific body fields merged into the request JSON, plus
            ``extra["headers"]`` (dict) sent as additional HTTP headers (e.g. a task id).
    """

    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    timeout_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("CompletionRequest.model: must be a non-empty string")
        if not isinstance(self.messages, list) or not self.messages:
            raise ValueError("CompletionRequest.messages: expected a non-empty list of {'role','content'} dicts")
        for i, m in enumerate(self.messages):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise ValueError(f"CompletionRequest.messages[{i}]: expected a dict with 'role' and 'content'")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ValueError(f"CompletionRequest.max_tokens: expected > 0, got {self.max_tokens}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"CompletionRequest.timeout_s: expected > 0, got {self.timeout_s}")

    def __repr__(self) -> str:  # never print prompt text
        chars = sum(len(m.get("content", "")) for m in self.messages)
        return f"CompletionRequest(model={self.model!r}, n_messages={len(self.messages)}, prompt_chars={chars})"

    @property
    def prompt_text(self) -> str:
        """All message contents joined by newlines (for token estimates and hashing)."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


@dataclass(frozen=True)
class CompletionResult:
    """What a completed call returned.

    Attributes:
        provider: Provider name that served the call.
        model: Model id that served it.
        content: Generated text.
        usage: Token usage (reported by the server, else estimated).
        latency_s: Wall-clock seconds from sending the request to the last byte.
        ttft_s: Seconds to the first content token (streaming), else ``None``.
        finish_reason: ``"stop"``, ``"length"``, ... as reported.
        raw: The decoded final response body (non-stream) or the last event (stream).
    """

    provider: str
    model: str
    content: str
    usage: Usage
    latency_s: float
    ttft_s: float | None
    finish_reason: str | None
    raw: dict[str, Any] | None = None

    def __repr__(self) -> str:  # never print generated text
        return (
            f"CompletionResult(provider={self.provider!r}, model={self.model!r}, content_chars={len(self.content)}, "
            f"usage={self.usage!r}, latency_s={self.latency_s:.4f}, ttft_s={self.ttft_s}, "
            f"finish_reason={self.finish_reason!r})"
        )


@dataclass(frozen=True)
class StreamChunk:
    """One streamed piece: a text delta, and on the last chunk(s) the finish reason / usage."""

    delta: str
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class HealthStatus:
    """Result of a health probe."""

    ok: bool
    latency_s: float | None
    detail: str


# --- errors -----------------------------------------------------------------------------------
class ProviderErrorKind(StrEnum):
    """Machine-readable failure class (the value is what decision logs store in ``error``)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_4XX = "http_4xx"
    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    MALFORMED = "malformed"
    STREAM_BROKEN = "stream_broken"
    AUTH = "auth"
    UNSUPPORTED = "unsupported"
    CONTEXT_TOO_LONG = "context_too_long"


#: Kinds that are worth retrying by default (STREAM_BROKEN only before the first token).
RETRYABLE_KINDS: frozenset[ProviderErrorKind] = frozenset(
    {
        ProviderErrorKind.TIMEOUT,
        ProviderErrorKind.CONNECTION,
        ProviderErrorKind.HTTP_429,
        ProviderErrorKind.HTTP_5XX,
        ProviderErrorKind.STREAM_BROKEN,
    }
)


class ProviderError(RouterRLError):
    """A provider call failed.

    The message never contains API keys or prompt text; it names the provider, the model (when
    known), the kind and a short detail.

    Attributes:
        provider: Provider name.
        kind: Failure class.
        status: HTTP status when one was received.
        retryable: Whether retrying the same call may succeed.
        after_first_token: True when a stream broke after content was already delivered (the
            caller cannot transparently retry or fall back without duplicating output).
        model: Model id of the call, when known.
        retry_after_s: Server-requested wait (``Retry-After``) when given.
        attempts: Number of attempts made (1 = no retry).
    """

    def __init__(
        self,
        provider: str,
        kind: ProviderErrorKind,
        detail: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        after_first_token: bool = False,
        model: str | None = None,
        retry_after_s: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.provider = provider
        self.kind = ProviderErrorKind(kind)
        self.detail = detail
        self.status = status
        if retryable is None:
            retryable = self.kind in RETRYABLE_KINDS and not after_first_token
        self.retryable = retryable
        self.after_first_token = after_first_token
        self.model = model
        self.retry_after_s = retry_after_s
        self.attempts = attempts
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.provider}" + (f"/{self.model}" if self.model else "")
        bits = [f"provider {where}: {self.kind.value}"]
        if self.status is not None:
            bits.append(f"(HTTP {self.status})")
        bits.append(f"- {self.detail}")
        if self.after_first_token:
            bits.append("[after first token]")
        if self.attempts > 1:
            bits.append(f"[after {self.attempts} attempts]")
        return " ".join(bits)

    def with_attempts(self, attempts: int) -> ProviderError:
        """Copy of this error recording ``attempts`` attempts."""
        return ProviderError(
            self.provider,
            self.kind,
            self.detail,
            status=self.status,
            retryable=self.retryable,
            after_first_token=self.after_first_token,
            model=self.model,
            retry_after_s=self.retry_after_s,
            attempts=attempts,
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (Ray)
        return (
            _rebuild_provider_error,
            (
                self.provider,
                self.kind.value,
                self.detail,
                self.status,
                self.retryable,
                self.after_first_token,
                self.model,
                self.retry_after_s,
                self.attempts,
            ),
        )


def _rebuild_provider_error(
    provider: str,
    kind: str,
    detail: str,
    status: int | None,
    retryable: bool,
    after_first_token: bool,
    model: str | None,
    retry_after_s: float | None,
    attempts: int,
) -> ProviderError:
    return ProviderError(
        provider,
        ProviderErrorKind(kind),
        detail,
        status=status,
        retryable=retryable,
        after_first_token=after_first_token,
        model=model,
        retry_after_s=retry_after_s,
        attempts=attempts,
    )


# --- secrets ----------------------------------------------------------------------------------
class Secret:
    """A string that never shows itself in ``repr``/``str``/f-strings; use :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value (only for building request headers)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("Secret values are not picklable")


# --- config -----------------------------------------------------------------------------------
class ProviderConfig(BaseModel):
    """Validated configuration of one provider.

    Attributes:
        name: Provider name (unique in a router config, e.g. ``"ollama"``, ``"anthropic"``).
        kind: Implementation: ``openai_compatible`` | ``ollama`` | ``anthropic``.
        base_url: Server root, e.g. ``http://127.0.0.1:11434`` (a trailing ``/v1`` is accepted).
        api_key_env: Name of the environment variable holding the API key.
        api_key_file: Path of a file whose (stripped) content is the API key.
        models: Model ids or catalog entries (dicts of :class:`ModelSpec` fields; ``provider``,
            ``location`` and ``gpu_usd_per_hour`` default to this provider's values).
        location: Where the models run: ``local`` (cost = GPU-seconds x rate) or ``cloud`` (tokens).
        timeout_s: Default read timeout of one call (seconds).
        connect_timeout_s: Connect timeout (seconds).
        max_retries: Retries after the first attempt on retryable errors (0 = no retry).
        backoff_base_s: First backoff cap; attempt ``k`` waits ``U(0, min(max, base * 2**k))``.
        backoff_max_s: Upper bound of any backoff wait (and of an honoured ``Retry-After``).
        gpu_usd_per_hour: GPU price for local models (used when a model entry does not set one).
        max_connections: Connection-pool size of the HTTP client.
        keepalive_expiry_s: How long an idle pooled connection is reused. Keep it below the
            backend's own idle keep-alive (uvicorn: 5 s), so the router always retires a connection
            before the server closes it; otherwise a call can race the server's close and fail
            with a transport error.
        options: Kind-specific settings (``keep_alive`` for Ollama, ``anthropic_version``,
            ``include_usage`` for OpenAI-compatible streams).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(min_length=1)
    kind: ProviderKind = "openai_compatible"
    base_url: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    models: list[str | dict[str, Any]] = Field(default_factory=list)
    location: Location = "local"
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=20)
    backoff_base_s: float = Field(default=0.25, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    gpu_usd_per_hour: float = Field(default=0.0, ge=0)
    max_connections: int = Field(default=64, ge=1)
    keepalive_expiry_s: float = Field(default=2.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        for bad in ("api_key", "key", "token", "password"):
            if bad in data:
                # raised before pydantic so the value can never be echoed in a validation error
                raise ConfigError(
                    f"provider {data.get('name', '?')!r}.{bad}",
                    "API keys are never configured inline; use api_key_env (variable name) or api_key_file",
                )
        super().__init__(**data)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("models")
    @classmethod
    def _check_models(cls, v: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        seen: set[str] = set()
        for i, m in enumerate(v):
            mid = m if isinstance(m, str) else m.get("model")
            if not isinstance(mid, str) or not mid:
                raise ValueError(f"models[{i}]: expected a model id or a dict with a non-empty 'model'")
            if mid in seen:
                raise ValueError(f"models[{i}]: duplicate model {mid!r}")
            seen.add(mid)
        return v

    @model_validator(mode="after")
    def _check_consistency(self) -> ProviderConfig:
        if self.api_key_env and self.api_key_file:
            raise ValueError("set only one of api_key_env / api_key_file")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_base_s ({self.backoff_base_s})")
        return self

    @property
    def model_ids(self) -> tuple[str, ...]:
        """Model ids in config order."""
        return tuple(m if isinstance(m, str) else str(m["model"]) for m in self.models)

    def resolve_api_key(self) -> Secret | None:
        """Read the API key from ``api_key_env`` / ``api_key_file``.

        Returns:
            The key wrapped in :class:`Secret`, or ``None`` when no key is configured.

        Raises:
            ConfigError: when the configured variable is unset/empty or the file is unreadable.
        """
        if self.api_key_env:
            val = os.environ.get(self.api_key_env, "").strip()
            if not val:
                raise ConfigError(
                    f"provider {self.name!r}.api_key_env",
                    f"environment variable {self.api_key_env} is not set or empty",
                )
            return Secret(val)
        if self.api_key_file:
            try:
                val = Path(self.api_key_file).expanduser().read_text().strip()
            except OSError as e:
                raise ConfigError(
                    f"provider {self.name!r}.api_key_file", f"cannot read {self.api_key_file}: {e.strerror}"
                ) from None
            if not val:
                raise ConfigError(f"provider {self.name!r}.api_key_file", f"{self.api_key_file} is empty")
            return Secret(val)
        return None

    def build_catalog(self, catalog: ModelCatalog | None = None) -> ModelCatalog:
        """The catalog of this provider's models.

        Ids found in ``catalog`` use that entry; other ids get a spec with this provider's
        ``location`` and ``gpu_usd_per_hour`` and zero token prices; dict entries are
        completed with those defaults.
        """
        specs: list[ModelSpec] = []
        for i, m in enumerate(self.models):
            try:
                if isinstance(m, str):
                    if catalog is not None and m in catalog:
                        specs.append(catalog[m])
                    else:
                        specs.append(
                            ModelSpec(
                                model=m,
                                provider=self.name,
                                location=self.location,
                                gpu_usd_per_hour=self.gpu_usd_per_hour if self.location == "local" else 0.0,
                            )
                        )
                else:
                    kw = dict(m)
                    kw.setdefault("provider", self.name)
                    kw.setdefault("location", self.location)
                    if kw["location"] == "local":
                        kw.setdefault("gpu_usd_per_hour", self.gpu_usd_per_hour)
                    specs.append(ModelSpec(**kw))
            except (TypeError, ValueError) as e:
                raise ConfigError(f"provider {self.name!r}.models[{i}]", str(e)) from None
        return ModelCatalog(specs)


# --- the interface ----------------------------------------------------------------------------
def estimate_tokens(text: str) -> int:
    """Heuristic token count: ``ceil(chars / 4)`` (0 for empty text)."""
    return math.ceil(len(text) / 4) if text else 0


@dataclass(frozen=True)
class ProviderInfo:
    """Static description of a provider."""

    name: str
    location: Location
    models: tuple[str, ...]
    base_url: str
    supports_stream: bool
    supports_embed: bool


class Provider(ABC):
    """An async LLM backend.

    Subclasses implement :meth:`complete`, :meth:`stream` (an async generator) and
    :meth:`health`; :meth:`embed` defaults to ``UNSUPPORTED``.

    Attributes:
        name: Provider name (from the config).
        info: Static description.
        config: The validated config.
        catalog: Catalog of this provider's models (prices, location) used by :meth:`cost`.
        rng: Generator for backoff jitter.
    """

    kind: ClassVar[str] = "base"
    supports_stream: ClassVar[bool] = True
    supports_embed: ClassVar[bool] = False

    def __init__(
        self,
        config: ProviderConfig,
        *,
        catalog: ModelCatalog | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        from router_rl.core.seeding import as_generator

        self.config = config
        self.rng: np.random.Generator = as_generator(rng)
        self.name: str = config.name
        self.catalog: ModelCatalog = config.build_catalog(catalog)
        self.info = ProviderInfo(
            name=config.name,
            location=config.location,
            models=tuple(self.catalog.models),
            base_url=config.base_url,
            supports_stream=self.supports_stream,
            supports_embed=self.supports_embed,
        )

    def __repr__(self) -> str:
        cls = type(self).__name__
        return f"{cls}(name={self.name!r}, base_url={self.config.base_url!r}, models={self.info.models})"

    @abstractmethod
    async def complete(self, req: CompletionRequest) -> CompletionResult:
        """Run one non-streaming completion.

        Raises:
            ProviderError: on any failure (after retries on retryable kinds).
        """

    @abstractmethod
    def stream(self, req: CompletionRequest) -> AsyncIterator[StreamChunk]:
        """Stream one completion as :class:`StreamChunk` objects (an async generator).

        Raises:
            ProviderError: ``STREAM_BROKEN`` with ``after_first_token`` telling whether text was
                already yielded; other kinds as in :meth:`complete`.
        """

    async def embed(self, texts: list[str], model: str | None = None) -> list[list[float]]:
        """Embed ``texts``; providers without embeddings raise ``UNSUPPORTED``."""
        raise ProviderError(self.name, ProviderErrorKind.UNSUPPORTED, "embeddings are not supported", model=model)

    def count_tokens(self, text: str, model: str | None = None) -> int:
        """Token count of ``text`` (heuristic ``chars/4`` unless a tokenizer is known)."""
        return estimate_tokens(text)

    @abstractmethod
    async def health(self) -> HealthStatus:
        """Probe the server (never raises)."""

    def cost(self, model: str, usage: Usage, latency_s: float) -> float:
        """USD cost of one call from the catalog.

        Cloud models: tokens x price. Local models: measured ``latency_s`` as GPU-seconds x the
        GPU USD/hour (plus any token price configured).

        Raises:
            ConfigError: when ``model`` is not one of this provider's models.
        """
        if model not in self.catalog:
            raise ConfigError(f"provider {self.name!r}.models", f"model {model!r} is not configured here")
        spec = self.catalog[model]
        gpu_s = max(0.0, float(latency_s)) if spec.is_local else None
        return spec.cost(usage.input_tokens, usage.output_tokens, gpu_seconds=gpu_s)

    async def close(self) -> None:
        """Release connections."""

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- registry ---------------------------------------------------------------------------------
P = TypeVar("P", bound=type[Provider])

#: kind -> Provider class. Filled by the implementation modules (see :func:`build_provider`).
PROVIDER_REGISTRY: dict[str, type[Provider]] = {}

_BUILTIN_MODULES: dict[str, str] = {
    "openai_compatible": "router_rl.providers.openai_compat",
    "ollama": "router_rl.providers.ollama",
    "anthropic": "router_rl.providers.anthropic",
}


def register_provider(kind: str) -> Callable[[P], P]:
    """Class decorator adding a provider implementation to :data:`PROVIDER_REGISTRY`."""

    def deco(cls: P) -> P:
        if kind in PROVIDER_REGISTRY and PROVIDER_REGISTRY[kind] is not cls:
            raise ValueError(f"provider kind {kind!r} is already registered by {PROVIDER_REGISTRY[kind].__name__}")
        cls.kind = kind
        PROVIDER_REGISTRY[kind] = cls
        return cls

    return deco


def build_provider(
    config: ProviderConfig | Mapping[str, Any],
    *,
    catalog: ModelCatalog | None = None,
    rng: np.random.Generator | None = None,
) -> Provider:
    """Instantiate the provider for ``config.kind``.

    Args:
        config: A :class:`ProviderConfig` or a dict of its fields.
        catalog: Optional shared catalog; model ids found there use its prices.
        rng: Generator for backoff jitter (seeded in tests / benchmarks).

    Raises:
        ConfigError: unknown kind, missing API key, bad model entries.
    """
    if not isinstance(config, ProviderConfig):
        config = ProviderConfig(**dict(config))
    if config.kind not in PROVIDER_REGISTRY and config.kind in _BUILTIN_MODULES:
        import importlib

        importlib.import_module(_BUILTIN_MODULES[config.kind])
    cls = PROVIDER_REGISTRY.get(config.kind)
    if cls is None:
        raise ConfigError(
            f"provider {config.name!r}.kind", f"unknown kind {config.kind!r}; known: {sorted(PROVIDER_REGISTRY)}"
        )
    return cls(config, catalog=catalog, rng=rng)


def build_providers(
    configs: Sequence[ProviderConfig | Mapping[str, Any]],
    *,
    catalog: ModelCatalog | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, Provider]:
    """Build several providers keyed by name (names must be unique)."""
    out: dict[str, Provider] = {}
    for c in configs:
        p = build_provider(c, catalog=catalog, rng=rng)
        if p.name in out:
            raise ConfigError("providers", f"duplicate provider name {p.name!r}")
        out[p.name] = p
    return out

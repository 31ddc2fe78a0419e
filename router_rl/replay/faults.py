"""Fault injection rules of the replay backend (configurable per model / provider / API, at runtime)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from router_rl.core.errors import ConfigError


class FaultKind(StrEnum):
    """What the replay backend does instead of (or in the middle of) a normal answer.

    * ``timeout``: wait ``delay_s`` (not scaled) before answering, beyond the client timeout.
    * ``http_5xx``: answer ``status`` (default 503).
    * ``http_429``: answer 429 with ``Retry-After: retry_after_s`` when set.
    * ``http_4xx``: answer ``status`` (default 400) with error ``code`` (e.g.
      ``context_length_exceeded``).
    * ``reset``: close the TCP connection abruptly (RST) before any response byte.
    * ``reset_after_first_token``: stream the first token, then reset (non-stream: ``reset``).
    * ``malformed``: HTTP 200 with a truncated JSON body / a broken SSE event.
    * ``stall_before_first_token``: send stream headers, then nothing for ``delay_s``.
    * ``stall_after_first_token``: send the first token, then nothing for ``delay_s``.
    """

    TIMEOUT = "timeout"
    HTTP_5XX = "http_5xx"
    HTTP_429 = "http_429"
    HTTP_4XX = "http_4xx"
    RESET = "reset"
    RESET_AFTER_FIRST_TOKEN = "reset_after_first_token"
    MALFORMED = "malformed"
    STALL_BEFORE_FIRST_TOKEN = "stall_before_first_token"
    STALL_AFTER_FIRST_TOKEN = "stall_after_first_token"


class FaultRule(BaseModel):
    """One fault rule; the first matching rule whose probability draw succeeds applies.

    Attributes:
        kind: What to do (see :class:`FaultKind`).
        model: Only requests for this model id (``None`` = any).
        provider: Only models whose catalog ``provider`` is this (``None`` = any).
        api: Only ``openai`` (``/v1/chat/completions``) or ``anthropic`` (``/v1/messages``) calls.
        stream: Only streaming (True) or non-streaming (False) requests.
        probability: Chance the rule fires on a matching request (seeded draw).
        count: Fire at most this many times (``None`` = unlimited); decremented when fired.
        status: HTTP status for ``http_5xx`` / ``http_4xx``.
        code: Error code in the body for ``http_4xx`` (e.g. ``context_length_exceeded``).
        retry_after_s: ``Retry-After`` seconds for ``http_429`` (and 503).
        delay_s: Wait of ``timeout`` / ``stall_*`` in real seconds (not scaled by time_scale).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: FaultKind
    model: str | None = None
    provider: str | None = None
    api: Literal["openai", "anthropic"] | None = None
    stream: bool | None = None
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    count: int | None = Field(default=None, ge=0)
    status: int | None = Field(default=None, ge=400, le=599)
    code: str | None = None
    retry_after_s: float | None = Field(default=None, ge=0)
    delay_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_status(self) -> FaultRule:
        if self.status is not None:
            if self.kind == FaultKind.HTTP_5XX and self.status < 500:
                raise ValueError(f"kind http_5xx needs a status >= 500, got {self.status}")
            if self.kind == FaultKind.HTTP_4XX and not 400 <= self.status < 500:
                raise ValueError(f"kind http_4xx needs a 4xx status, got {self.status}")
        return self

    def matches(self, *, model: str, provider: str | None, api: str, stream: bool) -> bool:
        """Whether the filters select this request (ignores probability and count)."""
        return (
            (self.model is None or self.model == model)
            and (self.provider is None or self.provider == provider)
            and (self.api is None or self.api == api)
            and (self.stream is None or self.stream == stream)
            and (self.count is None or self.count > 0)
        )

    @property
    def http_status(self) -> int:
        """The status this rule answers with (for HTTP kinds)."""
        if self.status is not None:
            return self.status
        return {FaultKind.HTTP_5XX: 503, FaultKind.HTTP_429: 429, FaultKind.HTTP_4XX: 400}.get(self.kind, 500)


class FaultSet:
    """Ordered fault rules with a seeded generator for probability draws.

    Args:
        rules: Rules (or dicts of their fields).
        seed: Seed of the probability draws.
    """

    def __init__(self, rules: list[FaultRule | dict[str, Any]] | None = None, *, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.rules: list[FaultRule] = parse_rules(rules or [])
        self.fired: list[int] = [0] * len(self.rules)

    def replace(self, rules: list[FaultRule | dict[str, Any]]) -> None:
        """Swap in new rules (counters restart)."""
        self.rules = parse_rules(rules)
        self.fired = [0] * len(self.rules)

    def add(self, rules: list[FaultRule | dict[str, Any]]) -> None:
        """Append rules."""
        new = parse_rules(rules)
        self.rules.extend(new)
        self.fired.extend([0] * len(new))

    def clear(self) -> None:
        """Remove every rule."""
        self.replace([])

    def pick(self, *, model: str, provider: str | None, api: str, stream: bool) -> FaultRule | None:
        """The rule to apply to this request, or ``None`` (decrements the rule's ``count``)."""
        for i, rule in enumerate(self.rules):
            if not rule.matches(model=model, provider=provider, api=api, stream=stream):
                continue
            if rule.probability < 1.0 and not self.rng.random() < rule.probability:
                continue
            if rule.count is not None:
                rule.count -= 1
            self.fired[i] += 1
            return rule
        return None

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready rules with how often each fired."""
        return [{**r.model_dump(mode="json"), "fired": n} for r, n in zip(self.rules, self.fired, strict=True)]


def parse_rules(rules: Any, *, source: str = "faults") -> list[FaultRule]:
    """Validate a list of rule dicts, naming the offending index and field."""
    if isinstance(rules, dict) and "faults" in rules:
        rules = rules["faults"]
    if not isinstance(rules, list):
        raise ConfigError(source, f"expected a list of fault rules, got {type(rules).__name__}")
    out: list[FaultRule] = []
    for i, r in enumerate(rules):
        if isinstance(r, FaultRule):
            out.append(r.model_copy())
            continue
        if not isinstance(r, dict):
            raise ConfigError(f"{source}[{i}]", f"expected an object, got {type(r).__name__}")
        try:
            out.append(FaultRule(**r))
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'rule'}: {err['msg']}" for err in e.errors()
            )
            raise ConfigError(f"{source}[{i}]", problems) from None
    return out


def load_faults(path: str | Path) -> list[FaultRule]:
    """Read fault rules from a JSON or YAML file (a list, or ``{"faults": [...]}``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("faults", f"cannot read {path}: {e.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError
        raise ConfigError("faults", f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {e}") from None
    return parse_rules(data, source=str(path))

"""ProviderConfig validation, registry, cost/token helpers, and that API keys never leak."""

from __future__ import annotations

import asyncio
import logging
import pickle
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _provider_helpers import LOCAL_MODEL, faults
from pydantic import ValidationError

from router_rl.core.errors import ConfigError
from router_rl.providers import (
    PROVIDER_REGISTRY,
    CompletionRequest,
    ProviderConfig,
    ProviderError,
    ProviderErrorKind,
    Usage,
    build_provider,
    build_providers,
)
from router_rl.providers.base import estimate_tokens
from router_rl.replay.server import ReplayBackendServer
from router_rl.traces.catalog import ModelCatalog, ModelSpec

KEY = "sk-SECRET-9f8e7d6c5b4a3210"
PROMPT = "confidential prompt text about customer 4711 that must not leak"


def test_config_validation_messages() -> None:
    with pytest.raises(ValidationError, match="base_url"):
        ProviderConfig(name="x", base_url="ftp://host")
    with pytest.raises(ValidationError, match="backoff_max_s"):
        ProviderConfig(name="x", base_url="http://h", backoff_base_s=2, backoff_max_s=1)
    with pytest.raises(ValidationError, match="only one of api_key_env"):
        ProviderConfig(name="x", base_url="http://h", api_key_env="A", api_key_file=Path("/k"))
    with pytest.raises(ValidationError, match=r"models\[1\]: duplicate model 'm'"):
        ProviderConfig(name="x", base_url="http://h", models=["m", {"model": "m"}])
    with pytest.raises(ValidationError, match="timeout_s"):
        ProviderConfig(name="x", base_url="http://h", timeout_s=0)
    assert ProviderConfig(name="x", base_url="http://h/").base_url == "http://h"


def test_inline_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as ei:
        ProviderConfig(name="x", base_url="http://h", api_key=KEY)
    assert "api_key_env" in str(ei.value) and KEY not in str(ei.value)
    with pytest.raises(ValidationError) as ve:  # a bad value elsewhere never echoes inputs
        ProviderConfig(name="x", base_url="http://h", api_key_env=KEY, timeout_s=-1)
    assert KEY not in str(ve.value)


def test_missing_key_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RRL_NOPE", raising=False)
    with pytest.raises(ConfigError, match="RRL_NOPE is not set"):
        build_provider({"name": "x", "base_url": "http://h", "api_key_env": "RRL_NOPE"})
    with pytest.raises(ConfigError, match="cannot read"):
        build_provider({"name": "x", "base_url": "http://h", "api_key_file": str(tmp_path / "missing")})
    f = tmp_path / "key"
    f.write_text(KEY + "\n")
    p = build_provider({"name": "x", "base_url": "http://h", "api_key_file": str(f)})
    assert p._headers()["authorization"] == f"Bearer {KEY}"  # type: ignore[attr-defined]
    assert KEY not in repr(p) and KEY not in repr(p._key) and KEY not in f"{p._key}"  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        pickle.dumps(p._key)  # type: ignore[attr-defined]


def test_registry_and_unknown_kind() -> None:
    build_provider({"name": "a", "kind": "anthropic", "base_url": "http://h"})
    build_provider({"name": "o", "kind": "ollama", "base_url": "http://h"})
    assert {"openai_compatible", "ollama", "anthropic"} <= set(PROVIDER_REGISTRY)
    with pytest.raises(ValidationError, match="kind"):
        build_provider({"name": "x", "kind": "bogus", "base_url": "http://h"})
    with pytest.raises(ConfigError, match="duplicate provider name 'a'"):
        build_providers([{"name": "a", "base_url": "http://h"}, {"name": "a", "base_url": "http://g"}])


def test_catalog_cost_and_tokens() -> None:
    shared = ModelCatalog([ModelSpec("gpt-x", "openrouter", "cloud", usd_per_m_input=1.0, usd_per_m_output=2.0)])
    p = build_provider(
        {"name": "or", "base_url": "http://h", "location": "cloud", "models": ["gpt-x", "other"]}, catalog=shared
    )
    assert p.cost("gpt-x", Usage(1000, 500), 3.0) == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert p.cost("other", Usage(1000, 500), 3.0) == 0.0  # cloud, no price configured
    loc = build_provider({"name": "l", "base_url": "http://h", "models": ["m"], "gpu_usd_per_hour": 7.2})
    assert loc.cost("m", Usage(10, 10), 0.5) == pytest.approx(0.5 * 7.2 / 3600)
    assert loc.info.location == "local" and loc.info.models == ("m",) and loc.info.supports_embed
    with pytest.raises(ConfigError, match="'nope' is not configured"):
        loc.cost("nope", Usage(1, 1), 1.0)
    assert estimate_tokens("") == 0 and estimate_tokens("abcde") == 2 and loc.count_tokens("abcd" * 10) == 10
    with pytest.raises(ConfigError, match=r"models\[0\]"):
        build_provider({"name": "b", "base_url": "http://h", "models": [{"model": "m", "location": "mars"}]})


def test_requests_and_errors_are_safe_to_print() -> None:
    r = CompletionRequest("m", [{"role": "user", "content": PROMPT}])
    assert PROMPT not in repr(r)
    with pytest.raises(ValueError, match="messages"):
        CompletionRequest("m", [])
    e = ProviderError("p", ProviderErrorKind.STREAM_BROKEN, "boom", after_first_token=True, model="m")
    assert not e.retryable and "after first token" in str(e)
    e2 = pickle.loads(pickle.dumps(e.with_attempts(3)))
    assert e2.kind == e.kind and e2.attempts == 3 and e2.after_first_token and str(e2) == str(e.with_attempts(3))
    assert ProviderError("p", ProviderErrorKind.HTTP_5XX, "x").retryable
    assert not ProviderError("p", ProviderErrorKind.HTTP_4XX, "x").retryable


def test_key_and_prompt_never_leak(
    replay: ReplayBackendServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run successes and every failure mode with DEBUG logging; search logs, errors, reprs."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("RRL_TEST_KEY", KEY)
    replay.backend._api_key = KEY
    texts: list[str] = []

    def mk(**kw: Any) -> Any:
        cfg = {"name": "sec", "base_url": replay.base_url, "api_key_env": "RRL_TEST_KEY", "models": [LOCAL_MODEL],
               "max_retries": 1, "backoff_base_s": 0.001, **kw}
        return build_provider(cfg, rng=np.random.default_rng(0))

    req = CompletionRequest(LOCAL_MODEL, [{"role": "user", "content": PROMPT}], timeout_s=0.3)

    async def attempt(p: Any, stream: bool) -> None:
        try:
            if stream:
                async for ch in p.stream(req):
                    texts.append(repr(ch))
            else:
                texts.append(repr(await p.complete(req)))
        except ProviderError as e:
            texts.extend([str(e), repr(e), "".join(traceback.format_exception(e))])
        finally:
            texts.append(repr(p))
            texts.append(repr(p.config))
            texts.append(str(p.config.model_dump()))
            await p.close()

    rules = [None, {"kind": "http_5xx"}, {"kind": "http_429", "retry_after_s": 0.01}, {"kind": "reset"},
             {"kind": "malformed"}, {"kind": "stall_after_first_token", "delay_s": 2},
             {"kind": "http_4xx", "code": "context_length_exceeded"}]
    for rule in rules:
        faults(replay, *([rule] if rule else []))
        for stream in (False, True):
            asyncio.run(attempt(mk(), stream))
    # wrong key -> AUTH error must not echo the key it was sent
    replay.backend._api_key = "another-key-000000"
    asyncio.run(attempt(mk(), False))
    assert any("auth" in t for t in texts)
    out = capsys.readouterr()
    blob = "\n".join([*texts, caplog.text, out.out, out.err])
    for kind in ("http_5xx", "http_429", "connection", "malformed", "stream_broken", "context_too_long", "auth"):
        assert kind in blob  # every failure path was exercised and captured
    assert KEY not in blob
    assert PROMPT not in blob and PROMPT[:40] not in blob

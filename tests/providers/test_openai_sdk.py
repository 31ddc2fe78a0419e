"""The official OpenAI Python SDK works against the replay backend."""

from __future__ import annotations

from _provider_helpers import LOCAL_MODEL

from router_rl.replay.server import ReplayBackendServer


def test_openai_sdk_complete_and_stream(replay: ReplayBackendServer) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=replay.base_url + "/v1", api_key="sk-test", max_retries=0, timeout=5)
    try:
        resp = client.chat.completions.create(
            model=LOCAL_MODEL,
            messages=[{"role": "user", "content": "Write a unit test for function number t0"}],
        )
        assert resp.choices[0].message.content == "ok quality=0.9000 task=t0"
        assert resp.usage is not None and resp.usage.prompt_tokens == 100 and resp.usage.completion_tokens == 20

        stream = client.chat.completions.create(
            model=LOCAL_MODEL,
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-router-rl-task-id": "t1"},
        )
        parts, usage = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
        assert "".join(parts) == "fail quality=0.2000 task=t1"
        assert usage is not None and usage.completion_tokens == 20
        assert [m.id for m in client.models.list()] == [LOCAL_MODEL, "claude-cloud"]
    finally:
        client.close()

"""The one paced SSE generator: both dialects get the same timing and the same fault behaviour."""

from __future__ import annotations

import asyncio
import json

import pytest

from router_rl.replay.faults import FaultKind, FaultRule
from router_rl.replay.wire import AnthropicDialect, OpenAIDialect, paced_stream

OUT = {"content": "ok quality=0.9000 task=t1", "input_tokens": 12, "output_tokens": 4, "task_id": "t1",
       "quality": 0.9, "verdict": "ok", "recorded_latency_s": 2.0, "cost_usd": 0.001}
BODY = {"model": "m", "stream_options": {"include_usage": True}}


def _run(dialect_cls: type, rule: FaultRule | None) -> tuple[list[bytes], list[float], int]:
    waits: list[float] = []
    resets = 0

    async def wait(s: float) -> None:  # a fake clock: record, do not sleep
        waits.append(round(s, 9))

    def reset() -> None:
        nonlocal resets
        resets += 1

    async def collect() -> list[bytes]:
        return [ev async for ev in paced_stream(dialect_cls(BODY, OUT), OUT, rule, total_s=1.0, wait=wait,
                                                reset=reset)]

    return asyncio.run(collect()), waits, resets


def _text(events: list[bytes], dialect_cls: type) -> str:
    out = []
    for ev in events:
        for line in ev.decode().splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                d = json.loads(line[6:])
                if dialect_cls is OpenAIDialect:
                    out += [c["delta"].get("content") or "" for c in d.get("choices", [])]
                elif d.get("type") == "content_block_delta":
                    out.append(d["delta"]["text"])
    return "".join(out)


@pytest.mark.parametrize("dialect_cls", [OpenAIDialect, AnthropicDialect])
def test_healthy_stream_paces_30_70_and_carries_the_content(dialect_cls: type) -> None:
    events, waits, resets = _run(dialect_cls, None)
    n = len(OUT["content"].split(" "))
    assert waits == [0.3] + [round(0.7 / (n - 1), 9)] * (n - 1) and resets == 0
    assert _text(events, dialect_cls) == OUT["content"]
    last = events[-1].decode()
    assert last == "data: [DONE]\n\n" if dialect_cls is OpenAIDialect else last.startswith("event: message_stop")


@pytest.mark.parametrize(
    ("kind", "expect_pieces", "expect_waits", "expect_resets"),
    [
        (FaultKind.MALFORMED, 0, [], 0),
        (FaultKind.STALL_BEFORE_FIRST_TOKEN, 0, [7.0], 0),
        (FaultKind.STALL_AFTER_FIRST_TOKEN, 1, [0.3, 7.0], 0),
        (FaultKind.RESET_AFTER_FIRST_TOKEN, 1, [0.3], 1),
    ],
)
def test_stream_faults_are_identical_in_both_dialects(kind: FaultKind, expect_pieces: int, expect_waits: list,
                                                      expect_resets: int) -> None:
    rule = FaultRule(kind=kind, delay_s=7.0)
    seen = []
    for dialect_cls in (OpenAIDialect, AnthropicDialect):
        events, waits, resets = _run(dialect_cls, rule)
        text = _text([e for e in events if b'"broken"' not in e and b'{"te\n' not in e], dialect_cls)
        pieces = len(text.split(" ")) if text else 0
        assert (pieces, waits, resets) == (expect_pieces, expect_waits, expect_resets), dialect_cls
        assert not any(b"[DONE]" in e or b"message_stop" in e for e in events)  # never a clean end
        seen.append((pieces, waits, resets))
    assert seen[0] == seen[1]

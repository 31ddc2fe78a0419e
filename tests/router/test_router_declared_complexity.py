"""An agent may declare the task's complexity with the request (issue #17 item 3): validated, encoded, logged.

Real router over real replay backends on 127.0.0.1, with a real fitted encoder that has a ``complexity``
column (what a router trained with declared complexity uses).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _router_helpers import SIMPLE_PROMPT, router_config

from router_rl.features.encoder import EncoderConfig, FeatureEncoder
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.request import RouteInput
from router_rl.router.validation import BadRequest, parse_chat_body
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
LEVELS = ["SIMPLE", "MODERATE", "COMPLEX", "VERY_COMPLEX"]


def _body(**meta: Any) -> dict[str, Any]:
    return {"model": "router-rl/auto", "messages": [{"role": "user", "content": "hi"}], "metadata": meta}


def test_declared_complexity_is_validated_and_normalised() -> None:
    inp, _, _ = parse_chat_body(_body(complexity="complex"), {})
    assert inp.complexity == "COMPLEX"
    inp, _, _ = parse_chat_body(_body(), {"x-task-complexity": "Very_Complex"})
    assert inp.complexity == "VERY_COMPLEX"
    assert parse_chat_body(_body(), {})[0].complexity is None
    for bad, headers, param in ((_body(complexity="hard"), {}, "metadata.complexity"),
                                (_body(complexity=3), {}, "metadata.complexity"),
                                (_body(), {"x-task-complexity": "easy"}, "x-task-complexity")):
        with pytest.raises(BadRequest) as ei:
            parse_chat_body(bad, headers)
        assert ei.value.param == param and "SIMPLE" in str(ei.value)


def test_declared_complexity_reaches_the_features_and_the_log(backends: Backends, tmp_path: Path) -> None:
    tasks = pl.DataFrame({
        "prompt": [f"write tests for f{i}" for i in range(40)],
        "agent_type": ["gen"] * 40, "category": ["unit"] * 40,
        "complexity": [LEVELS[i % 4] for i in range(40)],
    })
    enc = FeatureEncoder(EncoderConfig(categorical_columns=("agent_type", "category", "complexity"))).fit(tasks)
    enc_path = enc.save(tmp_path / "encoder.json")
    local, cloud = backends
    log = tmp_path / "log"
    router = HybridRouter(parse_config(router_config(
        local.base_url, cloud.base_url, features={"encoder_path": str(enc_path)},
        logging={"decision_log_dir": str(log), "flush_interval_s": 60})))

    async def go() -> None:
        try:
            for rid, cx in (("declared", "COMPLEX"), ("undeclared", None)):
                await router.route(RouteInput(messages=[{"role": "user", "content": SIMPLE_PROMPT}], request_id=rid,
                                              max_tokens=8, agent_type="gen", category="unit", complexity=cx))
        finally:
            await router.aclose()

    asyncio.run(go())
    rows = {r["request_id"]: r for r in read_decision_log(log).iter_rows(named=True)}
    assert rows["declared"]["declared_complexity"] == "COMPLEX"
    assert rows["undeclared"]["declared_complexity"] is None
    names = enc.feature_names
    col = names.index("cat:complexity=COMPLEX")
    unk = names.index("cat:complexity=__unknown__")
    base = {"prompt": SIMPLE_PROMPT, "agent_type": "gen", "category": "unit", "max_tokens": 8, "n_messages": 1}
    for rid, rec in (("declared", {**base, "complexity": "COMPLEX"}), ("undeclared", base)):
        np.testing.assert_allclose(rows[rid]["features"], enc.transform_records([rec])[0], rtol=1e-6)
    assert rows["declared"]["features"][col] == 1.0 and rows["declared"]["features"][unk] == 0.0
    assert rows["undeclared"]["features"][col] == 0.0 and rows["undeclared"]["features"][unk] == 1.0

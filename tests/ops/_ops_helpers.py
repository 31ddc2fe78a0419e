"""A live fleet on 127.0.0.1 for the operations tests: replay backends, a real router, traffic, feedback.

The router routes with a random logging policy (encoder attached) under epsilon exploration, logs
its decisions and takes feedback; :meth:`LiveFleet.traffic` sends chat requests through the
official ``openai`` SDK and :meth:`LiveFleet.outage` makes the local backend fail a few calls
(fallbacks, a breaker trip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import polars as pl

from router_rl.client import FeedbackClient, request_id_of
from router_rl.features import FeatureEncoder
from router_rl.policies.baselines import RandomPolicy
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.catalog import ModelCatalog, ModelSpec

#: The repository's deploy/ folder (Prometheus rules, Grafana dashboards).
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MODELS = ("small-local", "big-local", "cloud-large")
TOKEN = "tok-ops-0123456789abcdef"
CLOUD_KEY_ENV = "ROUTER_RL_TEST_OPS_CLOUD_KEY"
CLOUD_KEY = "sk-test-ops-0123456789abcdef"
AGENT_TYPES = ("test-generation", "coverage-analysis")
#: quality per (kind of task, model): the small model writes unit tests well, only big ones find races
KINDS = {"unit": (0.9, 0.8, 0.95), "race": (0.2, 0.85, 0.9)}
PROMPTS = {f"{kind}{i}": (f"Write unit tests for module m{i}" if kind == "unit" else
                          f"Find the race condition in the cache of service s{i}")
           for kind in KINDS for i in range(10)}
IN_TOKENS, OUT_TOKENS = 40, 120
CLOUD_PRICE = (3.0, 15.0)  # USD per million input / output tokens


def catalog() -> ModelCatalog:
    """The fleet's catalog (the router's own prices)."""
    return ModelCatalog([
        ModelSpec("small-local", "local", "local", gpu_usd_per_hour=1.0, tokens_per_s=200.0),
        ModelSpec("big-local", "local", "local", gpu_usd_per_hour=1.0, tokens_per_s=40.0),
        ModelSpec("cloud-large", "cloud", "cloud", usd_per_m_input=CLOUD_PRICE[0], usd_per_m_output=CLOUD_PRICE[1]),
    ])


def quality_of(task: str, model: str) -> float:
    """The replayed quality of ``model`` on ``task``."""
    return KINDS[task.rstrip("0123456789")][MODELS.index(model)]


def _frame(models: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame([
        {"task_id": t, "model": m, "quality": quality_of(t, m), "cost_usd": 0.0, "latency_s": 0.1,
         "input_tokens": IN_TOKENS, "output_tokens": OUT_TOKENS, "prompt": p}
        for t, p in PROMPTS.items() for m in models
    ])


class LiveFleet:
    """Backends + router on 127.0.0.1 (a context manager); decision log and feedback under ``root``."""

    def __init__(self, root: Path, *, seed: int = 3) -> None:
        self.root = root
        self.seed = seed
        self.sent: list[dict[str, Any]] = []
        self._stack: list[Any] = []

    def __enter__(self) -> LiveFleet:
        import os

        os.environ[CLOUD_KEY_ENV] = CLOUD_KEY
        os.environ["ROUTER_RL_API_TOKENS"] = TOKEN
        cat = catalog()
        self.local_backend = ReplayBackend.from_frame(_frame(MODELS[:2]), time_scale=0.0,
                                                      catalog=cat.subset(MODELS[:2]))
        cloud = ReplayBackend.from_frame(_frame(MODELS[2:]), time_scale=0.0, api_key=CLOUD_KEY,
                                         catalog=cat.subset(MODELS[2:]))
        self.local = ReplayBackendServer(self.local_backend).__enter__()
        self._stack.append(self.local)
        self.cloud = ReplayBackendServer(cloud).__enter__()
        self._stack.append(self.cloud)
        tasks = pl.DataFrame({"task_id": list(PROMPTS), "prompt": list(PROMPTS.values()),
                              "agent_type": [AGENT_TYPES[i % 2] for i in range(len(PROMPTS))],
                              "category": ["qe"] * len(PROMPTS)})
        policy_dir = self.root / "logger"
        RandomPolicy(MODELS, weights=[0.45, 0.35, 0.2]).attach_encoder(FeatureEncoder().fit(tasks)).save(policy_dir)
        cfg = parse_config({
            "providers": [
                {"name": "local", "kind": "openai_compatible", "base_url": self.local.base_url, "location": "local",
                 "gpu_usd_per_hour": 1.0, "max_retries": 0, "timeout_s": 10.0,
                 "models": [{"model": "small-local", "tokens_per_s": 200.0},
                            {"model": "big-local", "tokens_per_s": 40.0}]},
                {"name": "cloud", "kind": "openai_compatible", "base_url": self.cloud.base_url, "location": "cloud",
                 "api_key_env": CLOUD_KEY_ENV, "max_retries": 0, "timeout_s": 10.0,
                 "models": [{"model": "cloud-large", "usd_per_m_input": CLOUD_PRICE[0],
                             "usd_per_m_output": CLOUD_PRICE[1]}]},
            ],
            "tiers": {"simple": "small-local", "moderate": "small-local", "complex": "big-local",
                      "very_complex": "cloud-large"},
            "strategy": "learned",
            "learned": {"policy_dir": str(policy_dir), "sample": True},
            "exploration": {"default": {"epsilon": 0.2}},
            "breaker": {"consecutive_failures": 2, "min_calls": 2, "window": 4, "reset_timeout_s": 0.5},
            "logging": {"decision_log_dir": str(self.root / "decisions"), "flush_interval_s": 0.2},
            "seed": self.seed,
        })
        self.router = HybridRouter.from_config(cfg)
        self.server = RouterServer(build_server_app(self.router)).__enter__()
        self._stack.append(self.server)
        return self

    def __exit__(self, *exc: object) -> None:
        while self._stack:
            self._stack.pop().__exit__(None, None, None)

    @property
    def base_url(self) -> str:
        """The router's URL."""
        return str(self.server.base_url)

    def traffic(self, reps: int, *, tag: str = "") -> None:
        """Send every prompt ``reps`` times (agent types alternate); remember id, task, served model."""
        from openai import APIStatusError, OpenAI

        sdk = OpenAI(base_url=self.base_url + "/v1", api_key=TOKEN, max_retries=0)
        for rep in range(reps):
            for i, (task, prompt) in enumerate(PROMPTS.items()):
                rid = f"{tag}{task}-r{rep}"
                try:
                    raw = sdk.chat.completions.with_raw_response.create(
                        model="router-rl/auto", messages=[{"role": "user", "content": prompt}],
                        extra_headers={"x-agent-type": AGENT_TYPES[i % 2], "x-request-id": rid})
                except APIStatusError as e:  # no model could serve it: logged as failed by the router
                    self.sent.append({"request_id": rid, "task": task, "served": None, "status": e.status_code,
                                      "agent_type": AGENT_TYPES[i % 2]})
                    continue
                resp = raw.parse()
                self.sent.append({"request_id": request_id_of(resp), "task": task,
                                  "served": raw.headers["x-router-model"], "status": 200,
                                  "agent_type": AGENT_TYPES[i % 2]})

    def outage(self, count: int) -> None:
        """The local backend answers 503 to its next ``count`` calls."""
        r = httpx.post(self.local.base_url + "/admin/faults", json={"faults": [{"kind": "http_5xx", "count": count}]})
        r.raise_for_status()

    def feedback(self, skip_last: int = 0) -> int:
        """Send each answered request's replayed quality as feedback (all but the last ``skip_last`` answered
        ones); returns how many were sent."""
        answered = [s for s in self.sent if s["served"] is not None]
        items = [{"request_id": s["request_id"], "quality": quality_of(s["task"], s["served"]),
                  "source": "judge:pytest", "idempotency_key": f"k-{s['request_id']}"}
                 for s in answered[: len(answered) - skip_last]]
        with FeedbackClient(self.base_url, api_key=TOKEN) as fb:
            for i in range(0, len(items), 50):
                fb.send_batch(items[i:i + 50])
        return len(items)

    def metrics_text(self) -> str:
        """The router's ``/metrics``."""
        r = httpx.get(self.base_url + "/metrics")
        r.raise_for_status()
        return r.text


# --- PromQL series names (dashboards and rules must only read series that exist) -------------------
_PROMQL_WORDS = frozenset({
    "sum", "avg", "min", "max", "count", "rate", "increase", "irate", "histogram_quantile", "by", "without", "on",
    "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool", "avg_over_time", "vector",
    "scalar", "abs", "clamp_min", "clamp_max", "topk", "bottomk", "time", "inf", "nan",
})


def promql_series(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label matchers, ranges, grouping labels, functions removed)."""
    import re

    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\d+[a-z]+", " ", e)
    e = re.sub(r"(?<![A-Za-z0-9_:.])\d+(\.\d+)?([eE][+-]?\d+)?", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        if e[m.end():].lstrip().startswith("(") or tok.lower() in _PROMQL_WORDS:
            continue
        names.add(tok)
    return names


def exported_series(metrics_text: str) -> set[str]:
    """Series names a ``/metrics`` text exposes, by family type (a labelled family without samples counts)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: set[str] = set()
    for fam in text_string_to_metric_families(metrics_text):
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("_sum", "_count", "_created"), "gauge": ("",)}.get(fam.type, ("",))
        out.update(fam.name + s for s in suffixes)
        out.update(s.name for s in fam.samples)
    return out


def recorded_series() -> set[str]:
    """Names the recording rules of ``deploy/prometheus/rules.yml`` define."""
    import yaml

    groups = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}

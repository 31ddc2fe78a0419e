"""The router configuration (``router.yaml``), validated on construction.

Every problem is reported as a :class:`~router_rl.core.errors.ConfigError` naming the exact
setting, e.g. ``providers[1].api_key_env: environment variable ANTHROPIC_API_KEY is not set``.
API keys and bearer tokens are read from environment variables or secret files only.

Size: over 500 lines because the sections of ``router.yaml`` without a module of their own are
validated here, next to the cross-checks and the loader; a section whose module exists keeps its
model there (``breaker.py``, ``budget.py``, ``exploration.py``, ``encoding.py``, ``canary.py``,
``rollback.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router_rl.core.errors import ConfigError
from router_rl.providers.base import ProviderConfig
from router_rl.router.breaker import BreakerConfig
from router_rl.router.budget import BudgetConfig
from router_rl.router.canary import CanaryConfig
from router_rl.router.encoding import FeaturesConfig
from router_rl.router.exploration import ExplorationSettings
from router_rl.router.refine import RefineConfig
from router_rl.router.rollback import RollbackConfig
from router_rl.traces.catalog import ModelCatalog

COMPLEXITY_LEVELS: tuple[str, ...] = ("simple", "moderate", "complex", "very_complex")


class Strategy(StrEnum):
    """Routing strategies (``model="router-rl/<value>"`` selects one per request)."""

    PRIVACY_FIRST = "privacy_first"
    COST_OPTIMIZED = "cost_optimized"
    QUALITY_OPTIMIZED = "quality_optimized"
    LATENCY_OPTIMIZED = "latency_optimized"
    BALANCED = "balanced"
    LEARNED = "learned"


def _forbid() -> ConfigDict:
    return ConfigDict(extra="forbid", frozen=True)


class TiersConfig(BaseModel):
    """The rule policy: complexity tier -> model (the seed fleet's tiers)."""

    model_config = _forbid()

    simple: str
    moderate: str
    complex: str
    very_complex: str

    def for_level(self, level: str) -> str:
        """Model of complexity ``level`` (one of :data:`COMPLEXITY_LEVELS`)."""
        return str(getattr(self, level))


class CoalesceConfig(BaseModel):
    """Client-side coalescing of a remote policy's calls (``learned.coalesce``; endpoint only).

    Concurrent requests' records are queued and sent together in one ``POST /route`` call
    (:class:`~router_rl.router.policy_batcher.RouteCoalescer`); each request keeps its own
    ``learned.timeout_s`` deadline from its own arrival.

    Attributes:
        enabled: Coalesce (``False``: one ``/route`` call per request).
        max_batch: Most records in one call.
        max_in_flight: Most calls outstanding at once; records arriving meanwhile wait for a free
            slot and leave together.
        io_thread: Run the coalescer, its HTTP client and the callers' deadlines on their own
            event loop in an I/O thread, so a busy router loop does not delay reading answers
            (:class:`~router_rl.router.policy_batcher.ThreadedRouteCoalescer`); ``False``: on
            the router's loop.
    """

    model_config = _forbid()

    enabled: bool = True
    max_batch: int = Field(default=64, ge=1, le=4096)
    max_in_flight: int = Field(default=2, ge=1, le=64)
    io_thread: bool = True


class LearnedConfig(BaseModel):
    """Where the LEARNED strategy's policy comes from, and how its versions are rolled out.

    Attributes:
        policy_dir: A saved :class:`~router_rl.policies.RoutingPolicy` artifact, run in-process.
        endpoint: Base URL of a remote policy endpoint (``POST {endpoint}/route``).
        registry: A policy registry folder (:class:`router_rl.registry.PolicyRegistry`): its live
            version runs in-process (and its canary, when one is recorded); ``POST /admin/policy``
            swaps versions, ramps and rollbacks are recorded there.
        canary: The canary ramp (:class:`~router_rl.router.canary.CanaryConfig`).
        rollback: Automatic rollback (:class:`~router_rl.router.rollback.RollbackConfig`).
        timeout_s: Remote call timeout; past it the rule policy answers.
        sample: Sample the action from the distribution (exploration, valid propensities);
            ``False`` takes the argmax.
        coalesce: How the remote endpoint's calls are coalesced (:class:`CoalesceConfig`).
    """

    model_config = _forbid()

    policy_dir: Path | None = None
    endpoint: str | None = None
    registry: Path | None = None
    timeout_s: float = Field(default=0.05, gt=0)
    sample: bool = True
    coalesce: CoalesceConfig = Field(default_factory=CoalesceConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    rollback: RollbackConfig = Field(default_factory=RollbackConfig)

    @model_validator(mode="after")
    def _one(self) -> LearnedConfig:
        if sum(v is not None for v in (self.policy_dir, self.endpoint, self.registry)) > 1:
            raise ValueError("set only one of policy_dir / endpoint / registry")
        return self

    @property
    def configured(self) -> bool:
        """Whether a policy source is set."""
        return self.policy_dir is not None or self.endpoint is not None or self.registry is not None


class FallbackConfig(BaseModel):
    """Fallback chains and the emergency cloud fallback.

    Attributes:
        emergency_cloud: Allow a cloud model after local failures (never for sensitive requests).
        consecutive_local_failures: Trigger: this many local failures in a row (across requests).
        latency_threshold_s: Trigger: a local attempt failed after this long (also the local
            per-attempt timeout: time to the answer for a non-stream call, to the first byte of
            the stream, then between bytes, for a stream, i.e. its time-to-first-token deadline).
        min_confidence: Trigger: the learned policy's top probability is below this.
        max_attempts: Upper bound on provider attempts per request.
        hedge_after_s: When an attempt has not answered (stream: no first token) after this
            long, start the next candidate alongside it; the first answer wins, the other is
            left running in the background: its real outcome (an answer, or a failure at its own
            timeout ``latency_threshold_s``) feeds its breaker. Set it above the models' normal
            p95 time to first answer; ``None`` = no hedging (sequential failover after each
            attempt's timeout).
        max_hedges: Hedged attempts per request at most (failures still fail over at once).
        hedge_budget: Hedges allowed per routed request on average (a token bucket: each request
            adds this many tokens, up to ``hedge_burst``; each hedge takes one), so hedging can
            never multiply the load of an already slow fleet.
        hedge_burst: Token-bucket capacity of ``hedge_budget``.
    """

    model_config = _forbid()

    emergency_cloud: bool = True
    consecutive_local_failures: int = Field(default=3, ge=1)
    latency_threshold_s: float = Field(default=10.0, gt=0)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    max_attempts: int = Field(default=4, ge=1)
    hedge_after_s: float | None = Field(default=None, gt=0)
    max_hedges: int = Field(default=1, ge=1)
    hedge_budget: float = Field(default=0.2, gt=0, le=1)
    hedge_burst: float = Field(default=20.0, ge=1)


class ShadowConfig(BaseModel):
    """A candidate that decides in parallel (logged as ``shadow_model``, never executed).

    Attributes:
        strategy: The candidate strategy (``learned`` uses ``learned`` unless a candidate policy
            is given here).
        policy_dir: A candidate policy artifact (implies ``strategy: learned``).
        endpoint: A candidate remote policy endpoint (implies ``strategy: learned``).
        timeout_s: Remote call timeout of the candidate.
    """

    model_config = _forbid()

    strategy: Strategy = Strategy.LEARNED
    policy_dir: Path | None = None
    endpoint: str | None = None
    timeout_s: float = Field(default=0.05, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ShadowConfig:
        if self.policy_dir is not None and self.endpoint is not None:
            raise ValueError("set only one of policy_dir / endpoint")
        if (self.policy_dir is not None or self.endpoint is not None) and self.strategy != Strategy.LEARNED:
            raise ValueError("a candidate policy_dir / endpoint needs strategy: learned")
        return self

    @property
    def has_policy(self) -> bool:
        """Whether the shadow brings its own candidate policy."""
        return self.policy_dir is not None or self.endpoint is not None


class RolloutConfig(BaseModel):
    """Safe rollout: shadow mode and A/B percentage.

    Attributes:
        shadow: Optional shadow candidate.
        candidate: Strategy served to the A/B share of ``router-rl/auto`` traffic.
        percentage: Share (0-100) of traffic routed by ``candidate``.
        sticky_by: Hash key of the A/B assignment: ``agent`` (agent id) or ``request`` (request id).
        seed: Salt of the assignment hash (and of policy sampling).
    """

    model_config = _forbid()

    shadow: ShadowConfig | None = None
    candidate: Strategy | None = None
    percentage: float = Field(default=0.0, ge=0, le=100)
    sticky_by: str = "agent"
    seed: int = 0

    @field_validator("sticky_by")
    @classmethod
    def _sticky(cls, v: str) -> str:
        if v not in ("agent", "request"):
            raise ValueError(f"expected 'agent' or 'request', got {v!r}")
        return v

    @model_validator(mode="after")
    def _cand(self) -> RolloutConfig:
        if self.percentage > 0 and self.candidate is None:
            raise ValueError("percentage > 0 needs a candidate strategy")
        return self


class LoggingConfig(BaseModel):
    """Decision log settings.

    Attributes:
        decision_log_dir: Folder of the decision log's part files (``None``: no log).
        batch_size: Rows per part file flush.
        flush_interval_s: Background flush period.
        log_prompts: Log the prompt text of every request (the global switch).
        text_for_agent_types: Agent types whose prompt *and* response text are logged (opt-in
            per agent type). Whatever these say, a request flagged sensitive never has text
            logged.
    """

    model_config = _forbid()

    decision_log_dir: Path | None = None
    batch_size: int = Field(default=256, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)
    log_prompts: bool = False
    text_for_agent_types: frozenset[str] = frozenset()

    def log_prompt(self, agent_type: str | None) -> bool:
        """Whether a (non-sensitive) request of ``agent_type`` has its prompt text logged."""
        return self.log_prompts or (agent_type is not None and agent_type in self.text_for_agent_types)

    def log_response(self, agent_type: str | None) -> bool:
        """Whether a (non-sensitive) request of ``agent_type`` has its answer text logged."""
        return agent_type is not None and agent_type in self.text_for_agent_types


class FeedbackConfig(BaseModel):
    """Outcome feedback (``POST /v1/feedback``, see *Outcome feedback* in ``docs/router.md``).

    Attributes:
        enabled: Serve the endpoint. It also needs ``logging.decision_log_dir`` (the known
            request ids come from the decision log); without one it answers 501 naming that setting.
        dir: Folder of the feedback part files; default: ``feedback/`` beside the decision-log
            folder (``<decision_log_dir>/../feedback``). Must differ from the decision-log folder.
        max_batch: Most items in one batch request.
        max_details_bytes: Largest ``details`` object (its canonical JSON, UTF-8 bytes).
        max_clock_skew_s: How far in the future a client ``ts`` may be (clock skew allowance).
    """

    model_config = _forbid()

    enabled: bool = True
    dir: Path | None = None
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    max_details_bytes: int = Field(default=16_384, ge=2, le=1_048_576)
    max_clock_skew_s: float = Field(default=300.0, ge=0)


class AuthConfig(BaseModel):
    """Bearer-token auth of the HTTP server (tokens from env vars / files; comma or newline separated).

    Attributes:
        enabled: Require a token on ``/v1/*``.
        admin_enabled: Require an admin token on ``/admin/*`` (kill switch, rollout). Independent
            of ``enabled``: turning client auth off never opens the admin API; only
            ``admin_enabled: false`` does. Admin tokens come from ``admin_tokens_*``, else (only
            when ``enabled``) from the client tokens; with no admin token at all the admin
            endpoints answer 401.
    """

    model_config = _forbid()

    enabled: bool = True
    admin_enabled: bool = True
    tokens_env: str | None = "ROUTER_RL_API_TOKENS"
    tokens_file: Path | None = None
    admin_tokens_env: str | None = "ROUTER_RL_ADMIN_TOKENS"
    admin_tokens_file: Path | None = None


class ServerConfig(BaseModel):
    """HTTP server settings.

    Attributes:
        host: Bind address. Anything but a loopback address needs both ``auth.enabled`` and
            ``auth.admin_enabled`` (checked at start, see :func:`check_bind`).
        port: TCP port.
        auth: Bearer-token auth.
        keep_alive_s: How long an idle client connection is kept open. Must exceed the
            clients' pool idle expiry (httpx: 5 s), or a client can reuse a connection the
            server is closing at that instant and get a transport error with no response.
    """

    model_config = _forbid()

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    keep_alive_s: float = Field(default=75.0, gt=0)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names a loopback interface (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: AuthConfig) -> None:
    """Refuse to serve beyond loopback without client and admin auth.

    Raises:
        ConfigError: naming ``server.host``, in one line.
    """
    if is_loopback(host):
        return
    off = [n for n, on in (("server.auth.enabled", auth.enabled), ("server.auth.admin_enabled", auth.admin_enabled))
           if not on]
    if off:
        raise ConfigError("server.host", f"refusing to bind {host} (beyond loopback) with {' and '.join(off)} false; "
                          "enable auth or bind 127.0.0.1")


class RouterConfig(BaseModel):
    """The whole router configuration.

    Attributes:
        providers: Provider configs (see :class:`~router_rl.providers.ProviderConfig`).
        catalog: Optional catalog file whose entries price the providers' model ids.
        tiers: Rule policy (complexity -> model).
        quality_order: Models best-first (QUALITY_OPTIMIZED, fallback order); default: tiers
            from very_complex down, then the remaining models.
        expected_latency_s: Prior latency per model (LATENCY_OPTIMIZED, refined online).
        strategy: Default strategy of ``router-rl/auto``.
        learned: The LEARNED strategy's policy source.
        breaker: Circuit-breaker parameters (one breaker per provider).
        fallback: Fallback / emergency-cloud settings.
        budgets: USD budgets.
        rollout: Shadow / A/B settings.
        logging: Decision log.
        feedback: Outcome feedback endpoint and store.
        exploration: Exploration applied to the decisions.
        features: The encoder of the features logged with every decision.
        server: HTTP server.
        upstream_client: The connection pool of the HTTP providers: ``aiohttp`` (default, the
            cheaper one per request: docs/router.md, *Measured (2026-12-02)*;
            :mod:`router_rl.router.upstream`) or ``httpx`` (httpx's own pool).
        refine: Iterative refinement of local answers (:class:`~router_rl.router.refine.RefineConfig`;
            absent: off; ``refine: {}``: on with the fleet plan's caps and thresholds).
        seed: Seed of every random choice the router makes.
    """

    model_config = _forbid()

    providers: list[ProviderConfig] = Field(min_length=1)
    catalog: Path | None = None
    tiers: TiersConfig
    quality_order: list[str] | None = None
    expected_latency_s: dict[str, float] = Field(default_factory=dict)
    strategy: Strategy = Strategy.BALANCED
    learned: LearnedConfig = Field(default_factory=LearnedConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    budgets: BudgetConfig = Field(default_factory=BudgetConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    exploration: ExplorationSettings = Field(default_factory=ExplorationSettings)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    upstream_client: Literal["aiohttp", "httpx"] = "aiohttp"
    refine: RefineConfig = Field(default_factory=lambda: RefineConfig(enabled=False))
    seed: int = 0

    @model_validator(mode="after")
    def _cross_check(self) -> RouterConfig:
        names = [p.name for p in self.providers]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise ConfigError(f"providers[{i}].name", f"duplicate provider name {n!r}")
        models = self.model_ids()
        for i, m in enumerate(self.refine.escalate_to):
            if m not in models:
                raise ConfigError(f"refine.escalate_to[{i}]", f"unknown model {m!r}; known: {sorted(models)}")
        for m in self.refine.models:
            if m not in models:
                raise ConfigError(f"refine.models.{m}", f"unknown model {m!r}; known: {sorted(models)}")
        for i, p in enumerate(self.providers):
            if not p.models:
                raise ConfigError(f"providers[{i}].models", "expected at least one model")
        seen: dict[str, str] = {}
        for p in self.providers:
            for m in p.model_ids:
                if m in seen:
                    raise ConfigError("providers", f"model {m!r} is served by both {seen[m]!r} and {p.name!r}")
                seen[m] = p.name
        for level in COMPLEXITY_LEVELS:
            m = self.tiers.for_level(level)
            if m not in models:
                raise ConfigError(f"tiers.{level}", f"unknown model {m!r}; configured models: {models}")
        for i, m in enumerate(self.quality_order or []):
            if m not in models:
                raise ConfigError(f"quality_order[{i}]", f"unknown model {m!r}; configured models: {models}")
        for m, v in self.expected_latency_s.items():
            if m not in models:
                raise ConfigError(f"expected_latency_s.{m}", f"unknown model {m!r}; configured models: {models}")
            if not v > 0:
                raise ConfigError(f"expected_latency_s.{m}", f"expected > 0, got {v}")
        shadow = self.rollout.shadow
        uses_learned = Strategy.LEARNED in (
            self.strategy,
            self.rollout.candidate,
            shadow.strategy if shadow is not None and not shadow.has_policy else None,
        )
        if uses_learned and not self.learned.configured:
            raise ConfigError("learned",
                              "strategy 'learned' is used but none of policy_dir / endpoint / registry is set")
        for m in self.budgets.agents:
            if not m:
                raise ConfigError("budgets.agents", "empty agent id")
        fb = self.feedback_dir()
        dl = self.logging.decision_log_dir
        if fb is not None and dl is not None and fb.resolve() == dl.resolve():
            raise ConfigError("feedback.dir", f"{fb} is the decision-log folder; feedback needs its own folder")
        return self

    # --- derived ----------------------------------------------------------------------------
    def feedback_dir(self) -> Path | None:
        """Folder of the feedback store (``feedback.dir``, else ``feedback/`` beside the decision log)."""
        if self.feedback.dir is not None:
            return self.feedback.dir
        dl = self.logging.decision_log_dir
        return None if dl is None else dl.parent / "feedback"

    def model_ids(self) -> list[str]:
        """Every configured model id, in provider order."""
        return [m for p in self.providers for m in p.model_ids]

    def build_catalog(self) -> ModelCatalog:
        """The catalog of all configured models (priced from ``catalog`` when given)."""
        base = None
        if self.catalog is not None:
            try:
                base = ModelCatalog.load(self.catalog)
            except (OSError, ValueError) as e:
                raise ConfigError("catalog", f"cannot load {self.catalog}: {e}") from None
        specs = []
        for i, p in enumerate(self.providers):
            try:
                specs.extend(p.build_catalog(base).specs)
            except ConfigError as e:
                raise ConfigError(f"providers[{i}].models", e.problem) from None
        return ModelCatalog(specs)

    def resolved_quality_order(self) -> list[str]:
        """Best-first model order."""
        if self.quality_order:
            order = list(dict.fromkeys(self.quality_order))
        else:
            order = list(dict.fromkeys(self.tiers.for_level(lv) for lv in reversed(COMPLEXITY_LEVELS)))
        return order + [m for m in self.model_ids() if m not in order]

    def fingerprint(self) -> str:
        """Short hash of the config (part of rule-policy versions; the feedback settings decide nothing)."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"feedback"}), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def check_credentials(self) -> None:
        """Fail when a provider's key or a server token source is missing (names the setting)."""
        for i, p in enumerate(self.providers):
            try:
                p.resolve_api_key()
            except ConfigError as e:
                field = "api_key_env" if p.api_key_env else "api_key_file"
                raise ConfigError(f"providers[{i}].{field}", e.problem) from None
        if self.server.auth.enabled:
            load_tokens(self.server.auth.tokens_env, self.server.auth.tokens_file, setting="server.auth")


def load_tokens(env: str | None, file: Path | None, *, setting: str, required: bool = True) -> frozenset[str]:
    """Read bearer tokens from an environment variable and/or a file.

    Raises:
        ConfigError: when ``required`` and no token could be read (names the setting).
    """
    tokens: set[str] = set()
    if env:
        raw = os.environ.get(env, "")
        tokens.update(t.strip() for t in raw.replace("\n", ",").split(",") if t.strip())
    if file is not None:
        try:
            raw = Path(file).expanduser().read_text()
        except OSError as e:
            raise ConfigError(f"{setting}.tokens_file", f"cannot read {file}: {e.strerror}") from None
        tokens.update(t.strip() for t in raw.replace("\n", ",").split(",") if t.strip())
    if required and not tokens:
        where = f"environment variable {env} is not set or empty" if env else "no token source configured"
        if file is not None:
            where += f" and {file} holds no token"
        raise ConfigError(f"{setting}.tokens_env", where)
    return frozenset(tokens)


def _loc(err: dict[str, Any]) -> str:
    out = ""
    for part in err.get("loc", ()):
        if part == "[key]":  # pydantic's marker of a bad mapping key: the key is already named
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def parse_config(data: Any, *, source: str | None = None) -> RouterConfig:
    """Validate a mapping into a :class:`RouterConfig`.

    Raises:
        ConfigError: naming the first invalid setting (input values are not echoed, so a key
            pasted by mistake never lands in the message).
    """
    if not isinstance(data, dict):
        raise ConfigError("<root>", f"expected a mapping, got {type(data).__name__}", source=source)
    # Name the provider index for keys configured inline (ProviderConfig raises before pydantic).
    for i, p in enumerate(data.get("providers") or []):
        if isinstance(p, dict):
            for bad in ("api_key", "key", "token", "password"):
                if bad in p:
                    raise ConfigError(
                        f"providers[{i}].{bad}",
                        "API keys are never configured inline; use api_key_env or api_key_file",
                        source=source,
                    )
    try:
        return RouterConfig.model_validate(data)
    except ConfigError as e:
        raise ConfigError(e.setting, e.problem, source=source) from None
    except ValidationError as e:
        err = e.errors(include_input=False)[0]
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, ConfigError):
            setting = ctx_err.setting
            if setting.startswith("ExplorationConfig."):  # a nested StrictConfig: name its place
                setting = f"{_loc(dict(err))}.{setting.split('.', 1)[1]}"
            raise ConfigError(setting, ctx_err.problem, source=source) from None
        msg = err.get("msg", "invalid")
        raise ConfigError(_loc(dict(err)), msg, source=source) from None


def load_config(path: str | Path, *, check_credentials: bool = True) -> RouterConfig:
    """Read and validate ``router.yaml`` (relative paths are resolved against its folder).

    Args:
        path: YAML file.
        check_credentials: Also require every configured key / token source to be readable.

    Raises:
        ConfigError: naming the file and the setting.
    """
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError("<file>", f"cannot read config: {e.strerror}", source=str(p)) from None
    except yaml.YAMLError as e:
        raise ConfigError("<file>", f"invalid YAML: {e}", source=str(p)) from None
    cfg = parse_config(data, source=str(p))
    cfg = _resolve_paths(cfg, p.parent)
    if check_credentials:
        try:
            cfg.check_credentials()
        except ConfigError as e:
            raise ConfigError(e.setting, e.problem, source=str(p)) from None
    return cfg


def _resolve_paths(cfg: RouterConfig, base: Path) -> RouterConfig:
    def fix(v: Path | None) -> Path | None:
        return None if v is None or v.is_absolute() else base / v

    upd: dict[str, Any] = {}
    if cfg.catalog is not None and not cfg.catalog.is_absolute():
        upd["catalog"] = fix(cfg.catalog)
    if cfg.learned.policy_dir is not None and not cfg.learned.policy_dir.is_absolute():
        upd["learned"] = cfg.learned.model_copy(update={"policy_dir": fix(cfg.learned.policy_dir)})
    if cfg.learned.registry is not None and not cfg.learned.registry.is_absolute():
        upd["learned"] = cfg.learned.model_copy(update={"registry": fix(cfg.learned.registry)})
    sh = cfg.rollout.shadow
    if sh is not None and sh.policy_dir is not None and not sh.policy_dir.is_absolute():
        upd["rollout"] = cfg.rollout.model_copy(
            update={"shadow": sh.model_copy(update={"policy_dir": fix(sh.policy_dir)})}
        )
    if cfg.features.encoder_path is not None and not cfg.features.encoder_path.is_absolute():
        upd["features"] = cfg.features.model_copy(update={"encoder_path": fix(cfg.features.encoder_path)})
    if cfg.logging.decision_log_dir is not None and not cfg.logging.decision_log_dir.is_absolute():
        upd["logging"] = cfg.logging.model_copy(update={"decision_log_dir": fix(cfg.logging.decision_log_dir)})
    if cfg.feedback.dir is not None and not cfg.feedback.dir.is_absolute():
        upd["feedback"] = cfg.feedback.model_copy(update={"dir": fix(cfg.feedback.dir)})
    if cfg.budgets.ledger_path is not None and not cfg.budgets.ledger_path.is_absolute():
        upd["budgets"] = cfg.budgets.model_copy(update={"ledger_path": fix(cfg.budgets.ledger_path)})
    return cfg.model_copy(update=upd) if upd else cfg

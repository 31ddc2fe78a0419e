"""What flows through the router for one request: its input, its context, the decision, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router_rl.providers.base import CompletionResult
from router_rl.router.budget import BudgetStatus, Reservation

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from router_rl.router.refining import RefineRun

AUTO = "router-rl/auto"
PREFIX = "router-rl/"


@dataclass
class RouteInput:
    """One request to route.

    Attributes:
        messages: OpenAI-style chat messages.
        model: ``router-rl/auto``, ``router-rl/<strategy>`` or a concrete model id.
        request_id: Caller's id (generated when missing); keys sampling and A/B stickiness.
        agent_id: Calling agent (budgets, A/B stickiness).
        agent_type: Agent type (a policy feature).
        category: Task category (a policy feature).
        complexity: The task complexity the agent declared (``SIMPLE`` ... ``VERY_COMPLEX``; a policy
            feature where the encoder has it; ``None``: not declared).
        max_tokens: Requested output tokens.
        temperature: Sampling temperature forwarded to the model.
        stop: Stop sequences.
        params: Other sampling fields forwarded unchanged to the chosen model (``top_p``, ``seed``...).
        metadata: The request's ``metadata`` object (scanned for secrets, never forwarded).
    """

    messages: list[dict[str, str]]
    model: str = AUTO
    request_id: str | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    category: str | None = None
    complexity: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        """All message contents joined by newlines."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


@dataclass
class RoutingDecision:
    """What the router decided for one request (before execution).

    Not to be confused with :class:`router_rl.policies.decision.Decision` (a policy's batch
    decision rule output).

    Attributes:
        strategy: The requested strategy (``explicit`` for a concrete model).
        policy_version: Exact version of the policy that produced ``probs``.
        models: The action set (column order of ``probs``).
        probs: The distribution ``chosen`` was drawn from (masks applied).
        chosen: The chosen model.
        propensity: ``probs`` of ``chosen``.
        confidence: Top probability.
        allowed: Models the masks allowed.
        features: Encoded feature vector, when the policy computed one.
        shadow_model: What the shadow policy would have chosen.
        note: Why the decider differs from the request (``policy_timeout``, ``kill_switch``...).
        policy_state: JSON RouterState sent to the learned policy (``None``: none sent).
        decided_by: The policy that produced ``probs``: ``learned``, a rule strategy or ``explicit``.
        explored: ``chosen`` is not the top choice of the policy before exploration.
        exploration: JSON of the exploration settings applied (``None``: none).
        encoder_fingerprint: Fingerprint of the encoder of ``features`` (``None``: no features).
        learned_version: The learned policy version (live or canary) that was asked, also when it
            failed and the rule policy answered (``None``: no learned policy was asked); the key of
            the version's live evidence (:mod:`router_rl.router.live_policy`).
    """

    strategy: str
    policy_version: str
    models: tuple[str, ...]
    probs: tuple[float, ...]
    chosen: str
    propensity: float
    confidence: float
    allowed: tuple[str, ...]
    features: tuple[float, ...] | None = None
    shadow_model: str | None = None
    note: str | None = None
    policy_state: str | None = None
    decided_by: str = ""
    explored: bool = False
    exploration: str | None = None
    encoder_fingerprint: str | None = None
    learned_version: str | None = None

    def __post_init__(self) -> None:
        if not self.decided_by:
            self.decided_by = self.strategy


@dataclass
class RequestContext:
    """The router's working state of one request, shared by decision, execution and accounting."""

    inp: RouteInput
    request_id: str
    agent_id: str
    prompt: str
    level: int
    sensitive: bool
    budget: BudgetStatus
    t0: float
    flagged: tuple[str, ...] = ()
    reservation: Reservation | None = None
    budget_counted: bool = False
    done: bool = False  # a winner was chosen: late hedge losers only update health
    backend_s: float = 0.0
    attempts: list[str] = field(default_factory=list)
    span: Span | None = None


@dataclass
class RouteResult:
    """A served request.

    Attributes:
        request_id: Request id.
        decision: The routing decision.
        result: The provider's completion.
        served_model: Model that answered (differs from ``decision.chosen`` after a fallback).
        fallback_reason: Why the chosen model did not answer (``None`` without fallback).
        cost_usd: Cost of the served call.
        overhead_s: Router time excluding provider calls.
        total_s: Router time including provider calls.
        refine: What iterative refinement did (``None``: the request was not refined); then
            ``result`` holds the refined answer and ``cost_usd`` the total of every call.
    """

    request_id: str
    decision: RoutingDecision
    result: CompletionResult
    served_model: str
    fallback_reason: str | None
    cost_usd: float
    overhead_s: float
    total_s: float
    refine: RefineRun | None = None

    @property
    def fallback_used(self) -> bool:
        """Whether a model other than the chosen one answered."""
        return self.served_model != self.decision.chosen

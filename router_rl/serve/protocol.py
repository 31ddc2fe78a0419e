"""The one wire contract of a served policy (Ray Serve deployment, in-process engine, router client).

``POST /route`` takes a :class:`RouteRequest` (task records, each optionally carrying the
router's :class:`RouterState`) and answers a :class:`RouteResponse`; ``GET /health`` answers a
:class:`HealthResponse`, whose ``state`` (a :class:`StateSpec`) says which router state the policy
needs (``None``: a stateless policy, features only). Every model is strict pydantic, validated on
both ends. Importing this module pulls in no Ray.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BreakerStateName = Literal["closed", "half_open", "open"]


class RouterState(BaseModel):
    """The router state a stateful policy (PPO) sees with one request.

    Same quantities as the state part of a ``BudgetedRouting`` observation
    (:mod:`router_rl.envs.state`); the router builds it in
    :mod:`router_rl.router.policy_state`. Breakers are keyed by provider name, so the order is
    the policy's business (it knows the order it was trained with).

    Attributes:
        budget_remaining_frac: Unspent share of the budget window (the router's global daily
            budget), in [0, 1]; ``None`` when the router has no such budget.
        elapsed_frac: Elapsed share of the budget window (the UTC day), in [0, 1].
        local_share: Share of this window's served requests answered by local models.
        breakers: Provider -> circuit-breaker state.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget_remaining_frac: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    elapsed_frac: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    local_share: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    breakers: dict[str, BreakerStateName] = Field(default_factory=dict)


class StateSpec(BaseModel):
    """Which router state a policy needs (``GET /health`` → ``state``).

    Attributes:
        fields: The policy's state columns in order: scalar fields of :class:`RouterState`, then
            ``breaker:<provider>`` per provider.
        providers: Providers whose breaker state the policy reads (in its training order).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[str]
    providers: list[str] = Field(default_factory=list)


class TaskRecord(BaseModel):
    """One request to route, as the feature encoder sees it (prompt optional: no secrets needed).

    Unknown keys are kept for encoders that read more task columns. ``complexity`` is the
    complexity the agent declared with the request (an encoder feature where the encoder has a
    ``complexity`` column; absent -> the prompt heuristic only). ``state`` is the router state at
    the time of the request; a stateful policy refuses a record without it.
    """

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    category: str | None = None
    agent_type: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    n_messages: int = Field(default=1, ge=1)
    complexity: Literal["SIMPLE", "MODERATE", "COMPLEX", "VERY_COMPLEX"] | None = None
    state: RouterState | None = None

    def encoder_record(self) -> dict[str, Any]:
        """The task columns the feature encoder reads (``state`` excluded, unset fields dropped)."""
        return self.model_dump(exclude_none=True, exclude={"state"})


class RouteRequest(BaseModel):
    """``POST /route`` body: a batch of task records."""

    model_config = ConfigDict(extra="forbid")

    records: list[TaskRecord] = Field(min_length=1, max_length=4096)


class RouteResponse(BaseModel):
    """``POST /route`` answer: per record the action distribution and the argmax choice.

    Attributes:
        policy_version: Version of the policy that answered.
        models: Column order of ``probs``.
        probs: One distribution per record (rows >= 0, summing to 1).
        chosen: Argmax model per record.
        propensity: Probability of ``chosen`` under the deterministic argmax rule (1).
    """

    model_config = ConfigDict(extra="forbid")

    policy_version: str
    models: list[str] = Field(min_length=1)
    probs: list[list[float]]
    chosen: list[str]
    propensity: list[float]

    @field_validator("probs")
    @classmethod
    def _rows_are_distributions(cls, v: list[list[float]]) -> list[list[float]]:
        for i, row in enumerate(v):
            if any(not (p >= 0.0) for p in row) or abs(sum(row) - 1.0) > 1e-6:
                raise ValueError(f"probs[{i}]: expected probabilities >= 0 summing to 1, got {row}")
        return v

    @model_validator(mode="after")
    def _shapes(self) -> RouteResponse:
        n = len(self.probs)
        for i, row in enumerate(self.probs):
            if len(row) != len(self.models):
                raise ValueError(f"probs[{i}]: {len(row)} probabilities for {len(self.models)} models")
        if len(self.chosen) != n or len(self.propensity) != n:
            raise ValueError(f"{n} rows of probs but {len(self.chosen)} chosen / {len(self.propensity)} propensity")
        unknown = [c for c in self.chosen if c not in self.models]
        if unknown:
            raise ValueError(f"chosen: {unknown} not in models {self.models}")
        return self

    def split(self, sizes: list[int]) -> list[RouteResponse]:
        """Cut a validated answer into consecutive answers of ``sizes`` records (a batch's requests).

        Raises:
            ValueError: ``sizes`` does not add up to the number of records answered.
        """
        if sum(sizes) != len(self.probs) or any(n < 1 for n in sizes):
            raise ValueError(f"split: sizes {sizes} do not partition {len(self.probs)} answers")
        out, start = [], 0
        for n in sizes:
            end = start + n
            out.append(RouteResponse.model_construct(  # parts of a validated answer: valid as they are
                policy_version=self.policy_version, models=self.models, probs=self.probs[start:end],
                chosen=self.chosen[start:end], propensity=self.propensity[start:end],
            ))
            start = end
        return out


class ServeUserConfig(BaseModel):
    """The Ray Serve ``user_config`` of the policy deployment (applied by ``reconfigure``).

    Attributes:
        policy_path: Artifact folder to serve; a change hot-swaps the policy (``None``: keep).
        max_batch_size: Most concurrent ``/route`` requests evaluated together by one replica.
        batch_wait_timeout_s: How long a replica waits for more requests before evaluating what it
            has (0: never hold a request back; batches form only from requests already waiting).
    """

    model_config = ConfigDict(extra="forbid")

    policy_path: str | None = None
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)


class HealthResponse(BaseModel):
    """``GET /health`` answer.

    Attributes:
        ok: False after a failed hot swap (the previous policy still serves).
        policy_version: Version of the serving policy.
        models: Its models.
        state: The router state it needs with every record (``None``: stateless).
        detail: Extra information (the failed swap's error).
    """

    model_config = ConfigDict(extra="forbid")

    ok: bool
    policy_version: str
    models: list[str]
    state: StateSpec | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

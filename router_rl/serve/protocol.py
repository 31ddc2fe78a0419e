"""Wire format of the remote policy endpoint (shared by the Ray Serve deployment and its client).

Plain pydantic: importing this module pulls in no Ray.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TaskRecord(BaseModel):
    """One request to route, as the feature encoder sees it (no secrets needed: prompt optional)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    category: str | None = None
    agent_type: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    n_messages: int = Field(default=1, ge=1)


class RouteRequest(BaseModel):
    """``POST /route`` body: a batch of task records."""

    records: list[TaskRecord] = Field(min_length=1, max_length=4096)


class RouteResponse(BaseModel):
    """``POST /route`` answer: per record the action distribution and the argmax choice."""

    policy_version: str
    models: list[str]
    probs: list[list[float]]
    chosen: list[str]
    propensity: list[float]

    @field_validator("probs")
    @classmethod
    def _rows_sum_to_one(cls, v: list[list[float]]) -> list[list[float]]:
        for i, row in enumerate(v):
            if abs(sum(row) - 1.0) > 1e-6:
                raise ValueError(f"probs[{i}] sums to {sum(row)}, expected 1")
        return v


class HealthResponse(BaseModel):
    """``GET /health`` answer."""

    ok: bool
    policy_version: str
    models: list[str]
    detail: dict[str, Any] = Field(default_factory=dict)

"""Which exploration settings a routed request gets (the decider applies them, see docs/router.md).

The settings themselves and the exact sampled distribution are
:class:`router_rl.policies.exploration.ExplorationConfig` and
:func:`router_rl.policies.exploration.explore`, shared with the simulated logs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from router_rl.policies.exploration import ExplorationConfig


class ExplorationSettings(BaseModel):
    """Exploration of the router's decisions (``exploration`` in ``router.yaml``).

    The settings of a request: its agent type's entry, else its requested strategy's, else
    ``default`` (agent type > strategy > default); ``None`` = no exploration. Explicit model
    requests and decisions under the kill switch never explore.

    Attributes:
        default: Applied to every strategy request without a more specific entry.
        strategies: Per requested strategy (a :class:`~router_rl.router.config.Strategy` value).
        agent_types: Per agent type (``x-agent-type``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: ExplorationConfig | None = None
    strategies: dict[str, ExplorationConfig] = Field(default_factory=dict)
    agent_types: dict[str, ExplorationConfig] = Field(default_factory=dict)

    @field_validator("strategies")
    @classmethod
    def _known(cls, v: dict[str, ExplorationConfig]) -> dict[str, ExplorationConfig]:
        from router_rl.router.config import Strategy  # config imports this module

        known = [s.value for s in Strategy]
        for name in v:
            if name not in known:
                raise ValueError(f"unknown strategy {name!r}; expected one of {known}")
        return v

    def for_request(self, strategy: str, agent_type: str | None) -> ExplorationConfig | None:
        """The settings of one request (``None``: none)."""
        if agent_type is not None and agent_type in self.agent_types:
            return self.agent_types[agent_type]
        return self.strategies.get(strategy, self.default)

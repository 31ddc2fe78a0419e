"""Exception hierarchy shared by every router_rl package."""

from __future__ import annotations


class RouterRLError(Exception):
    """Base class of every error router_rl raises on purpose."""


class ConfigError(RouterRLError, ValueError):
    """A configuration value is invalid; the message names the exact setting."""

    def __init__(self, setting: str, problem: str, *, source: str | None = None) -> None:
        self.setting = setting
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{setting}: {problem}")

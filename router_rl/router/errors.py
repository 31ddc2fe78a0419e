"""Errors the router raises for a request; the HTTP server maps each to a status and an OpenAI error body.

Messages never contain prompt text or secrets.
"""

from __future__ import annotations

from router_rl.core.errors import RouterRLError


class RouterRequestError(RouterRLError):
    """A request the router refuses or cannot serve; carries an HTTP status and an OpenAI error type."""

    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        #: The logged request this error answers (set by the router once the row is written).
        self.request_id: str | None = None
        super().__init__(message)


class UnknownModelError(RouterRequestError):
    """The requested model / strategy does not exist."""

    status = 404
    code = "model_not_found"


class BudgetExhaustedError(RouterRequestError):
    """A budget is exhausted and the configured behaviour is ``reject``."""

    status = 429
    type = "insufficient_quota"
    code = "budget_exhausted"


class NoProviderAvailableError(RouterRequestError):
    """Every model of the fallback chain failed or was unavailable."""

    status = 503
    type = "service_unavailable"
    code = "no_provider_available"


class PrivacyGuardError(RouterRequestError):
    """A sensitive request was about to be sent to a cloud model (defence in depth).

    The decision already masks cloud models for sensitive requests, so this firing means a bug
    in the router: the call is refused (HTTP 500) and the decision-log row carries
    ``error = "privacy_guard"``.
    """

    status = 500
    type = "server_error"
    code = "privacy_guard"

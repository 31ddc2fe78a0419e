"""Errors raised by the feature encoder."""

from __future__ import annotations

from router_rl.core.errors import RouterRLError


class FeatureInputError(RouterRLError, ValueError):
    """Encoder input is malformed; the message names the row/record, the field and what was expected."""


class EncoderNotFittedError(RouterRLError, RuntimeError):
    """A fitted-state property or ``transform`` was used before :meth:`FeatureEncoder.fit`."""


class EncoderLoadError(RouterRLError, ValueError):
    """A saved encoder cannot be loaded (missing file, invalid JSON, other version, fingerprint mismatch)."""

"""Features of every routed request, for the decision log (so rule-decided rows are learnable too).

The router's log encoder is ``features.encoder_path`` when set, else the in-process learned
policy's own encoder; with neither, ``features`` and ``encoder_fingerprint`` stay null on every
row (nothing is encoded, nothing is counted: there is nothing to encode with). A decision whose
features the learned policy already computed with the same encoder reuses them; every other one
is encoded here. A request the encoder cannot encode keeps null features and is counted in
``router_rl_feature_errors_total{reason}`` (and logged at warning level, without prompt text).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from router_rl.core.errors import ConfigError
from router_rl.router.policy_client import InProcessPolicyClient, PolicyClient, PolicyClientError, task_record
from router_rl.router.request import RequestContext, RoutingDecision
from router_rl.router.telemetry import RouterMetrics

log = logging.getLogger("router_rl.router")

class FeaturesConfig(BaseModel):
    """Features logged with every decision (``features`` in ``router.yaml``).

    Attributes:
        encoder_path: A saved :class:`~router_rl.features.FeatureEncoder` (``encoder.json``) that
            encodes every routed request for the log. Default: the in-process learned policy's
            own encoder, when there is one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder_path: Path | None = None


#: Prompts longer than this are encoded in a worker thread (the event loop stays free).
OFFLOAD_CHARS = 16_384


class RequestEncoder:
    """Fills ``features`` / ``encoder_fingerprint`` of decisions.

    Args:
        encoder: A fitted :class:`~router_rl.features.FeatureEncoder` (``None``: encode nothing).
        policy_client: The learned policy's client at start (unused; the features a decision
            carries are reused when the deciding version's encoder has the same fingerprint, so
            a hot swap to a policy with another encoder never mislabels logged features).
        metrics: Metrics holder (``feature_errors``).
    """

    def __init__(self, encoder: Any, policy_client: PolicyClient | None, metrics: RouterMetrics) -> None:
        self.fingerprint: str | None = getattr(encoder, "fingerprint", None) if encoder is not None else None
        if encoder is not None and not isinstance(self.fingerprint, str):
            log.warning("the log encoder %s has no fingerprint: decision-log features stay null",
                        type(encoder).__name__)
            encoder, self.fingerprint = None, None
        self.encoder = encoder
        self._metrics = metrics

    @classmethod
    def build(
        cls, encoder_path: Path | None, policy_client: PolicyClient | None, metrics: RouterMetrics
    ) -> RequestEncoder:
        """The encoder of ``features.encoder_path``, else the in-process learned policy's, else none.

        Raises:
            ConfigError: ``features.encoder_path`` cannot be loaded (names the setting).
        """
        encoder: Any = None
        if encoder_path is not None:
            from router_rl.features import EncoderLoadError, FeatureEncoder

            try:
                encoder = FeatureEncoder.load(encoder_path)
            except (EncoderLoadError, OSError, ValueError) as e:
                raise ConfigError("features.encoder_path", str(e)) from None
        else:
            inner = getattr(policy_client, "inner", policy_client)  # a live policy slot wraps its client
            if isinstance(inner, InProcessPolicyClient):
                encoder = inner.engine.encoder
        return cls(encoder, policy_client, metrics)

    async def attach(self, ctx: RequestContext, d: RoutingDecision) -> None:
        """Set ``d.features`` / ``d.encoder_fingerprint`` (both ``None`` without an encoder)."""
        if self.encoder is None:
            d.features = None
            return
        if d.features is not None and d.decided_by == "learned" and d.encoder_fingerprint == self.fingerprint:
            d.encoder_fingerprint = self.fingerprint
            return
        d.features, d.encoder_fingerprint = None, None
        try:
            record = task_record(ctx.prompt, ctx.inp.category, ctx.inp.agent_type, ctx.inp.max_tokens,
                                 len(ctx.inp.messages), None, complexity=ctx.inp.complexity).encoder_record()
            if len(ctx.prompt) > OFFLOAD_CHARS:
                X = await asyncio.to_thread(self.encoder.transform_records, [record])
            else:
                X = self.encoder.transform_records([record])
        except Exception as e:  # a broken encoder never fails a request: counted, features null
            reason = e.reason if isinstance(e, PolicyClientError) else type(e).__name__
            self._metrics.feature_errors.labels(reason=reason).inc()
            log.warning("request %s: features not encoded (%s)", ctx.request_id, reason)
            return
        d.features = tuple(float(v) for v in X[0])
        d.encoder_fingerprint = self.fingerprint

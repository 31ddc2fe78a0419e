"""How a local model's cost and latency follow from the way it is served.

Two settings, chosen by :class:`LocalServingConfig.mode`:

``"batched"`` (the default) models a serving engine with continuous batching (vLLM, SGLang,
llama.cpp's server with parallel slots). ``concurrency`` sequences decode together; each one runs
at the single-stream decode speed slowed by the batch::

    per-stream tokens/s  s_B = tps / (1 + (B - 1) / B_half)
    server tokens/s          = B * s_B

so a request's share of the GPU is ``output / (B * s_B) + input / (prefill_factor * tps)``
seconds (prefill is compute-bound: batching does not make it cheaper per token). The server is
busy a fraction ``utilisation`` of the time it is paid for, so each request also carries its
share of the idle time: cost = GPU-seconds / utilisation x USD per GPU-hour / 3600. Equivalently,
the GPU's hourly price divided by the requests the server completes per hour at that load
(:func:`requests_per_hour`). Latency is the request's own prefill and decode at ``s_B`` plus a
queueing wait for a free slot: the ``B`` slots form an M/M/c queue at load ``utilisation``, so a
request waits with the Erlang-C probability, for an exponential time of mean
``S / (B * (1 - utilisation))`` (``S`` the model's mean service time).

``"single_stream"`` is the earlier pricing: every request has a GPU to itself, no queue,
``GPU-seconds = output / tps + input / (10 * tps)``.

Where the defaults come from is in docs/traces.md ("Local serving").
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from router_rl.core.config import PositiveFloat, PositiveInt, StrictConfig
from router_rl.traces.catalog import PREFILL_SPEEDUP

#: Prefill speed of the single-stream setting, as a multiple of decode speed: the catalog's own
#: estimate (:meth:`ModelSpec.gpu_seconds` without a serving config), one constant for both.
SINGLE_STREAM_PREFILL_FACTOR = PREFILL_SPEEDUP
#: Fixed per-request overhead of a local call (tokenisation, HTTP to the engine), seconds.
LOCAL_OVERHEAD_S = 0.05
#: Share of the memory-bandwidth ceiling a single decode stream reaches (vLLM, Llama-3.1-8B on an
#: A100; docs/traces.md "Local serving").
ROOFLINE_EFFICIENCY = 0.77

OpenUnitFloat = Annotated[float, Field(gt=0, lt=1)]
#: Token counts / throughputs: arrays (broadcast together) or scalars.
Tokens = np.ndarray | float


class LocalServingConfig(StrictConfig):
    """How local models are served (the simulator's cost and latency model for them).

    Attributes:
        mode: ``"batched"`` (continuous batching at a stated load) or ``"single_stream"``
            (a GPU per request; the earlier pricing).
        concurrency: Sequences decoded together on one server (``B``), batched mode.
        half_speed_concurrency: Concurrency at which a stream decodes at half its single-stream
            speed (``B_half``), batched mode.
        utilisation: Share of the paid GPU time the server is busy, in (0, 1): the idle rest is
            charged to the requests, and it is the load of the slot queue.
        prefill_factor: Prefill tokens/s as a multiple of the single-stream decode tokens/s,
            batched mode.
    """

    mode: Literal["batched", "single_stream"] = "batched"
    concurrency: PositiveInt = 8
    half_speed_concurrency: PositiveFloat = 32.0
    utilisation: OpenUnitFloat = 0.7
    prefill_factor: PositiveFloat = 100.0

    def stream_tokens_per_s(self, tokens_per_s: np.ndarray | float) -> np.ndarray:
        """Decode tokens/s of one stream at this setting's concurrency (``s_B``)."""
        tps = np.asarray(tokens_per_s, dtype=np.float64)
        if self.mode == "single_stream":
            return tps
        return tps / (1.0 + (self.concurrency - 1) / self.half_speed_concurrency)

    def server_tokens_per_s(self, tokens_per_s: np.ndarray | float) -> np.ndarray:
        """Decode tokens/s of the whole server (``B * s_B``; ``tps`` in single-stream mode)."""
        b = 1 if self.mode == "single_stream" else self.concurrency
        return b * self.stream_tokens_per_s(tokens_per_s)

    def gpu_seconds(
        self, input_tokens: Tokens, output_tokens: Tokens, tokens_per_s: Tokens
    ) -> np.ndarray:
        """GPU-seconds a request is charged for, idle share included (broadcasting arrays)."""
        tps = np.asarray(tokens_per_s, dtype=np.float64)
        if self.mode == "single_stream":
            return np.asarray(output_tokens / tps + input_tokens / (tps * SINGLE_STREAM_PREFILL_FACTOR))
        busy = output_tokens / self.server_tokens_per_s(tps) + input_tokens / (tps * self.prefill_factor)
        return np.asarray(busy / self.utilisation)

    def service_seconds(
        self, input_tokens: Tokens, output_tokens: Tokens, tokens_per_s: Tokens
    ) -> np.ndarray:
        """A request's own prefill + decode time, without queueing or jitter."""
        tps = np.asarray(tokens_per_s, dtype=np.float64)
        if self.mode == "single_stream":
            return self.gpu_seconds(input_tokens, output_tokens, tps)
        return np.asarray(input_tokens / (tps * self.prefill_factor) + output_tokens / self.stream_tokens_per_s(tps))

    def wait_probability(self) -> float:
        """Probability that a request finds every slot busy (Erlang C; 0 in single-stream mode)."""
        if self.mode == "single_stream":
            return 0.0
        return erlang_c(self.concurrency, self.concurrency * self.utilisation)

    def queue_wait(self, service_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sampled queueing waits for requests of an ``(n, m)`` service-time array.

        Each column (model) is its own server: a request waits with :meth:`wait_probability`, for
        an exponential time of mean ``S_j / (B * (1 - utilisation))``, ``S_j`` the column's mean
        service time. Always draws ``2 * service_s.size`` numbers from ``rng``.
        """
        waits_u = rng.random(service_s.shape)
        waits_e = rng.exponential(1.0, size=service_s.shape)
        if self.mode == "single_stream":
            return np.zeros(service_s.shape)
        mean_s = service_s.mean(axis=0, keepdims=True)
        mean_wait = mean_s / (self.concurrency * (1.0 - self.utilisation))
        return np.where(waits_u < self.wait_probability(), waits_e * mean_wait, 0.0)

    def requests_per_hour(self, mean_input: float, mean_output: float, tokens_per_s: float) -> float:
        """Requests one server completes per paid hour at this load, for a mean request."""
        per = float(self.gpu_seconds(mean_input, mean_output, tokens_per_s))
        return 3600.0 / per


def roofline_tokens_per_s(
    weight_gb: float, bandwidth_gb_s: float, *, efficiency: float = ROOFLINE_EFFICIENCY
) -> float:
    """Single-stream decode tokens/s of a memory-bound model: each token reads every weight once.

    Args:
        weight_gb: Size of the served weights in GB (parameters x bytes per parameter).
        bandwidth_gb_s: Memory bandwidth of the GPUs holding them, GB/s (summed over a
            tensor-parallel group).
        efficiency: Share of the bandwidth ceiling reached.
    """
    if weight_gb <= 0 or bandwidth_gb_s <= 0 or not 0 < efficiency <= 1:
        raise ValueError(
            f"roofline_tokens_per_s: expected weight_gb > 0, bandwidth_gb_s > 0, 0 < efficiency <= 1, "
            f"got {weight_gb}, {bandwidth_gb_s}, {efficiency}"
        )
    return efficiency * bandwidth_gb_s / weight_gb


def erlang_c(servers: int, offered: float) -> float:
    """Probability of waiting in an M/M/c queue (Erlang's C formula).

    Args:
        servers: Number of servers ``c`` (>= 1).
        offered: Offered load ``a = λ / μ`` in Erlangs, ``0 <= a < c``.

    Returns:
        ``P(wait > 0)``, computed with the numerically stable Erlang-B recursion.
    """
    if servers < 1:
        raise ValueError(f"erlang_c: servers must be >= 1, got {servers}")
    if not 0.0 <= offered < servers:
        raise ValueError(f"erlang_c: offered load must be in [0, servers), got {offered}")
    b = 1.0  # Erlang B with 0 servers
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    rho = offered / servers
    c = b / (1.0 - rho * (1.0 - b))
    return float(c) if math.isfinite(c) else 1.0

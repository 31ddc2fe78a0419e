"""Provider outages of :class:`~router_rl.envs.budgeted.BudgetedRouting`: the process and its fitted rates.

Each provider follows a two-state Markov chain (up / down) drawn at ``reset``, with an optional
mean-one log-normal latency multiplier; the observation shows what a circuit breaker would
have seen (see the module docstring of :mod:`router_rl.envs.budgeted`). Rates come from the
env spec or are fitted from the llmperf-provider-latency runs (:func:`fit_llmperf_rates`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.envs.spec import OutageSpec, ProviderRates
from router_rl.envs.tables import RewardTables


@dataclass(frozen=True)
class OutageModel:
    """Resolved outage process: the providers subject to outages and their rates.

    Attributes:
        providers: Names of the modelled providers (the health part of the observation).
        p_fail, p_recover, latency_sigma: ``(P,)`` per-provider parameters.
        model_provider: ``(m,)`` index into ``providers`` of each model, -1 if never down.
    """

    providers: tuple[str, ...]
    p_fail: np.ndarray
    p_recover: np.ndarray
    latency_sigma: np.ndarray
    model_provider: np.ndarray

    @property
    def n_providers(self) -> int:
        """Number of modelled providers."""
        return len(self.providers)

    @classmethod
    def none(cls, n_models: int) -> OutageModel:
        """No outages at all."""
        z = np.zeros(0)
        return cls((), z, z, z, np.full(n_models, -1, dtype=np.int64))

    @classmethod
    def from_spec(
        cls,
        spec: OutageSpec,
        tables: RewardTables,
        fitted: dict[str, ProviderRates] | None = None,
    ) -> OutageModel:
        """Resolve ``spec`` for the models of ``tables``.

        Args:
            spec: Outage section of the env spec.
            tables: Tables of the served split (models, providers, local mask).
            fitted: Rates fitted per *llmperf* provider (``source: llmperf``).
        """
        if not spec.enabled:
            return cls.none(tables.n_models)
        subject = [p for p, loc in zip(tables.providers, tables.is_local, strict=True) if spec.affects_local or not loc]
        names = tuple(sorted(set(subject)))
        unknown = sorted(set(spec.providers) - set(tables.providers))
        if unknown:
            raise ConfigError("outage.providers", f"providers {unknown} serve none of the models {list(tables.models)}")
        rates: list[ProviderRates] = []
        for p in names:
            r = spec.providers.get(p)
            if r is None and spec.source == "llmperf" and p in spec.llmperf_map:
                if fitted is None or spec.llmperf_map[p] not in fitted:
                    known = sorted(fitted or {})
                    raise ConfigError(
                        "outage.llmperf_map", f"{p!r} -> {spec.llmperf_map[p]!r}: no such llmperf provider ({known})"
                    )
                r = fitted[spec.llmperf_map[p]]
            rates.append(r or spec.default)
        idx = {p: k for k, p in enumerate(names)}
        mp = np.array([idx.get(p, -1) if (spec.affects_local or not loc) else -1
                       for p, loc in zip(tables.providers, tables.is_local, strict=True)], dtype=np.int64)
        return cls(
            providers=names,
            p_fail=np.array([r.p_fail for r in rates], dtype=np.float64),
            p_recover=np.array([r.p_recover for r in rates], dtype=np.float64),
            latency_sigma=np.array([r.latency_sigma for r in rates], dtype=np.float64),
            model_provider=mp,
        )

    def draw(self, rng: np.random.Generator, T: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """One episode of the process.

        Returns:
            ``(up (T, P) bool, multiplier (T, P) float64 or None, health (T, P) float32)``.
        """
        P = self.n_providers
        up = np.ones((T, P), dtype=bool)
        if P == 0:
            return up, None, np.zeros((T, 0), dtype=np.float32)
        U = rng.random((T, P))
        state = np.ones(P, dtype=bool)
        for t in range(T):
            state = np.where(state, U[t] >= self.p_fail, U[t] < self.p_recover)
            up[t] = state
        mult = None
        if (self.latency_sigma > 0).any():
            Z = rng.standard_normal((T, P))
            s = self.latency_sigma
            mult = np.exp(s * Z - 0.5 * s * s)
        prev1 = np.vstack([np.ones((1, P), dtype=bool), up[:-1]])
        prev2 = np.vstack([np.ones((2, P), dtype=bool), up[:-2]])[:T]
        health = np.where(~prev1, 1.0, np.where(~prev2, 0.5, 0.0)).astype(np.float32)
        return up, mult, health


def fit_llmperf_rates(path: str | Any) -> dict[str, ProviderRates]:
    """Fit per-provider outage rates from the llmperf-provider-latency request runs.

    Reads the requests with :func:`router_rl.traces.importers.llmperf.load_provider_latency`.
    Each (provider, model size) run is a sequence of requests in ``request_idx`` order; a request
    with an error counts as "down". Transitions are pooled per provider and
    estimated with add-one smoothing: ``p_fail = (n_up->down + 1) / (n_up + 2)``, ``p_recover =
    (n_down->up + 1) / (n_down + 2)``; ``latency_sigma`` is the pooled within-run standard
    deviation of log end-to-end latency of successful requests.

    Args:
        path: The llmperf dataset folder (with ``requests_long.csv``) or the CSV itself.
    """
    import polars as pl

    from router_rl.traces.importers.llmperf import load_provider_latency

    df = load_provider_latency(path).with_columns(down=pl.col("error").is_not_null())
    df = df.sort("provider", "model_size", "request_idx")
    out: dict[str, ProviderRates] = {}
    for (prov,), g in df.group_by(["provider"], maintain_order=True):
        n_up = n_down = up_down = down_up = 0
        resid: list[np.ndarray] = []
        for _, run in g.group_by(["model_size"], maintain_order=True):
            lat = run.filter(~pl.col("down") & (pl.col("latency_s") > 0))["latency_s"].to_numpy()
            if lat.size:
                resid.append(np.log(lat) - np.log(lat).mean())
            d = run["down"].to_numpy()
            a, b = d[:-1], d[1:]
            n_up += int((~a).sum())
            n_down += int(a.sum())
            up_down += int((~a & b).sum())
            down_up += int((a & ~b).sum())
        r = np.concatenate(resid) if resid else np.zeros(0)
        sigma = float(np.sqrt((r * r).mean())) if r.size > 1 else 0.0
        out[str(prov)] = ProviderRates(
            p_fail=(up_down + 1) / (n_up + 2), p_recover=(down_up + 1) / (n_down + 2), latency_sigma=sigma
        )
    return out

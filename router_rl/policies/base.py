"""The one interface every routing policy implements, plus its versioned on-disk artifact.

A policy maps encoded task features ``X`` (``(n, d)`` float32, from the shared
:class:`router_rl.features.FeatureEncoder`) to a distribution over the candidate models. Every
decision can therefore be logged with its propensity.

Artifact layout (``save(dir)``)::

    dir/
      policy.json      # kind, version, models, encoder fingerprint, data hash, metrics, created
      catalog.json     # model catalog
      encoder.json     # the fitted FeatureEncoder (when the policy has one)
      ...              # policy-specific files (LightGBM boosters, torch weights, ...)
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix

ARTIFACT_FORMAT = 1


@dataclass(frozen=True)
class RouteOutcome:
    """What routing a batch of tasks through a policy produced on a full-information matrix.

    Attributes:
        actions: ``(n,)`` index of the model whose answer was finally served.
        propensities: ``(n,)`` probability the policy gave that first decision.
        quality: ``(n,)`` quality of the served answer.
        cost: ``(n,)`` total USD spent on the task (all calls a cascade made).
        latency: ``(n,)`` total seconds (sequential calls add up); NaN where unknown.
        n_calls: ``(n,)`` number of model calls made.
    """

    actions: np.ndarray
    propensities: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    n_calls: np.ndarray


class PolicyLoadError(ValueError):
    """An artifact cannot be loaded (missing file, other models, other encoder version...)."""


class RoutingPolicy(ABC):
    """Base class of all routing policies.

    Subclasses set :attr:`kind` (the registry name), implement :meth:`action_distribution`,
    and override :meth:`_save_state` / :meth:`_load_state` when they hold fitted state.

    Attributes:
        models: Candidate model ids, the column order of every distribution.
        metadata: Free-form JSON-able info saved with the artifact (metrics, data hash, ...).
    """

    kind: ClassVar[str] = "base"

    def __init__(self, models: Sequence[str], *, metadata: dict[str, Any] | None = None) -> None:
        if len(models) == 0:
            raise ValueError(f"{type(self).__name__}: needs at least one candidate model")
        if len(set(models)) != len(models):
            raise ValueError(f"{type(self).__name__}: duplicate model ids in {list(models)}")
        self.models: tuple[str, ...] = tuple(models)
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def n_models(self) -> int:
        """Number of candidate models."""
        return len(self.models)

    @property
    def version(self) -> str:
        """Policy version string logged with each decision (``kind@created``)."""
        return str(self.metadata.get("version", f"{self.kind}@unsaved"))

    @abstractmethod
    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """Probabilities over models for each row of ``X``.

        Args:
            X: ``(n, d)`` encoded features.

        Returns:
            ``(n, n_models)`` float64, rows summing to 1.
        """

    def act(
        self, X: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Choose one model per row.

        Args:
            X: ``(n, d)`` encoded features.
            rng: When given, sample from the distribution; otherwise take the argmax.

        Returns:
            ``(actions, propensities)``: model indices ``(n,)`` int64 and the probability the
            policy gave each chosen action ``(n,)`` float64.
        """
        p = self.action_distribution(X)
        if rng is None:
            a = p.argmax(axis=1)
        else:
            u = rng.random((p.shape[0], 1))
            a = (p.cumsum(axis=1) < u).sum(axis=1)
            a = np.minimum(a, p.shape[1] - 1)
        return a.astype(np.int64), p[np.arange(p.shape[0]), a]

    def route_matrix(
        self,
        X: np.ndarray,
        matrix: OutcomeMatrix,
        rng: np.random.Generator | None = None,
    ) -> RouteOutcome:
        """Replay this policy on a full-information matrix (row i of ``X`` is task i).

        The default picks one model per task (argmax, or sampled when ``rng`` is given) and reads
        its recorded outcome. Policies that call several models per task (cascades) or that need
        the outcomes themselves (the oracle) override this so that every call made is paid for.
        """
        if X.shape[0] != matrix.n_tasks:
            raise ValueError(f"route_matrix: X has {X.shape[0]} rows but the matrix has {matrix.n_tasks} tasks")
        self.check_models(matrix.models, what="outcome matrix")
        a, prop = self.act(X, rng)
        rows = np.arange(matrix.n_tasks)
        return RouteOutcome(
            actions=a,
            propensities=prop,
            quality=matrix.quality[rows, a],
            cost=matrix.cost[rows, a],
            latency=matrix.latency[rows, a],
            n_calls=np.ones(matrix.n_tasks, dtype=np.int64),
        )

    # --- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the versioned artifact to ``directory`` (created if needed)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        created = self.metadata.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.metadata.setdefault("created", created)
        self.metadata.setdefault("version", f"{self.kind}@{created}")
        extra = self._save_state(d) or {}
        meta = {
            "format": ARTIFACT_FORMAT,
            "kind": self.kind,
            "models": list(self.models),
            "metadata": self.metadata,
            "state": extra,
        }
        (d / "policy.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> RoutingPolicy:
        """Load any registered policy from its artifact folder.

        Raises:
            PolicyLoadError: missing/corrupt ``policy.json``, unknown kind or format.
        """
        d = Path(directory)
        meta_path = d / "policy.json"
        if not meta_path.is_file():
            raise PolicyLoadError(f"{d}: not a policy artifact (no policy.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise PolicyLoadError(f"{meta_path}: invalid JSON ({e})") from e
        if meta.get("format") != ARTIFACT_FORMAT:
            raise PolicyLoadError(f"{meta_path}: artifact format {meta.get('format')!r}, expected {ARTIFACT_FORMAT}")
        kind = meta.get("kind")
        target = POLICY_REGISTRY.get(kind) if kind else None
        if target is None:
            raise PolicyLoadError(f"{meta_path}: unknown policy kind {kind!r} (known: {sorted(POLICY_REGISTRY)})")
        if cls is not RoutingPolicy and not issubclass(target, cls):
            raise PolicyLoadError(f"{meta_path}: holds a {kind!r} policy, not {cls.kind!r}")
        return target._from_artifact(d, meta)

    @classmethod
    def _from_artifact(cls, d: Path, meta: dict[str, Any]) -> RoutingPolicy:
        obj = cls.__new__(cls)
        RoutingPolicy.__init__(obj, meta["models"], metadata=meta.get("metadata"))
        obj._load_state(d, meta.get("state") or {})
        return obj

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        """Write policy-specific files; return JSON-able state stored in policy.json."""
        return None

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_save_state` (``self.models``/``metadata`` are already set)."""

    def check_models(self, models: Sequence[str], *, what: str = "data") -> None:
        """Raise :class:`PolicyLoadError` unless ``models`` equals this policy's models."""
        if tuple(models) != self.models:
            raise PolicyLoadError(
                f"policy {self.version} was trained for models {list(self.models)}, "
                f"but the {what} has {list(models)}"
            )


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


P = TypeVar("P", bound=type[RoutingPolicy])

#: name -> policy class. One registry for the concept; see :func:`register_policy`.
POLICY_REGISTRY: dict[str, type[RoutingPolicy]] = {}


def register_policy(cls: P) -> P:
    """Class decorator adding ``cls`` to :data:`POLICY_REGISTRY` under ``cls.kind``."""
    if cls.kind in POLICY_REGISTRY and POLICY_REGISTRY[cls.kind] is not cls:
        raise ValueError(f"policy kind {cls.kind!r} registered twice")
    POLICY_REGISTRY[cls.kind] = cls
    return cls


def policy_factory(kind: str) -> Callable[..., RoutingPolicy]:
    """The registered class for ``kind`` (raises ``KeyError`` naming the known kinds)."""
    try:
        return POLICY_REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown policy {kind!r}; known: {sorted(POLICY_REGISTRY)}") from None

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

import hashlib
import importlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from router_rl.core.errors import RouterRLError
from router_rl.core.seeding import SeedLike, as_generator

if TYPE_CHECKING:
    from typing import Self

    from router_rl.traces.catalog import ModelCatalog
    from router_rl.traces.matrix import OutcomeMatrix

#: Layout version written by :meth:`RoutingPolicy.save` (2: quality routers may carry a per-task
#: cost / latency model, ``state.cost_model``; an older reader would silently use mean costs).
ARTIFACT_FORMAT = 2
#: Layout versions :meth:`RoutingPolicy.load` reads (1 = before per-task cost models).
READABLE_ARTIFACT_FORMATS: tuple[int, ...] = (1, 2)

#: Modules defining the built-in policies; imported on demand by :func:`make_policy` and
#: :meth:`RoutingPolicy.load` so that the registry is complete without import-time work.
BUILTIN_POLICY_MODULES: tuple[str, ...] = (
    "router_rl.policies.baselines",
    "router_rl.policies.lgbm",
    "router_rl.policies.supervised",
    "router_rl.policies.bandits",
    "router_rl.policies.cascade",
    "router_rl.policies.cells",
    "router_rl.policies.textclf",
    "router_rl.policies.sw_ranking",
    "router_rl.policies.stacking",
    "router_rl.policies.ppo",
)


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


class PolicyCapabilityError(RouterRLError, NotImplementedError):
    """A policy kind refuses an operation the :class:`RoutingPolicy` contract lets it refuse.

    The refusable operations of a kind are listed in its :attr:`RoutingPolicy.refuses` (operation
    -> what to do instead); anything not listed there must work.

    Attributes:
        kind: The policy kind.
        operation: The refused operation (``"fit"``, ``"action_distribution"``, ...).
    """

    def __init__(self, kind: str, operation: str, instead: str) -> None:
        self.kind = kind
        self.operation = operation
        super().__init__(f"{kind}: {operation} is not supported by this kind; {instead}")


class PolicyLoadError(ValueError):
    """An artifact cannot be loaded (missing file, other models, other encoder version...)."""


class RoutingPolicy(ABC):
    """Base class of all routing policies.

    Subclasses set :attr:`kind` (the registry name), implement :meth:`action_distribution`,
    and override :meth:`_save_state` / :meth:`_load_state` when they hold fitted state.

    The contract (tested over every registered kind in ``tests/policies/test_contract.py``):
    ``fit`` then ``action_distribution`` gives ``(n, n_models)`` rows summing to 1, ``act`` agrees
    with it, and ``save`` / ``load`` reproduces it exactly. A kind may refuse an operation only
    by listing it in :attr:`refuses` and raising :class:`PolicyCapabilityError` for it.

    Attributes:
        models: Candidate model ids, the column order of every distribution.
        metadata: Free-form JSON-able info saved with the artifact (metrics, data hash, ...).
    """

    kind: ClassVar[str] = "base"
    #: Operations this kind refuses with :class:`PolicyCapabilityError`: operation -> what to do
    #: instead (``fit``: learns elsewhere; ``action_distribution`` (and so ``act``): needs more
    #: than features). Empty = the whole contract holds.
    refuses: ClassVar[Mapping[str, str]] = {}

    def __init__(self, models: Sequence[str], *, metadata: dict[str, Any] | None = None) -> None:
        if len(models) == 0:
            raise ValueError(f"{type(self).__name__}: needs at least one candidate model")
        if len(set(models)) != len(models):
            raise ValueError(f"{type(self).__name__}: duplicate model ids in {list(models)}")
        self.models: tuple[str, ...] = tuple(models)
        self.metadata: dict[str, Any] = dict(metadata or {})
        #: Fitted :class:`router_rl.features.FeatureEncoder` travelling with the artifact (or None).
        self.encoder: Any | None = None
        #: Model catalog (locations, prices) of :attr:`models`, when known.
        self.catalog: ModelCatalog | None = None

    @property
    def n_models(self) -> int:
        """Number of candidate models."""
        return len(self.models)

    @property
    def version(self) -> str:
        """Policy version string logged with each decision (``kind@created``)."""
        return str(self.metadata.get("version", f"{self.kind}@unsaved"))

    # --- training ----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, matrix: OutcomeMatrix, *, seed: SeedLike = 0) -> Self:
        """Fit on a full-information training matrix (no-op for policies without state).

        Args:
            X: ``(n_tasks, d)`` encoded features of ``matrix``'s tasks (row i = task i).
            matrix: Training split; its models must equal :attr:`models`.
            seed: Seed (or generator) of every random choice made while fitting.

        Returns:
            ``self``, fitted.
        """
        if "fit" in self.refuses:
            raise PolicyCapabilityError(self.kind, "fit", self.refuses["fit"])
        self.check_models(matrix.models, what="training matrix")
        X = check_features(X, n_rows=matrix.n_tasks, what="fit")
        if matrix.catalog is not None:
            self.catalog = matrix.catalog
        self.metadata["train"] = {
            "data_hash": training_data_hash(X, matrix),
            "n_tasks": matrix.n_tasks,
            "n_features": int(X.shape[1]),
            "seed": seed if isinstance(seed, int) else None,
        }
        self._fit(X, matrix, as_generator(seed))
        return self

    def _fit(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        """Policy-specific training (``X`` and ``matrix`` already checked)."""

    def attach_encoder(self, encoder: Any) -> Self:
        """Attach the fitted feature encoder so the artifact can encode raw requests."""
        self.encoder = encoder
        fp = getattr(encoder, "fingerprint", None)
        if fp is not None:
            self.metadata["encoder_fingerprint"] = str(fp)
        return self

    def check_encoder(self, fingerprint: str) -> None:
        """Raise :class:`PolicyLoadError` unless the policy was trained with encoder ``fingerprint``."""
        mine = self.metadata.get("encoder_fingerprint")
        if mine is not None and mine != fingerprint:
            raise PolicyLoadError(
                f"policy {self.version} was trained with feature encoder {mine}, "
                f"but the features come from encoder {fingerprint}; re-train or use the artifact's encoder"
            )

    @property
    def n_features(self) -> int | None:
        """Feature dimension seen in :meth:`fit` (None when not fitted on features)."""
        train = self.metadata.get("train") or {}
        n = train.get("n_features")
        return int(n) if n is not None else None

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
        if self.catalog is not None:
            self.catalog.save(d / "catalog.json")
        if self.encoder is not None:
            self.encoder.save(d / "encoder.json")
        meta = {
            "format": ARTIFACT_FORMAT,
            "kind": self.kind,
            "models": list(self.models),
            "has_catalog": self.catalog is not None,
            "has_encoder": self.encoder is not None,
            "metadata": self.metadata,
            "state": extra,
        }
        (d / "policy.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        return d

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        models: Sequence[str] | None = None,
        encoder_fingerprint: str | None = None,
    ) -> RoutingPolicy:
        """Load any registered policy from its artifact folder.

        Args:
            directory: Folder written by :meth:`save`.
            models: When given, the models the caller will route between; must match.
            encoder_fingerprint: When given, the caller's feature encoder; must match the one
                the policy was trained with.

        Raises:
            PolicyLoadError: missing/corrupt ``policy.json``, unknown kind or format, other
                models or another encoder version.
        """
        d = Path(directory)
        meta_path = d / "policy.json"
        if not meta_path.is_file():
            raise PolicyLoadError(f"{d}: not a policy artifact (no policy.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise PolicyLoadError(f"{meta_path}: invalid JSON ({e})") from e
        if meta.get("format") not in READABLE_ARTIFACT_FORMATS:
            raise PolicyLoadError(
                f"{meta_path}: artifact format {meta.get('format')!r}, this router-rl reads "
                f"{list(READABLE_ARTIFACT_FORMATS)} (written by a newer version? re-train or upgrade)"
            )
        kind = meta.get("kind")
        if kind:
            _import_builtin_policies(str(kind))
        target = POLICY_REGISTRY.get(kind) if kind else None
        if target is None:
            raise PolicyLoadError(f"{meta_path}: unknown policy kind {kind!r} (known: {sorted(POLICY_REGISTRY)})")
        if cls is not RoutingPolicy and not issubclass(target, cls):
            raise PolicyLoadError(f"{meta_path}: holds a {kind!r} policy, not {cls.kind!r}")
        policy = target._from_artifact(d, meta)
        if models is not None:
            policy.check_models(models, what="caller")
        if encoder_fingerprint is not None:
            policy.check_encoder(encoder_fingerprint)
        return policy

    @classmethod
    def _from_artifact(cls, d: Path, meta: dict[str, Any]) -> RoutingPolicy:
        obj = cls.__new__(cls)
        RoutingPolicy.__init__(obj, meta["models"], metadata=meta.get("metadata"))
        if meta.get("has_catalog"):
            from router_rl.traces.catalog import ModelCatalog

            try:
                obj.catalog = ModelCatalog.load(d / "catalog.json")
            except (OSError, ValueError) as e:
                raise PolicyLoadError(f"{d / 'catalog.json'}: cannot read the model catalog ({e})") from e
            if tuple(obj.catalog.models) != obj.models:
                raise PolicyLoadError(
                    f"{d / 'catalog.json'}: catalog models {obj.catalog.models} differ from "
                    f"policy models {list(obj.models)}"
                )
        if meta.get("has_encoder"):
            obj.encoder = _load_encoder(d / "encoder.json")
            want = obj.metadata.get("encoder_fingerprint")
            got = getattr(obj.encoder, "fingerprint", None)
            if want is not None and got is not None and str(got) != want:
                raise PolicyLoadError(
                    f"{d / 'encoder.json'}: encoder fingerprint {got} differs from the one the policy was "
                    f"trained with ({want}); the artifact is inconsistent"
                )
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


def _load_encoder(path: Path) -> Any:
    try:
        from router_rl.features import FeatureEncoder
    except ImportError as e:  # pragma: no cover - features package always ships
        raise PolicyLoadError(f"{path}: cannot import router_rl.features.FeatureEncoder ({e})") from e
    try:
        return FeatureEncoder.load(path)
    except (OSError, ValueError, KeyError) as e:
        raise PolicyLoadError(f"{path}: cannot load the feature encoder ({e})") from e


def check_features(X: np.ndarray, *, n_rows: int | None = None, n_features: int | None = None, what: str) -> np.ndarray:
    """Validate an encoded feature matrix and return it as a 2-D float array.

    Raises:
        ValueError: naming ``what``, the expected and the actual shape, or the first non-finite cell.
    """
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{what}: X must be 2-D (n_tasks, n_features), got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{what}: X has {arr.shape[0]} rows but {n_rows} tasks were given")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{what}: X has {arr.shape[1]} features but the policy was trained on {n_features} "
            "(another feature encoder?)"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        r, c = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what}: X row {r}, column {c}: expected a finite number, got {arr[r, c]}")
    return arr


def training_data_hash(X: np.ndarray, matrix: OutcomeMatrix) -> str:
    """Stable sha256 (16 hex chars) of the training features, task ids, models and outcomes."""
    h = hashlib.sha256()
    h.update(json.dumps(list(matrix.models)).encode())
    h.update("\x00".join(str(t) for t in matrix.task_ids.tolist()).encode())
    for arr in (np.ascontiguousarray(X, dtype=np.float32), matrix.quality, matrix.cost):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


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


def _import_builtin_policies(kind: str | None = None) -> None:
    """Import built-in policy modules (stopping early once ``kind`` is registered)."""
    for mod in BUILTIN_POLICY_MODULES:
        if kind is not None and kind in POLICY_REGISTRY:
            return
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a genuine missing dependency inside the module: surface it
                raise


def policy_factory(kind: str) -> Callable[..., RoutingPolicy]:
    """The registered class for ``kind`` (raises ``KeyError`` naming the known kinds)."""
    _import_builtin_policies(kind)
    try:
        return POLICY_REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown policy {kind!r}; known: {sorted(POLICY_REGISTRY)}") from None


def make_policy(name: str, models: Sequence[str], **kwargs: Any) -> RoutingPolicy:
    """Build an (unfitted) policy by registry name.

    Args:
        name: Registry kind, e.g. ``"lgbm"``, ``"random"``, ``"single"``, ``"oracle"``, ``"knn"``.
        models: Candidate model ids (column order of the outcome matrix).
        **kwargs: Policy-specific options (e.g. ``model=`` for ``single``, ``seed=`` for ``random``).

    Raises:
        KeyError: unknown ``name`` (the message lists the known kinds).
        ConfigError / ValueError: invalid options, naming the option.
    """
    return policy_factory(name)(models, **kwargs)

"""Load the data behind an :class:`EnvSpec`: outcome matrices per split + a fitted encoder.

:func:`load_env_data` is the helper the policy and evaluation code use too, so that everybody
trains on the same train split, with the same encoder (fitted on train only) and the same
resolved reward scale.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from router_rl.core.errors import ConfigError
from router_rl.envs.spec import EnvSpec, RewardSpec, load_spec
from router_rl.envs.tables import RewardTables, build_tables, private_mask, resolve_reward
from router_rl.traces.matrix import OutcomeMatrix

_CACHE_SIZE = 8
_CACHE: OrderedDict[str, EnvData] = OrderedDict()


@runtime_checkable
class Encoder(Protocol):
    """What the environments need from a feature encoder (``router_rl.features.FeatureEncoder``)."""

    @property
    def dim(self) -> int:
        """Output width."""
        ...

    def transform(self, tasks: pl.DataFrame) -> np.ndarray:
        """``(n, dim)`` float32 features of a tasks frame."""
        ...


@dataclass
class EnvData:
    """Everything an environment of a spec needs; unpacks as ``train, val, test, encoder``.

    Attributes:
        spec: The spec it was loaded for.
        train, val, test: Outcome matrices of the three splits (``val`` may be ``None`` when
            the data and spec leave no validation tasks).
        encoder: Feature encoder fitted on ``train`` only (or loaded from ``encoder_path``).
        reward: The spec's reward with ``cost_ref_usd`` resolved on train.
    """

    spec: EnvSpec
    train: OutcomeMatrix
    val: OutcomeMatrix | None
    test: OutcomeMatrix
    encoder: Any
    reward: RewardSpec
    _features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _tables: dict[str, RewardTables] = field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.train, self.val, self.test, self.encoder))

    def split(self, name: str) -> OutcomeMatrix:
        """Matrix of split ``name``."""
        m = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if m is None:
            raise ConfigError("split.name", f"split {name!r} has no tasks in {self.spec.name}")
        return m

    def features(self, name: str) -> np.ndarray:
        """Encoded features of split ``name`` (cached)."""
        if name not in self._features:
            X = np.asarray(self.encoder.transform(self.split(name).tasks), dtype=np.float32)
            if X.shape != (self.split(name).n_tasks, int(self.encoder.dim)):
                raise ConfigError(
                    "features",
                    f"encoder returned shape {X.shape}, expected ({self.split(name).n_tasks}, {self.encoder.dim})",
                    source=self.spec.name,
                )
            self._features[name] = X
        return self._features[name]

    def tables(self, name: str) -> RewardTables:
        """Precomputed reward tables of split ``name`` (cached)."""
        if name not in self._tables:
            m = self.split(name)
            self._tables[name] = build_tables(
                m,
                self.features(name),
                self.reward,
                private=private_mask(m.tasks, self.spec.privacy),
                obs_clip=self.spec.obs_clip,
                source=f"{self.spec.name} [{name}]",
            )
        return self._tables[name]


def _source_name(spec: EnvSpec) -> str:
    return spec.base_dir + f"/{spec.name}.yaml" if spec.base_dir else spec.name


def _resolve_path(spec: EnvSpec, path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and spec.base_dir:
        p = Path(spec.base_dir) / p
    return p


def _load_traceset(spec: EnvSpec) -> Any:
    import router_rl.traces as traces

    d, src = spec.data, _source_name(spec)
    if d.source == "simulated":
        assert d.n_tasks is not None
        return traces.simulate_fleet(d.n_tasks, seed=d.seed, **d.options)
    if d.source == "parquet":
        assert d.path is not None
        p = _resolve_path(spec, d.path)
        if not p.is_file():
            raise FileNotFoundError(f"{src}: data.path: trace file not found: {p}")
        return traces.load_traces(p)
    from router_rl.core.paths import datasets_dir

    root = datasets_dir()
    if root is None:
        raise FileNotFoundError(f"{src}: data.path: the datasets folder is missing (set $ROUTER_RL_DATASETS)")
    assert d.path is not None and d.kind is not None
    p = root / d.path
    if not p.exists():
        raise FileNotFoundError(f"{src}: data.path: dataset folder not found: {p}")
    from router_rl.traces.importers import IMPORTERS, import_traces

    if d.kind not in IMPORTERS:
        raise ConfigError("data.kind", f"unknown importer {d.kind!r} (known: {sorted(IMPORTERS)})", source=src)
    return import_traces(d.kind, p, **d.options)


def _splits(spec: EnvSpec, matrix: OutcomeMatrix) -> dict[str, OutcomeMatrix | None]:
    from router_rl.traces.split import assign_splits, carve_split

    s = spec.split
    tasks = matrix.tasks.select("task_id", *(["split"] if "split" in matrix.tasks.columns else []))
    if s.method == "random" or "split" not in tasks.columns:
        frac = (1.0 - s.val_fraction - s.test_fraction, s.val_fraction, s.test_fraction)
        tasks = assign_splits(tasks, seed=s.seed, fractions=frac, overwrite=True)
    else:
        nulls = int(tasks["split"].null_count())
        if nulls:
            raise ConfigError("split", f"{nulls} task(s) have no split value; use split.method: random")
        if not (tasks["split"] == "val").any() and s.val_fraction > 0:
            tasks = carve_split(tasks, seed=s.seed, fraction=s.val_fraction)
    labels = tasks["split"].to_numpy()
    out: dict[str, OutcomeMatrix | None] = {}
    for name in ("train", "val", "test"):
        mask = labels == name
        out[name] = matrix.take(np.flatnonzero(mask)) if mask.any() else None
    return out


def _make_encoder(spec: EnvSpec, train: OutcomeMatrix) -> Any:
    src = _source_name(spec)
    try:
        from router_rl.features import FeatureEncoder as enc_cls
    except ImportError:  # the package may not re-export it (yet)
        from router_rl.features.encoder import FeatureEncoder as enc_cls
    try:
        from router_rl.features import EncoderConfig as cfg_cls
    except ImportError:
        from router_rl.features.config import EncoderConfig as cfg_cls
    try:
        cfg = cfg_cls(**spec.features)
    except (TypeError, ValueError) as e:
        raise ConfigError("features", str(e), source=src) from e
    fresh = enc_cls(cfg).fit(train.tasks)
    if spec.encoder_path is None:
        return fresh
    p = _resolve_path(spec, spec.encoder_path)
    if not p.is_file():
        raise FileNotFoundError(f"{src}: encoder_path: saved encoder not found: {p}")
    loaded = enc_cls.load(p)
    if int(loaded.dim) != int(fresh.dim):
        raise ConfigError(
            "encoder_path",
            f"saved encoder {p} has dimension {loaded.dim} but the spec's features produce {fresh.dim}",
            source=src,
        )
    return loaded


def _cache_key(spec: EnvSpec) -> str:
    d = spec.model_dump(include={"data", "split", "features", "encoder_path", "reward", "base_dir"})
    d["split"].pop("name", None)
    return json.dumps(d, sort_keys=True, default=str)


def load_env_data(spec: EnvSpec | str | Path, *, encoder: Any | None = None, cache: bool = True) -> EnvData:
    """Load the splits of ``spec``'s data and fit (or load) its feature encoder on train.

    Args:
        spec: An :class:`EnvSpec`, a spec file path or a spec name.
        encoder: Use this already fitted encoder (anything with ``transform`` and ``dim``) for
            the features instead of the one fitted on train (the data itself is still cached).
        cache: Reuse a previous load of the same data/split/feature/reward settings in this
            process (the env checker re-creates environments several times).

    Raises:
        FileNotFoundError: missing data file / dataset folder / saved encoder.
        ConfigError: a model of ``data.models`` absent from the data, a dimension mismatch with
            a saved encoder, no train/test tasks, bad reward settings for the data.
    """
    if not isinstance(spec, EnvSpec):
        spec = load_spec(spec)
    key = _cache_key(spec)
    if encoder is not None and not isinstance(encoder, Encoder):
        raise TypeError(f"{_source_name(spec)}: encoder must have .dim and .transform(tasks_frame)")
    hit = _CACHE.get(key) if cache else None
    if hit is not None:
        _CACHE.move_to_end(key)
        if encoder is None or encoder is hit.encoder:
            return EnvData(spec, hit.train, hit.val, hit.test, hit.encoder, hit.reward, hit._features, hit._tables)
        return EnvData(spec, hit.train, hit.val, hit.test, encoder, hit.reward)
    src = _source_name(spec)
    ts = _load_traceset(spec)
    matrix: OutcomeMatrix = ts.matrix() if hasattr(ts, "matrix") else ts
    if spec.data.models is not None:
        absent = [m for m in spec.data.models if m not in matrix.models]
        if absent:
            raise ConfigError(
                "data.models", f"models {absent} are absent from the data (has: {list(matrix.models)})", source=src
            )
        matrix = matrix.select_models(spec.data.models)
    parts = _splits(spec, matrix)
    train, test = parts["train"], parts["test"]
    if train is None or test is None:
        raise ConfigError("split", "the data needs both train and test tasks", source=src)
    reward = resolve_reward(spec.reward, train.cost)
    if reward.latency_weight > 0:
        unknown = [m for j, m in enumerate(matrix.models) if np.isnan(matrix.latency[:, j]).any()]
        if unknown:
            raise ConfigError(
                "reward.latency_weight",
                f"> 0 but models {unknown[:8]} have unknown latency; list data.models with latency or set it to 0",
                source=src,
            )
    fitted = _make_encoder(spec, train)
    data = EnvData(spec, train, parts["val"], test, fitted, reward)
    if cache:
        _CACHE[key] = data
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    if encoder is not None and encoder is not fitted:
        return EnvData(spec, train, parts["val"], test, encoder, reward)
    return data



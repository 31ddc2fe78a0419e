"""The model catalog: which models exist, where they run and what a call costs.

Local models are not free: their cost is GPU-seconds x the configured USD/hour of the GPU they
run on. When not measured, GPU-seconds are estimated from the tokens and the decode throughput:
by default with a GPU to itself (output / tps + input / (10 x tps)), or under a
:class:`~router_rl.traces.serving.LocalServingConfig` (continuous batching at a stated load).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from router_rl.traces.schema import CATALOG_SCHEMA, CLOUD, LOCAL, LOCATIONS

if TYPE_CHECKING:
    from router_rl.traces.serving import LocalServingConfig

PREFILL_SPEEDUP = 10.0  # prefill tokens/s relative to decode tokens/s (single-stream estimate)


@dataclass(frozen=True)
class ModelSpec:
    """One model in the catalog.

    Attributes:
        model: Model id as used in traces and by providers (e.g. ``"qwen2.5-coder:7b"``).
        provider: Provider name that serves it (e.g. ``"ollama"``, ``"anthropic"``).
        location: ``"local"`` or ``"cloud"``.
        usd_per_m_input: USD per million input tokens (cloud price; 0 for local).
        usd_per_m_output: USD per million output tokens (cloud price; 0 for local).
        gpu_usd_per_hour: USD per GPU-hour of the hardware serving a local model.
        tokens_per_s: Decode throughput of a local model (tokens/s), for GPU-seconds estimates.
        context_window: Maximum context length in tokens.
        open_weight: Whether the weights are open (can be served locally).
    """

    model: str
    provider: str
    location: str
    usd_per_m_input: float = 0.0
    usd_per_m_output: float = 0.0
    gpu_usd_per_hour: float = 0.0
    tokens_per_s: float | None = None
    context_window: int = 8192
    open_weight: bool = False

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("ModelSpec.model: must be a non-empty string")
        if self.location not in LOCATIONS:
            raise ValueError(
                f"ModelSpec({self.model!r}).location: expected one of {LOCATIONS}, got {self.location!r}"
            )
        for name in ("usd_per_m_input", "usd_per_m_output", "gpu_usd_per_hour"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"ModelSpec({self.model!r}).{name}: expected a finite number >= 0, got {v!r}")
        if self.tokens_per_s is not None and not self.tokens_per_s > 0:
            raise ValueError(f"ModelSpec({self.model!r}).tokens_per_s: expected > 0, got {self.tokens_per_s!r}")
        if self.context_window <= 0:
            raise ValueError(f"ModelSpec({self.model!r}).context_window: expected > 0")

    @property
    def is_local(self) -> bool:
        """True for models served on our own hardware."""
        return self.location == LOCAL

    def gpu_seconds(
        self, input_tokens: float, output_tokens: float, serving: LocalServingConfig | None = None
    ) -> float:
        """Estimated GPU-seconds of one call of a local model (0 when throughput is unknown).

        Args:
            input_tokens: Prompt tokens.
            output_tokens: Generated tokens.
            serving: How the model is served; ``None`` = a GPU to itself (single stream).
        """
        if self.tokens_per_s is None:
            return 0.0
        if serving is not None:
            return float(serving.gpu_seconds(input_tokens, output_tokens, self.tokens_per_s))
        return output_tokens / self.tokens_per_s + input_tokens / (self.tokens_per_s * PREFILL_SPEEDUP)

    def cost(
        self,
        input_tokens: float,
        output_tokens: float,
        gpu_seconds: float | None = None,
        serving: LocalServingConfig | None = None,
    ) -> float:
        """USD cost of one call.

        Cloud: tokens x price. Local: GPU-seconds (measured, or estimated from tokens under
        ``serving``, see :meth:`gpu_seconds`) x ``gpu_usd_per_hour`` / 3600, plus any token price
        configured.
        """
        usd = (input_tokens * self.usd_per_m_input + output_tokens * self.usd_per_m_output) / 1e6
        if self.is_local and self.gpu_usd_per_hour > 0:
            secs = gpu_seconds if gpu_seconds is not None else self.gpu_seconds(input_tokens, output_tokens, serving)
            usd += secs * self.gpu_usd_per_hour / 3600.0
        return usd


@dataclass
class ModelCatalog:
    """An ordered collection of :class:`ModelSpec`, keyed by model id."""

    specs: list[ModelSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for s in self.specs:
            if s.model in seen:
                raise ValueError(f"ModelCatalog: duplicate model {s.model!r}")
            seen.add(s.model)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __contains__(self, model: object) -> bool:
        return any(s.model == model for s in self.specs)

    def __getitem__(self, model: str) -> ModelSpec:
        for s in self.specs:
            if s.model == model:
                return s
        raise KeyError(f"model {model!r} is not in the catalog (known: {self.models})")

    @property
    def models(self) -> list[str]:
        """Model ids in catalog order."""
        return [s.model for s in self.specs]

    def local_models(self) -> list[str]:
        """Ids of local models."""
        return [s.model for s in self.specs if s.location == LOCAL]

    def cloud_models(self) -> list[str]:
        """Ids of cloud models."""
        return [s.model for s in self.specs if s.location == CLOUD]

    def subset(self, models: Iterable[str]) -> ModelCatalog:
        """Catalog restricted to ``models``, in that order."""
        return ModelCatalog([self[m] for m in models])

    # --- (de)serialisation ------------------------------------------------------------------
    def to_frame(self) -> pl.DataFrame:
        """The catalog as a polars frame with :data:`CATALOG_SCHEMA`."""
        rows = [asdict(s) for s in self.specs]
        return pl.DataFrame(rows, schema=CATALOG_SCHEMA) if rows else pl.DataFrame(schema=CATALOG_SCHEMA)

    @classmethod
    def from_frame(cls, df: pl.DataFrame, *, source: str | None = None) -> ModelCatalog:
        """Build from a frame with the catalog columns (``model``, ``provider``, ``location`` required)."""
        missing = [c for c in ("model", "provider", "location") if c not in df.columns]
        if missing:
            raise ValueError(f"{source or 'catalog'}: missing column(s) {missing}")
        specs = []
        for i, row in enumerate(df.iter_rows(named=True)):
            kw = {k: v for k, v in row.items() if k in CATALOG_SCHEMA and v is not None}
            try:
                specs.append(ModelSpec(**kw))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{source or 'catalog'}: row {i}: {e}") from e
        return cls(specs)

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready list of model dicts."""
        return [asdict(s) for s in self.specs]

    @classmethod
    def from_dict(cls, items: Iterable[Mapping[str, Any]]) -> ModelCatalog:
        """Inverse of :meth:`to_dict`."""
        return cls([ModelSpec(**dict(d)) for d in items])

    def save(self, path: str | Path) -> None:
        """Write as ``.json`` or ``.parquet`` (by suffix)."""
        path = Path(path)
        if path.suffix == ".parquet":
            self.to_frame().write_parquet(path)
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ModelCatalog:
        """Read a catalog written by :meth:`save` (or a YAML list of model dicts)."""
        path = Path(path)
        if path.suffix == ".parquet":
            return cls.from_frame(pl.read_parquet(path), source=str(path))
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        if isinstance(data, dict) and "models" in data:
            data = data["models"]
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e


# --- user-supplied catalog fields (long-format columns, ``--catalog FILE``) -----------------------
#: Catalog fields a user may supply per model (everything but the id).
CATALOG_FIELDS: tuple[str, ...] = tuple(c for c in CATALOG_SCHEMA if c != "model")
_FLOAT_FIELDS = ("usd_per_m_input", "usd_per_m_output", "gpu_usd_per_hour", "tokens_per_s")
_TRUE, _FALSE = ("true", "yes", "1", "y", "t"), ("false", "no", "0", "n", "f")


def coerce_catalog_field(name: str, value: Any, *, model: str, source: str) -> Any:
    """One user-given catalog value as its :class:`ModelSpec` type (``None`` = not given).

    Raises:
        ValueError: naming the source, the model, the field and what was expected.
    """
    blank = isinstance(value, str) and not value.strip()
    if value is None or blank or (isinstance(value, float) and math.isnan(value)):
        return None
    where = f"{source}: model {model!r}, field {name!r}"
    try:
        if name in _FLOAT_FIELDS:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if name == "context_window":
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(f)
        if name == "open_weight":
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in _TRUE or s in _FALSE:
                return s in _TRUE
            raise ValueError
    except (TypeError, ValueError):
        kind = {"context_window": "a whole number of tokens", "open_weight": "true/false"}.get(name, "a number")
        raise ValueError(f"{where}: expected {kind}, got {value!r}") from None
    if name == "location":
        s = str(value).strip().lower()
        if s not in LOCATIONS:
            raise ValueError(f"{where}: expected one of {list(LOCATIONS)}, got {value!r}")
        return s
    return str(value).strip()


def read_catalog_table(path: str | Path) -> dict[str, dict[str, Any]]:
    """Per-model catalog fields from a CSV/TSV/parquet table or a YAML/JSON list of model dicts.

    Only ``model`` is required; any field of :data:`CATALOG_FIELDS` may be given or left out (the
    importer infers or defaults the rest). Values are typed with :func:`coerce_catalog_field`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown column/key, a missing or repeated model id, or a bad value (naming
            the file, the model and the field).
    """
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise FileNotFoundError(f"catalog file not found: {path}")
    rows: list[dict[str, Any]]
    if path.suffix in (".csv", ".tsv"):
        rows = pl.read_csv(path, separator="\t" if path.suffix == ".tsv" else ",", infer_schema_length=0).to_dicts()
    elif path.suffix == ".parquet":
        rows = pl.read_parquet(path).to_dicts()
    elif path.suffix in (".yaml", ".yml", ".json"):
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        if isinstance(data, dict) and "models" in data:
            data = data["models"]
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise ValueError(f"{src}: expected a list of model mappings (or {{models: [...]}})")
        rows = data
    else:
        raise ValueError(f"{src}: expected a .csv, .tsv, .parquet, .yaml/.yml or .json catalog file")
    out: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - {"model", *CATALOG_FIELDS})
        if unknown:
            raise ValueError(f"{src}: unknown catalog field(s) {unknown}; "
                             f"expected model plus any of {list(CATALOG_FIELDS)}")
        model = row.get("model")
        if model is None or not str(model).strip():
            raise ValueError(f"{src}: entry {i}: missing 'model'")
        model = str(model).strip()
        if model in out:
            raise ValueError(f"{src}: model {model!r} listed twice")
        fields = {k: coerce_catalog_field(k, v, model=model, source=src) for k, v in row.items() if k != "model"}
        out[model] = {k: v for k, v in fields.items() if v is not None}
    return out

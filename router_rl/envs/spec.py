"""Declarative environment specs: one YAML file per named environment in the top-level ``envs/``.

A spec names its data source, the split it serves, the feature-encoder settings, the reward
weights, the episode shape and, for the budgeted environment, the budget, the provider
outage process and the fallback behaviour. :class:`EnvSpec` validates everything on
construction so that a bad spec fails before any data is read (a missing *file* is detected
when the data is loaded, still before the environment exists).

Reward normalisation (see :class:`RewardSpec`)::

    r = quality_weight * quality
        - cost_weight    * cost_usd  / cost_ref_usd
        - latency_weight * latency_s / latency_slo_s
        - floor_penalty   * [quality < quality_floor]
        - privacy_penalty * [task is private and the chosen model is cloud]
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from router_rl.core.config import StrictConfig, config_error
from router_rl.core.errors import ConfigError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
EnvKind = Literal["bandit", "budgeted"]


def _finite_nonneg(v: float, what: str) -> float:
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{what}: expected a finite number >= 0, got {v!r}")
    return v


class RewardSpec(StrictConfig):
    """Scalar reward of serving one task with one model.

    ``r = quality_weight*q - cost_weight*cost/cost_ref_usd - latency_weight*latency/latency_slo_s
    - floor_penalty*[q < quality_floor] - privacy_penalty*[private task routed to a cloud model]``.

    Attributes:
        quality_weight: Weight of quality (in [0, 1]).
        cost_weight: lambda; cost is in units of ``cost_ref_usd`` (so 1.0 means "one reference
            call costs as much as a perfect answer is worth").
        latency_weight: mu; latency is in units of the SLO ``latency_slo_s``. Must be 0 when some
            model has unknown latency.
        cost_ref_usd: Reference cost in USD, or ``"auto"``: the mean cost of the most expensive
            model on the *train* split (resolved once by :func:`router_rl.envs.load_env_data`, so
            every split uses the same scale).
        latency_slo_s: Latency SLO in seconds.
        quality_floor: Optional hard floor; answers below it cost ``floor_penalty`` extra.
        floor_penalty: Penalty for an answer under the floor.
        privacy_penalty: Penalty for sending a privacy-tagged task to a cloud model.
        failure_penalty: Penalty of a failed request (budgeted env: provider down, no fallback).
        exceed_penalty: Penalty when the budget is exceeded with ``on_exceed: terminate``.
    """

    quality_weight: float = 1.0
    cost_weight: float = 0.0
    latency_weight: float = 0.0
    cost_ref_usd: float | Literal["auto"] = "auto"
    latency_slo_s: float = 10.0
    quality_floor: float | None = None
    floor_penalty: float = 0.0
    privacy_penalty: float = 1.0
    failure_penalty: float = 1.0
    exceed_penalty: float = 1.0

    @field_validator(
        "quality_weight",
        "cost_weight",
        "latency_weight",
        "floor_penalty",
        "privacy_penalty",
        "failure_penalty",
        "exceed_penalty",
    )
    @classmethod
    def _nonneg(cls, v: float, info: Any) -> float:
        return _finite_nonneg(v, f"reward.{info.field_name}")

    @field_validator("cost_ref_usd")
    @classmethod
    def _cost_ref(cls, v: float | str) -> float | str:
        if isinstance(v, str):
            return v
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"reward.cost_ref_usd: expected > 0 or 'auto', got {v!r}")
        return v

    @field_validator("latency_slo_s")
    @classmethod
    def _slo(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"reward.latency_slo_s: expected > 0, got {v!r}")
        return v

    @field_validator("quality_floor")
    @classmethod
    def _floor(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError(f"reward.quality_floor: expected a value in [0, 1], got {v!r}")
        return v

    def resolved_cost_ref(self) -> float:
        """``cost_ref_usd`` as a float (raises when still ``"auto"``)."""
        if isinstance(self.cost_ref_usd, str):
            raise ConfigError("reward.cost_ref_usd", "still 'auto': resolve it with load_env_data or set a number")
        return float(self.cost_ref_usd)


class DataSpec(StrictConfig):
    """Where the outcome matrix comes from.

    Attributes:
        source: ``simulated`` (``router_rl.traces.simulate_fleet``), ``importer``
            (``router_rl.traces.import_traces(kind, <datasets dir>/path)``) or ``parquet`` (a
            trace file written by ``router_rl.traces``; relative paths are resolved against the
            spec file's folder).
        n_tasks: Number of simulated tasks (``simulated``).
        seed: Simulation seed (``simulated``).
        kind: Importer kind (``importer``), e.g. ``routerbench``, ``bfcl``.
        path: Dataset folder relative to the datasets dir (``importer``) or parquet file path.
        models: Optional subset / order of the models to route between.
        options: Extra keyword arguments for the importer / simulator.
    """

    source: Literal["simulated", "importer", "parquet"]
    n_tasks: int | None = None
    seed: int = 0
    kind: str | None = None
    path: str | None = None
    models: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.source == "simulated":
            if self.n_tasks is None or self.n_tasks <= 0:
                raise ValueError("data.n_tasks: a simulated source needs n_tasks > 0")
        elif self.source == "importer":
            if not self.kind or not self.path:
                raise ValueError("data: an importer source needs both 'kind' and 'path'")
        elif not self.path:
            raise ValueError("data.path: a parquet source needs a path")
        if self.models is not None and len(set(self.models)) != len(self.models):
            raise ValueError(f"data.models: duplicate model ids in {self.models}")
        if self.models is not None and len(self.models) < 2:
            raise ValueError("data.models: routing needs at least 2 models")
        return self


class SplitSpec(StrictConfig):
    """Which split the environment serves, and how splits are made.

    Attributes:
        name: ``train``, ``val`` or ``test``. Train and test tasks are never mixed.
        method: ``column``: use the data's ``split`` column (a ``val`` split is carved from train
            when the data has none); ``random``: seeded random assignment.
        seed: Seed for carving ``val`` / random assignment.
        val_fraction: Fraction of the train tasks moved to ``val`` when the data has no val split
            (``column``), or the val fraction (``random``).
        test_fraction: Test fraction (``random`` only).
    """

    name: Literal["train", "val", "test"] = "train"
    method: Literal["column", "random"] = "column"
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        for f in ("val_fraction", "test_fraction"):
            v = getattr(self, f)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"split.{f}: expected a value in [0, 1), got {v!r}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("split: val_fraction + test_fraction must be < 1")
        return self


class PrivacySpec(StrictConfig):
    """Which tasks must stay on local models.

    Attributes:
        column: Boolean task column marking private tasks (ignored when absent from the data).
        categories: Task categories that are always private.
    """

    column: str | None = "privacy"
    categories: list[str] = Field(default_factory=list)


class BudgetSpec(StrictConfig):
    """Per-episode spending limit of the budgeted environment.

    Attributes:
        usd: Budget per episode in USD, or
        per_task_usd: budget per task (episode budget = per_task_usd x horizon).
        on_exceed: ``forced_cheapest``: a request that does not fit is served by the cheapest
            model for that task (an overrun by that model is allowed and flagged);
            ``terminate``: the episode ends (terminated) with ``reward.exceed_penalty``.
    """

    usd: float | None = None
    per_task_usd: float | None = None
    on_exceed: Literal["forced_cheapest", "terminate"] = "forced_cheapest"

    @model_validator(mode="after")
    def _one(self) -> BudgetSpec:
        if (self.usd is None) == (self.per_task_usd is None):
            raise ValueError("budget: give exactly one of 'usd' or 'per_task_usd'")
        v = self.usd if self.usd is not None else self.per_task_usd
        assert v is not None
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"budget: expected a finite budget >= 0, got {v!r}")
        return self

    def episode_budget(self, horizon: int) -> float:
        """Budget in USD of an episode of ``horizon`` tasks."""
        return float(self.usd) if self.usd is not None else float(self.per_task_usd or 0.0) * horizon


class DayMixSpec(StrictConfig):
    """Day-to-day variation of the traffic mix of the budgeted environment.

    Each day (episode) draws group weights ``w ~ Dirichlet(concentration · p)``, with ``p`` the
    groups' frequencies in the served split, then draws its ``horizon`` tasks with replacement
    with probability ``w_g / n_g`` for a task of group ``g`` (``n_g`` tasks). Small
    ``concentration`` = very different days (a release day is mostly code review, a quiet day
    mostly flaky-test triage); large = every day close to the average mix. A fixed cost price
    calibrated on the average day overspends on expensive days and underspends on cheap ones,
    which is where a budget-aware (state-dependent) policy can pay.

    Attributes:
        column: Task column whose values are the groups (default ``category``; nulls form a group).
        concentration: Dirichlet concentration ``κ`` (> 0).
    """

    column: str = "category"
    concentration: float = 1.0

    @field_validator("concentration")
    @classmethod
    def _conc(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"day_mix.concentration: expected a finite number > 0, got {v!r}")
        return v


class ProviderRates(StrictConfig):
    """Two-state Markov outage process of one provider (per decision step).

    Attributes:
        p_fail: P(up -> down).
        p_recover: P(down -> up).
        latency_sigma: Sigma of a mean-one log-normal latency multiplier (0 = none).
    """

    p_fail: float = 0.0
    p_recover: float = 1.0
    latency_sigma: float = 0.0

    @model_validator(mode="after")
    def _probs(self) -> ProviderRates:
        for f in ("p_fail", "p_recover"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"outage.{f}: expected a probability in [0, 1], got {v!r}")
        _finite_nonneg(self.latency_sigma, "outage.latency_sigma")
        return self


class OutageSpec(StrictConfig):
    """Provider outage / latency process of the budgeted environment.

    Attributes:
        enabled: Whether providers can go down at all.
        source: ``config``: rates from ``default`` / ``providers``; ``llmperf``: rates fitted from
            the llmperf-provider-latency error runs (``llmperf_map`` maps our provider names to
            llmperf provider names; unmapped providers use ``default``).
        default: Rates of providers not listed.
        providers: Per-provider rates.
        llmperf_path: llmperf folder relative to the datasets dir.
        llmperf_map: Our provider -> llmperf provider.
        affects_local: Whether local models can go down too (default: only cloud providers).
    """

    enabled: bool = False
    source: Literal["config", "llmperf"] = "config"
    default: ProviderRates = ProviderRates(p_fail=0.02, p_recover=0.2)
    providers: dict[str, ProviderRates] = Field(default_factory=dict)
    llmperf_path: str = "llmperf-provider-latency"
    llmperf_map: dict[str, str] = Field(default_factory=dict)
    affects_local: bool = False


class FallbackSpec(StrictConfig):
    """What happens when the chosen provider is down.

    Attributes:
        enabled: Serve the request with the fallback model instead of failing it.
        model: Fallback model id; default: the cheapest local model (by mean cost on the data),
            else the cheapest model.
    """

    enabled: bool = False
    model: str | None = None


class EnvSpec(StrictConfig):
    """A named, versioned routing environment (``router_rl/<name>-v<version>``).

    Attributes:
        name: Lower-case name (``[a-z0-9][a-z0-9_-]*``).
        version: Gymnasium version suffix.
        kind: ``bandit`` (:class:`RoutingBandit`) or ``budgeted`` (:class:`BudgetedRouting`).
        description: One line for ``router-rl envs list``.
        data: Data source.
        split: Served split.
        features: ``FeatureEncoder`` config (passed as-is to ``router_rl.features``).
        encoder_path: Optional saved encoder (JSON) to use instead of fitting one on train; its
            dimension must match what the spec's features produce.
        reward: Reward weights.
        horizon: Tasks per episode; ``None`` = a full pass over the split.
        episode: ``sample``: ``horizon`` tasks drawn without replacement (with replacement
            when horizon > split size) from ``np_random``; ``sequential``: a contiguous window
            of ``horizon`` tasks in trace order starting at a random offset (offset 0 for a
            full pass).
        obs_clip: Encoded features are clipped to ``[-obs_clip, obs_clip]`` (the Box bounds).
        privacy: Which tasks must stay local.
        budget: Budget (required for ``budgeted``).
        outage: Provider outage process (``budgeted``).
        fallback: Fallback behaviour (``budgeted``).
        day_mix: Day-to-day variation of the task mix (``budgeted``, ``episode: sample``; see
            :class:`DayMixSpec`); ``None`` = every day drawn uniformly from the split.
    """

    name: str
    version: int = 0
    kind: EnvKind = "bandit"
    description: str = ""
    data: DataSpec
    split: SplitSpec = SplitSpec()
    features: dict[str, Any] = Field(default_factory=dict)
    encoder_path: str | None = None
    reward: RewardSpec = RewardSpec()
    horizon: int | None = 256
    episode: Literal["sample", "sequential"] = "sample"
    obs_clip: float = 10.0
    privacy: PrivacySpec = PrivacySpec()
    budget: BudgetSpec | None = None
    outage: OutageSpec = OutageSpec()
    fallback: FallbackSpec = FallbackSpec()
    day_mix: DayMixSpec | None = None
    #: Folder of the spec file (set by :func:`load_spec`; resolves relative paths).
    base_dir: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"name: expected lower-case [a-z0-9][a-z0-9_-]*, got {v!r}")
        return v

    @model_validator(mode="after")
    def _check(self) -> EnvSpec:
        if self.version < 0:
            raise ValueError(f"version: expected >= 0, got {self.version}")
        if self.horizon is not None and self.horizon <= 0:
            raise ValueError(f"horizon: expected > 0 or null, got {self.horizon}")
        if not (math.isfinite(self.obs_clip) and self.obs_clip > 0):
            raise ValueError(f"obs_clip: expected > 0, got {self.obs_clip}")
        if self.kind == "budgeted" and self.budget is None:
            raise ValueError("budget: a 'budgeted' environment needs a budget section")
        if self.day_mix is not None and (self.kind != "budgeted" or self.episode != "sample"):
            raise ValueError(
                f"day_mix: needs kind 'budgeted' and episode 'sample' (days are drawn, not windows of the trace); "
                f"got kind {self.kind!r}, episode {self.episode!r}"
            )
        return self

    @property
    def env_id(self) -> str:
        """Gymnasium id, ``router_rl/<name>-v<version>``."""
        return f"router_rl/{self.name}-v{self.version}"

    def with_overrides(self, **overrides: Any) -> EnvSpec:
        """A validated copy with top-level fields replaced.

        Nested sections may be given as dicts; they are merged into the current section, e.g.
        ``with_overrides(split={"name": "test"}, reward={"cost_weight": 0.5})``. The shortcut
        ``split="test"`` sets the split name.
        """
        data = self.model_dump()
        for key, value in overrides.items():
            if key not in type(self).model_fields:
                raise ConfigError(key, f"unknown EnvSpec field (known: {sorted(type(self).model_fields)})")
            if key == "split" and isinstance(value, str):
                value = {"name": value}
            if isinstance(value, BaseModel):
                value = value.model_dump()
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                merged = dict(data[key])
                merged.update(value)
                data[key] = merged
            else:
                data[key] = value
        return spec_from_dict(data, source=f"{self.name} (overrides)")


def spec_from_dict(data: dict[str, Any], *, source: str | None = None) -> EnvSpec:
    """Validate a spec dict; errors name the source and the offending field."""
    try:
        return EnvSpec.model_validate(data)
    except ValidationError as e:
        raise config_error(e, "", source=source) from None


def specs_dir() -> Path:
    """The top-level ``envs/`` folder of the repository (one YAML spec per environment)."""
    return Path(__file__).resolve().parents[2] / "envs"


def list_spec_files(directory: Path | None = None) -> list[Path]:
    """Spec files in ``directory`` (default :func:`specs_dir`), sorted by name."""
    d = directory or specs_dir()
    if not d.is_dir():
        return []
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def load_spec(path_or_name: str | Path) -> EnvSpec:
    """Load a spec from a YAML path, a spec name (``sim-bandit``) or a Gymnasium id.

    Raises:
        FileNotFoundError: when no such file / named spec exists.
        ConfigError: when the YAML does not validate (names file and field).
    """
    import yaml

    p = Path(path_or_name)
    if not (p.suffix in (".yaml", ".yml") or p.exists()):
        name = str(path_or_name)
        if name.startswith("router_rl/"):
            name = name.removeprefix("router_rl/")
        name = re.sub(r"-v\d+$", "", name)
        candidates = [f for f in list_spec_files() if f.stem == name]
        if not candidates:
            known = [f.stem for f in list_spec_files()]
            raise FileNotFoundError(f"no environment spec named {path_or_name!r} in {specs_dir()} (known: {known})")
        p = candidates[0]
    if not p.is_file():
        raise FileNotFoundError(f"environment spec file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError("<yaml>", f"not valid YAML: {e}", source=str(p)) from e
    if not isinstance(data, dict):
        raise ConfigError("<spec>", f"expected a mapping at the top level, got {type(data).__name__}", source=str(p))
    data.setdefault("base_dir", str(p.resolve().parent))
    spec = spec_from_dict(data, source=str(p))
    if spec.name != p.stem:
        raise ConfigError("name", f"must equal the file name {p.stem!r}, got {spec.name!r}", source=str(p))
    return spec

"""Validated configuration of a federated LoRA run."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router_rl.core.errors import ConfigError

#: Environment a Flower simulation needs here (no telemetry, no runtime installs, no hub access).
FLOWER_ENV: dict[str, str] = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}

#: ``[tool.flwr.app.config]`` keys that are not :class:`FederatedConfig` fields (read by the apps).
EXTRA_RUN_KEYS: tuple[str, ...] = ("output-dir",)


class FederatedConfig(BaseModel):
    """Everything a federated LoRA run needs; validated on construction.

    Attributes:
        base_model_path: LOCAL folder of the base causal LM and its tokenizer (never a hub id).
        agent_types: One Flower client (SuperNode) per agent type, in partition-id order.
        num_rounds: Federated rounds ``R``.
        local_epochs: Passes over the client's training partition per round.
        max_local_steps: Upper bound on optimizer steps per round (0 = no bound).
        batch_size: Sequences per optimizer step.
        lr: AdamW learning rate of the LoRA parameters.
        weight_decay: AdamW weight decay.
        max_length: Token truncation length of each prompt.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator.
        lora_dropout: Dropout on the LoRA branch (0 keeps training deterministic-friendly).
        target_modules: Module names LoRA wraps (e.g. ``q_proj``, ``v_proj``).
        fraction_train: Fraction of clients sampled each training round.
        fraction_evaluate: Fraction of clients sampled each evaluation round.
        n_tasks: Simulated fleet size the partitions are drawn from.
        max_examples_per_client: Cap on each client's training examples (0 = no cap).
        max_eval_examples_per_client: Cap on each client's held-out examples (0 = no cap).
        seed: Seed of everything (data, LoRA init, sampling, dropout, batch order).
        data_source: ``simulated`` (language modelling on simulated prompts) or ``trajectories``
            (SFT on accepted prompt -> response pairs of each client's trajectory store).
        trajectory_dirs: One trajectory store folder per client, in ``agent_types`` order
            (:class:`router_rl.federated.trajectories.TrajectoryStore`); trajectories only.
        quality_threshold: A trajectory is accepted when its quality is >= this.
        heldout_fraction: Share of a store's prompts (by prompt hash, seeded) held out for evaluation.
        max_request_tokens: Prompt tokens kept (the end of the prompt) before the response.

    Strategy, secure aggregation and differential privacy (see ``docs/federated.md``):

    Attributes:
        strategy: ``fedavg``, ``fedprox`` (proximal term on the client), ``fedadam`` or ``fedyogi``
            (Flower's server optimisers applied to the FedAvg aggregate).
        proximal_mu: FedProx ``mu`` (only with ``strategy="fedprox"``; 0 equals FedAvg exactly).
        server_lr: Server learning rate ``eta`` of FedAdam / FedYogi.
        server_beta_1: First-moment decay of FedAdam / FedYogi.
        server_beta_2: Second-moment decay of FedAdam / FedYogi.
        server_tau: Adaptivity ``tau`` of FedAdam / FedYogi.
        secure_aggregation: Aggregate the adapters with Flower's SecAgg+ workflow (the server
            only sees masked, quantised contributions and their sum).
        secagg_num_shares: SecAgg+ shares per client as a fraction of the sampled clients.
        secagg_reconstruction_threshold: Fraction of the shares needed to reconstruct a secret.
        secagg_clipping_range: Values are clipped to ``[-r, r]`` before quantisation.
        secagg_quantization_range: Quantisation levels (integer).
        secagg_max_weight: Largest client weight (``num-examples``) SecAgg+ quantises exactly.
        secagg_timeout: Seconds each SecAgg+ stage waits for replies (0 = no limit).
        dp: Differential privacy: Flower's client-side fixed clipping of each update plus Gaussian
            noise on the aggregate (uniform client weights, so the sensitivity is ``clip / n``).
        dp_noise_multiplier: Noise std / clipping norm (of the sum).
        dp_clipping_norm: L2 bound of each client's update (new adapter - global adapter).
        dp_delta: ``delta`` at which the cumulative ``epsilon`` is reported.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model_path: Path
    agent_types: tuple[str, ...] = ("test-generator", "coverage-analyzer", "flaky-test-hunter", "code-reviewer")
    num_rounds: int = Field(default=3, ge=1, le=10_000)
    local_epochs: int = Field(default=1, ge=1, le=1000)
    max_local_steps: int = Field(default=0, ge=0)
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=5e-3, gt=0, le=10)
    weight_decay: float = Field(default=0.0, ge=0)
    max_length: int = Field(default=128, ge=2)
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: float = Field(default=16.0, gt=0)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    fraction_train: float = Field(default=1.0, gt=0, le=1)
    fraction_evaluate: float = Field(default=1.0, gt=0, le=1)
    n_tasks: int = Field(default=400, ge=1)
    max_examples_per_client: int = Field(default=0, ge=0)
    max_eval_examples_per_client: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0)

    # --- trajectories (issue #22 item 4; router_rl/federated/trajectories.py) -----------------
    # data_source "simulated": language modelling on the simulated fleet's prompts (above).
    # data_source "trajectories": supervised fine-tuning on (prompt -> response) pairs whose quality
    # cleared ``quality_threshold``, read from each client's own trajectory store; the loss is on
    # the response tokens only. ``agent_types`` are then the stores' names (any names).
    data_source: Literal["simulated", "trajectories"] = "simulated"
    trajectory_dirs: tuple[str, ...] = ()
    quality_threshold: float = Field(default=1.0, ge=0, le=1)
    heldout_fraction: float = Field(default=0.2, gt=0, lt=1)
    max_request_tokens: int = Field(default=48, ge=1)
    # --- strategy / secure aggregation / differential privacy (issue #22 items 1, 2, 5) -------
    strategy: Literal["fedavg", "fedprox", "fedadam", "fedyogi"] = "fedavg"
    proximal_mu: float = Field(default=0.0, ge=0)
    server_lr: float = Field(default=1e-2, gt=0, le=10)
    server_beta_1: float = Field(default=0.9, ge=0, lt=1)
    server_beta_2: float = Field(default=0.99, ge=0, lt=1)
    server_tau: float = Field(default=1e-3, gt=0)
    secure_aggregation: bool = False
    secagg_num_shares: float = Field(default=1.0, gt=0, le=1)
    secagg_reconstruction_threshold: float = Field(default=0.5, gt=0, le=1)
    secagg_clipping_range: float = Field(default=8.0, gt=0)
    secagg_quantization_range: int = Field(default=2**22, ge=2, lt=2**32)
    secagg_max_weight: float = Field(default=1000.0, gt=0)
    secagg_timeout: float = Field(default=0.0, ge=0)
    dp: bool = False
    dp_noise_multiplier: float = Field(default=1.0, gt=0)
    dp_clipping_norm: float = Field(default=1.0, gt=0)
    dp_delta: float = Field(default=1e-5, gt=0, lt=1)
    # --- end of the strategy / secagg / dp block ------------------------------------------------

    @field_validator("agent_types", "target_modules")
    @classmethod
    def _non_empty_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("must list at least one name")
        if len(set(v)) != len(v):
            raise ValueError(f"names must be unique, got {list(v)}")
        if any(not s.strip() for s in v):
            raise ValueError("names must be non-empty strings")
        return v

    @field_validator("base_model_path")
    @classmethod
    def _local_path(cls, v: Path) -> Path:
        if not str(v).strip():
            raise ValueError("must be a local folder path")
        return v

    @model_validator(mode="after")
    def _known_agents(self) -> FederatedConfig:
        if self.data_source == "trajectories":
            if len(self.trajectory_dirs) != len(self.agent_types):
                raise ValueError(
                    f"trajectory_dirs: data_source 'trajectories' needs one store per agent type "
                    f"({len(self.agent_types)}), got {len(self.trajectory_dirs)}"
                )
            return self
        if self.trajectory_dirs:
            raise ValueError("trajectory_dirs: only used with data_source 'trajectories'")
        from router_rl.traces.simulate import AGENT_TYPES

        unknown = [a for a in self.agent_types if a not in AGENT_TYPES]
        if unknown:
            raise ValueError(f"agent_types: unknown agent type(s) {unknown}; expected some of {sorted(AGENT_TYPES)}")
        return self

    @model_validator(mode="after")
    def _strategy_settings(self) -> FederatedConfig:
        if self.proximal_mu and self.strategy != "fedprox":
            raise ValueError(f"proximal_mu: only used with strategy='fedprox', got strategy={self.strategy!r}")
        sampled = max(1, math.ceil(self.fraction_train * self.num_clients - 1e-9))
        if self.secure_aggregation and sampled < 3:
            raise ValueError(
                f"secure_aggregation: SecAgg+ needs at least 3 sampled clients per round, got {sampled} "
                f"({self.num_clients} clients x fraction_train {self.fraction_train})"
            )
        return self

    @property
    def num_clients(self) -> int:
        """Number of clients (one per agent type)."""
        return len(self.agent_types)

    # --- conversions ----------------------------------------------------------------------
    @classmethod
    def create(cls, source: str | None = None, **values: Any) -> FederatedConfig:
        """Build a config, turning pydantic errors into a :class:`ConfigError` naming the field.

        Args:
            source: Where the values came from (file name), included in the message.
            **values: Field values (snake_case).
        """
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            if field:
                raise ConfigError(field, f"{err['msg']} (got {err.get('input')!r})", source=source) from exc
            # a cross-field check (model validator) names its field first: "<field>: <problem>"
            msg = str(err["msg"]).removeprefix("Value error, ")
            field, sep, problem = msg.partition(": ")
            if not sep or field not in cls.model_fields:
                field, problem = "FederatedConfig", msg
            raise ConfigError(field, problem, source=source) from exc

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any], *, source: str = "run_config") -> FederatedConfig:
        """Build from a Flower ``run_config`` (kebab-case keys, lists as comma-separated strings).

        Args:
            run_config: ``context.run_config`` or the ``[tool.flwr.app.config]`` table.
            source: Name used in error messages.
        """
        values: dict[str, Any] = {}
        for key, raw in run_config.items():
            if key in EXTRA_RUN_KEYS:
                continue
            name = str(key).replace("-", "_")
            if name not in cls.model_fields:
                raise ConfigError(str(key), f"unknown setting; expected one of {sorted(cls.model_fields)}",
                                  source=source)
            if name in ("agent_types", "target_modules", "trajectory_dirs") and isinstance(raw, str):
                raw = tuple(s.strip() for s in raw.split(",") if s.strip())
            values[name] = raw
        return cls.create(source=source, **values)

    def to_run_config(self) -> dict[str, bool | int | float | str]:
        """The inverse of :meth:`from_run_config` (Flower config values are scalars)."""
        out: dict[str, bool | int | float | str] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, tuple | list):
                value = ",".join(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name.replace("_", "-")] = value
        return out

    @classmethod
    def from_pyproject(cls, path: str | Path, **overrides: Any) -> FederatedConfig:
        """Read ``[tool.flwr.app.config]`` of a ``pyproject.toml`` and apply ``overrides``.

        Relative ``base-model-path`` values are resolved against the file's folder.
        """
        p = Path(path)
        with p.open("rb") as fh:
            doc = tomllib.load(fh)
        table = doc.get("tool", {}).get("flwr", {}).get("app", {}).get("config")
        if table is None:
            raise ConfigError("tool.flwr.app.config", "table missing", source=str(p))
        merged = {**table, **{k.replace("_", "-"): v for k, v in overrides.items()}}
        bmp = merged.get("base-model-path")
        if isinstance(bmp, str) and not Path(bmp).is_absolute():
            merged["base-model-path"] = str((p.parent / bmp).resolve())
        return cls.from_run_config(merged, source=str(p))

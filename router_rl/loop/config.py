"""``LoopConfig``: every setting of a closed-loop run (``router-rl loop``, ``experiments/closed_loop.py``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from router_rl.core.config import NonNegativeFloat, PositiveFloat, PositiveInt, StrictConfig

#: Kinds of deliberately worse candidates a round can be given instead of the learned one.
BAD_CANDIDATES: tuple[str, ...] = ("random", "cheapest", "corrupted")


class LoopConfig(StrictConfig):
    """Settings of :func:`router_rl.loop.rounds.run_loop`.

    Attributes:
        rounds: Rounds of traffic -> learning -> gate -> swap.
        requests_per_round: Requests the driver sends per round.
        seed: Seed of the world (simulated fleet), the traffic, the router's sampling and every fit.
        traces: A trace file (full-information outcome matrix) to replay; None = the simulated fleet.
        fleet_tasks: Tasks of the simulated fleet (its train split is the traffic, test held out).
        hash_buckets: Word / char n-gram hash buckets of the feature encoder.
        concurrency: Concurrent requests of the driver.
        epsilon: The router's exploration share on every strategy request (> 0: OPE needs it).
        lam: Cost weight of the learners' decision rule and of the gate's utility (units of the
            reference model's mean cost).
        feedback_delay_s: Seconds between an answer and its oracle feedback.
        feedback_batch: Feedback events per batch request.
        time_scale: Replay latency multiplier (0 = the backends answer at once).
        train_window: Rounds of log the learner is trained on (0 = every round so far).
        learner_rounds: Boosting-rounds cap of the LightGBM learners (early stopping picks fewer).
        clip: Importance-weight clip of the off-policy learner.
        n_bootstrap: Bootstrap resamples of the OPE intervals.
        ope_folds: Cross-fitting folds of the OPE reward models.
        reward_model: OPE reward model.
        estimator: The estimator the gate reads.
        quality_floor / local_target / max_unsupported / min_ess / min_rows: The promotion gate's
            thresholds (:class:`router_rl.registry.gate.GateConfig`: quality ratio lower bound vs the
            best single model, local share, unsupported mass, Kish ESS in rows, labeled rows).
        inject_regression_round: From this round on, one backend model answers with lower quality.
        regression_model: That model (None: the model the live version served most the round before).
        regression_factor: Its quality is multiplied by this.
        bad_candidate_round: In this round the candidate is a deliberately worse policy.
        bad_candidate_kind: ``random``, ``cheapest`` or ``corrupted`` (LightGBM fitted on inverted labels).
        swap_at_request: A version promoted at the end of a round goes live (``POST /admin/policy``)
            after this many requests of the next round were sent: a hot swap under load.
        rollback_window / rollback_min_feedback / rollback_floor_ratio: The router's automatic
            rollback (``learned.rollback``: quality window, labels needed, floor as a share of the
            predecessor's quality).
        request_timeout_s: Per-request timeout of the driver.
    """

    rounds: PositiveInt = 5
    requests_per_round: Annotated[int, Field(ge=50)] = 2000
    seed: int = 0
    traces: str | None = None
    fleet_tasks: Annotated[int, Field(ge=100)] = 3000
    hash_buckets: Annotated[int, Field(ge=8)] = 64
    concurrency: PositiveInt = 16
    epsilon: Annotated[float, Field(gt=0, lt=1)] = 0.1
    lam: NonNegativeFloat = 0.1
    feedback_delay_s: NonNegativeFloat = 0.5
    feedback_batch: Annotated[int, Field(ge=1, le=1000)] = 200
    time_scale: NonNegativeFloat = 0.0
    train_window: Annotated[int, Field(ge=0)] = 0
    learner_rounds: PositiveInt = 100
    clip: Annotated[float, Field(ge=1)] = 10.0
    n_bootstrap: Annotated[int, Field(ge=10)] = 200
    ope_folds: Annotated[int, Field(ge=2)] = 2
    reward_model: Literal["lightgbm", "ridge"] = "lightgbm"
    estimator: Literal["dr", "snips", "ips", "dm", "switch_dr"] = "dr"
    quality_floor: Annotated[float, Field(gt=0, le=1)] = 0.85
    local_target: Annotated[float, Field(ge=0, le=1)] | None = None
    max_unsupported: Annotated[float, Field(ge=0, le=1)] = 0.02
    min_ess: NonNegativeFloat = 20.0
    min_rows: PositiveInt = 100
    inject_regression_round: PositiveInt | None = None
    regression_model: str | None = None
    regression_factor: Annotated[float, Field(ge=0, lt=1)] = 0.3
    bad_candidate_round: PositiveInt | None = None
    bad_candidate_kind: Literal["random", "cheapest", "corrupted"] = "corrupted"
    swap_at_request: Annotated[int, Field(ge=0)] = 20
    rollback_window: Annotated[int, Field(ge=1)] = 200
    rollback_min_feedback: Annotated[int, Field(ge=1)] = 30
    rollback_floor_ratio: Annotated[float, Field(gt=0, le=1)] = 0.95
    request_timeout_s: PositiveFloat = 60.0

    def gate_config(self, cost_ref_usd: float, seed: int) -> Any:
        """The :class:`router_rl.registry.gate.GateConfig` of a round."""
        from router_rl.registry.gate import GateConfig

        return GateConfig(estimator=self.estimator, quality_floor=self.quality_floor, local_target=self.local_target,
                          min_rows=self.min_rows, min_ess=self.min_ess, max_unsupported_mass=self.max_unsupported,
                          n_boot=max(100, self.n_bootstrap), seed=seed, lam=self.lam, cost_ref_usd=cost_ref_usd,
                          folds=self.ope_folds, reward_model=self.reward_model)

    def rollback_settings(self) -> dict[str, object]:
        """The router's ``learned.rollback`` block."""
        return {"enabled": True, "window": self.rollback_window, "min_feedback": self.rollback_min_feedback,
                "floor_ratio": self.rollback_floor_ratio}

"""Canonical trace tables as polars schemas (documented in ``docs/traces.md``).

Three tables:

* **Outcome matrix** (full information): one row per (task, model) pair; every task has a
  row for every candidate model.
* **Decision log** (partial information): one row per routed request, written by the live
  router, with the propensity of the chosen model and the full action distribution.
* **Model catalog**: one row per model, with location (local/cloud) and prices.

Row numbers in error messages are 0-based data rows (the header is not counted).
"""

from __future__ import annotations

from typing import Final

import polars as pl

SCHEMA_VERSION: Final = 1

LOCAL: Final = "local"
CLOUD: Final = "cloud"
LOCATIONS: Final = (LOCAL, CLOUD)

# --- outcome matrix -------------------------------------------------------------------------
OUTCOME_REQUIRED: Final[dict[str, pl.DataType]] = {
    "task_id": pl.Utf8(),
    "model": pl.Utf8(),
    "quality": pl.Float64(),
    "cost_usd": pl.Float64(),
}
OUTCOME_OPTIONAL: Final[dict[str, pl.DataType]] = {
    "latency_s": pl.Float64(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "error": pl.Utf8(),  # null = no error; otherwise a short error kind ("timeout", "http_429", ...)
}
#: Task-level columns: constant within a task_id.
TASK_COLUMNS: Final[dict[str, pl.DataType]] = {
    "prompt": pl.Utf8(),
    "category": pl.Utf8(),
    "source": pl.Utf8(),
    "split": pl.Utf8(),
}
OUTCOME_SCHEMA: Final[dict[str, pl.DataType]] = {
    **OUTCOME_REQUIRED,
    **OUTCOME_OPTIONAL,
    **TASK_COLUMNS,
}
SPLITS: Final = ("train", "val", "test")

# --- decision log ---------------------------------------------------------------------------
DECISION_LOG_SCHEMA: Final[dict[str, pl.DataType]] = {
    "request_id": pl.Utf8(),
    "ts": pl.Datetime("us", "UTC"),
    "agent_id": pl.Utf8(),
    "agent_type": pl.Utf8(),
    # task features (the inputs of the feature encoder, minus raw prompt text by default)
    "category": pl.Utf8(),
    "complexity": pl.Utf8(),  # the prompt heuristic's level
    "declared_complexity": pl.Utf8(),  # what the agent declared (SIMPLE ... VERY_COMPLEX), null if not
    "prompt_chars": pl.Int64(),
    "prompt_sha256": pl.Utf8(),
    "prompt": pl.Utf8(),  # null unless the operator opted in to logging prompt text
    "features": pl.List(pl.Float32()),  # encoded feature vector when available, else null
    "encoder_fingerprint": pl.Utf8(),  # FeatureEncoder.fingerprint of ``features`` (null: no features)
    # decision
    "strategy": pl.Utf8(),  # the requested strategy (router-rl/auto resolves to the default one)
    "decided_by": pl.Utf8(),  # the policy that produced action_probs: "learned", a rule strategy, "explicit"
    "policy_version": pl.Utf8(),
    "action_models": pl.List(pl.Utf8()),
    "action_probs": pl.List(pl.Float64()),
    "chosen_model": pl.Utf8(),
    "propensity": pl.Float64(),
    "explored": pl.Boolean(),  # chosen_model is not the top choice of the policy before exploration
    "exploration": pl.Utf8(),  # JSON of the exploration applied ({"epsilon": .., "temperature": ..}; null: none)
    "shadow_model": pl.Utf8(),  # what a shadow policy would have chosen (not executed)
    "breaker_states": pl.Utf8(),  # JSON object provider -> closed/open/half_open
    "policy_state": pl.Utf8(),  # JSON RouterState sent to the learned policy (null when none was sent)
    # outcome
    "served_model": pl.Utf8(),  # differs from chosen_model when a fallback served it
    "served_propensity": pl.Float64(),  # action_probs of served_model (0 when the policy never picks it)
    "outcome_model": pl.Utf8(),  # the model whose answer quality/cost/latency/tokens describe (null: none)
    "attempts": pl.List(pl.Utf8()),  # failed attempts in order, "model:reason" (hedge losers included)
    "fallback_used": pl.Boolean(),
    "fallback_reason": pl.Utf8(),
    "quality": pl.Float64(),  # nullable: labels can arrive later
    "cost_usd": pl.Float64(),
    "latency_s": pl.Float64(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "usage_estimated": pl.Boolean(),  # tokens estimated by the router (the backend reported no usage)
    "error": pl.Utf8(),
    "response": pl.Utf8(),  # answer text: null unless the operator opted in for this agent type
    # iterative refinement (null: the request was not refined; docs/judge.md)
    "refine_iterations": pl.Int64(),  # follow-up generations after the first answer
    "refine_final_score": pl.Float64(),  # the check's score of the returned answer
    "refine_passed": pl.Boolean(),
    "refine_stop": pl.Utf8(),  # passed | cap | timeout | no_tier | error:<reason>
    "refine_model": pl.Utf8(),  # the model whose answer was returned (also outcome_model)
    "refine_escalations": pl.List(pl.Utf8()),
    "refine_cost_usd": pl.Float64(),  # cost of the calls beyond the first answer (included in cost_usd)
    "refine_latency_s": pl.Float64(),
    "refine_scores": pl.List(pl.Float64()),
}
#: Columns added after the first decision-log layout: part files written before them read as null.
DECISION_LOG_ADDED: Final = (
    "policy_state", "encoder_fingerprint", "explored", "exploration", "response", "declared_complexity",
    "refine_iterations", "refine_final_score", "refine_passed", "refine_stop", "refine_model",
    "refine_escalations", "refine_cost_usd", "refine_latency_s", "refine_scores",
)
DECISION_LOG_REQUIRED: Final = (
    "request_id",
    "ts",
    "chosen_model",
    "propensity",
    "action_models",
    "action_probs",
    "policy_version",
)

# --- outcome feedback -----------------------------------------------------------------------
#: One row per feedback event (``POST /v1/feedback``), written as atomic part files like the
#: decision log. Several rows per request are kept (one per source, or repeated over time);
#: ``feedback_id`` is the idempotency key: a row whose key is already stored is not stored again.
FEEDBACK_SCHEMA: Final[dict[str, pl.DataType]] = {
    "feedback_id": pl.Utf8(),  # client's idempotency key, else sha256 of the canonical event
    "request_id": pl.Utf8(),
    "quality": pl.Float64(),  # in [0, 1]
    "source": pl.Utf8(),  # "judge:pytest", "agent", "human", "simulated", ...
    "details": pl.Utf8(),  # JSON object or null
    "ts": pl.Datetime("us", "UTC"),  # when the outcome was observed (client's, else received_ts)
    "received_ts": pl.Datetime("us", "UTC"),  # when the router stored it
}
FEEDBACK_REQUIRED: Final = ("feedback_id", "request_id", "quality", "source", "ts", "received_ts")

# --- logged bandit data ---------------------------------------------------------------------
#: ``router-rl logs join``: one row per routed decision (rejected requests excluded and counted)
#: with its label joined from the feedback. The action is ``chosen_model`` sampled with
#: ``propensity``; the reward describes ``outcome_model`` (which differs from the chosen model
#: after a fallback: the fallback is part of what choosing that model produced).
LOGGED_SCHEMA: Final[dict[str, pl.DataType]] = {
    "request_id": pl.Utf8(),
    "ts": pl.Datetime("us", "UTC"),
    "agent_id": pl.Utf8(),
    "agent_type": pl.Utf8(),
    "category": pl.Utf8(),
    "complexity": pl.Utf8(),  # the prompt heuristic's level
    "declared_complexity": pl.Utf8(),  # what the agent declared (SIMPLE ... VERY_COMPLEX), null if not
    "prompt_chars": pl.Int64(),
    "prompt_sha256": pl.Utf8(),
    "features": pl.List(pl.Float32()),
    "encoder_fingerprint": pl.Utf8(),
    "strategy": pl.Utf8(),
    "decided_by": pl.Utf8(),
    "policy_version": pl.Utf8(),
    "action_models": pl.List(pl.Utf8()),
    "action_probs": pl.List(pl.Float64()),
    "action_locations": pl.List(pl.Utf8()),  # "local"/"cloud" per action_models entry (null: no catalog given)
    "chosen_model": pl.Utf8(),
    "propensity": pl.Float64(),
    "explored": pl.Boolean(),
    "served_model": pl.Utf8(),
    "served_propensity": pl.Float64(),
    "outcome_model": pl.Utf8(),
    "fallback_used": pl.Boolean(),
    "fallback_reason": pl.Utf8(),
    "cost_usd": pl.Float64(),
    "latency_s": pl.Float64(),
    "error": pl.Utf8(),
    # the label
    "quality": pl.Float64(),  # null: no feedback yet
    "label_sources": pl.List(pl.Utf8()),  # the sources the label was joined from
    "n_feedback": pl.Int64(),  # feedback rows seen for this request (before the join rule)
    "label_ts": pl.Datetime("us", "UTC"),  # newest feedback used
}

# --- model catalog --------------------------------------------------------------------------
CATALOG_SCHEMA: Final[dict[str, pl.DataType]] = {
    "model": pl.Utf8(),
    "provider": pl.Utf8(),
    "location": pl.Utf8(),  # "local" | "cloud"
    "usd_per_m_input": pl.Float64(),
    "usd_per_m_output": pl.Float64(),
    "gpu_usd_per_hour": pl.Float64(),  # local compute price; 0 for cloud
    "tokens_per_s": pl.Float64(),  # local decode throughput, for GPU-seconds; null if unknown
    "context_window": pl.Int64(),
    "open_weight": pl.Boolean(),
}

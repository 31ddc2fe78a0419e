"""The closed loop, round by round: traffic -> feedback -> join -> learn -> OPE gate -> swap.

(Over 500 lines on purpose: one concept, a round of the closed loop and the run of rounds; its
record types and steps read in order, and splitting them would scatter one sequence over files.)

:func:`run_loop` starts the world's replay backends and the router (rules + exploration) on
127.0.0.1 (:class:`~router_rl.loop.servers.LoopServers`), then for each round:

1. **traffic**: the driver sends ``requests_per_round`` requests of the traffic tasks (drawn with
   the run's seed) to the router; the oracle posts each served answer's realised quality after a
   delay (:class:`~router_rl.loop.oracle_feedback.OracleFeedback`). From ``inject_regression_round``
   one model's backend answers with lower quality (``PUT /admin/quality``);
2. **join**: :func:`router_rl.logs.join.join_logs` of the decision log and the feedback; each
   answered row's ``cost_usd`` is re-priced with the matrix's recorded cost of (task, served model)
   (the replay backends answer at once, so the router's measured GPU-seconds of local models
   would be ~0; the router's own figure is kept in the round record);
3. **learn**: a LightGBM router fitted from the log with the off-policy correction
   (:func:`router_rl.policies.offpolicy.fit_from_log`, ``iw``), on the last ``train_window`` rounds;
   in ``bad_candidate_round`` a deliberately worse candidate instead;
4. **gate**: the candidate (registered in the policy registry) against the live version on this
   round's log: :func:`router_rl.registry.gate.evaluate_gate` (lower 95% bound of the paired
   utility difference > 0, quality ratio vs the best single model, support, ESS); its verdict is
   recorded in the registry (``promotion`` / ``refusal`` record);
5. **swap**: a promoted candidate goes live through the router's ``POST /admin/policy`` after
   ``swap_at_request`` requests of the next round (a hot swap under load); the router's automatic
   rollbacks (quality window below the floor) are read back from the registry's records;
6. **truth**: the true values (from the matrix) of the live version, the served traffic and the
   candidate on this round's requests, and of the live version on held-out tasks, next to the
   OPE estimates and whether their intervals cover them.

:class:`LoopResult` holds one :class:`RoundRecord` per round, the offline full-information
LightGBM baseline on the held-out tasks and the run's counters; ``router_rl.loop.report`` writes
it out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from router_rl.loop.config import LoopConfig
from router_rl.loop.truth import allowed_mask, base_distribution, round_truth, served_by_router, utility

if TYPE_CHECKING:
    from router_rl.logs.data import LoggedData
    from router_rl.loop.driver import Answer
    from router_rl.loop.servers import LoopServers
    from router_rl.loop.world import LoopWorld
    from router_rl.policies.base import RoutingPolicy

log = logging.getLogger("router_rl.loop")

#: Version name of the rule router the loop starts from.
RULES_VERSION = "v0001"


@dataclass
class RoundRecord:
    """What happened in one round (JSON-able; ``report`` tabulates it).

    Attributes:
        round: 1-based.
        live_version: The version live during the round's traffic.
        requests / failed: Requests sent / failed (transport error or non-200).
        decided_by: Rows per ``x-router-policy`` header value.
        explored_share: Logged rows marked ``explored``.
        live: Realised live quality (labels), cost (re-priced) and local share of the round's rows.
        router_cost_usd: Mean cost the router itself logged (before re-pricing).
        true_live: True values of the live version (before exploration) on the round's requests.
        true_served: True values of the served traffic (live version + exploration).
        ope_live: The live version's OPE estimate per metric (``value``, ``lower``, ``upper``, ``covered``).
        candidate: Kind, version, true values, OPE estimates and coverage of the candidate.
        gate: ``passed`` and every check with its numbers.
        promoted: The new version when the gate passed, else None.
        regression: ``{"model", "factor"}`` when a regression was injected at this round's start.
        test_live: True values of the version live after the round on the held-out tasks
            (None for the rule router, which is not a policy artifact).
        oracle: The oracle's counters for the round.
        rollbacks: Automatic (or manual) rollbacks recorded in the registry during the round, with
            the index of the first request of the round served by the version rolled back to.
        seconds: Wall time of the round's phases.
    """

    round: int
    live_version: str
    requests: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    decided_by: dict[str, int] = field(default_factory=dict)
    explored_share: float = 0.0
    live: dict[str, float] = field(default_factory=dict)
    router_cost_usd: float = 0.0
    true_live: dict[str, float] = field(default_factory=dict)
    true_served: dict[str, float] = field(default_factory=dict)
    ope_live: dict[str, dict[str, Any]] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    promoted: str | None = None
    regression: dict[str, Any] | None = None
    test_live: dict[str, float] | None = None
    oracle: dict[str, Any] = field(default_factory=dict)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class LoopResult:
    """A whole run.

    Attributes:
        config: The settings.
        rounds: One record per round.
        baseline: The offline full-information LightGBM on the held-out tasks (true values of the
            matrix as recorded: no injected regression).
        cost_ref_usd: The utility's cost scale (mean cost of the reference model on the traffic tasks).
        reference_model: That model (best mean quality on the traffic tasks).
        versions: ``version -> artifact folder`` of every registered version (rules, candidates).
        out: The run folder.
        final_version: The registry's live version when the run ended (after promotions and rollbacks).
        final_test: Its true values on the held-out tasks (no injected regression, as ``baseline``).
    """

    config: LoopConfig
    rounds: list[RoundRecord]
    baseline: dict[str, float]
    cost_ref_usd: float
    reference_model: str
    versions: dict[str, str]
    out: str
    final_version: str | None = None
    final_test: dict[str, float] | None = None

    def summary(self) -> dict[str, Any]:
        """The run's headline figures (targets of issue #16)."""
        cov = [bool(c) for r in self.rounds
               if (c := r.candidate.get("ope", {}).get("quality", {}).get("covered")) is not None]
        cov_live = [bool(c) for r in self.rounds if (c := r.ope_live.get("quality", {}).get("covered")) is not None]
        final = self.final_test
        out: dict[str, Any] = {
            "rounds": len(self.rounds),
            "requests": sum(r.requests for r in self.rounds),
            "failed_requests": sum(r.failed for r in self.rounds),
            "promotions": sum(r.promoted is not None for r in self.rounds),
            "refusals": sum(r.promoted is None and bool(r.gate) for r in self.rounds),
            "bad_candidates_promoted": sum(r.promoted is not None and r.candidate.get("bad", False)
                                           for r in self.rounds),
            "bad_candidates": sum(bool(r.candidate.get("bad", False)) for r in self.rounds),
            "candidate_quality_coverage": float(np.mean(cov)) if cov else None,
            "candidate_quality_covered": f"{sum(cov)}/{len(cov)}",
            "live_quality_coverage": float(np.mean(cov_live)) if cov_live else None,
            "live_quality_covered": f"{sum(cov_live)}/{len(cov_live)}",
            "final_live_version": self.final_version,
            "final_test": final,
            "baseline_test": self.baseline,
        }
        if final is not None and self.baseline:
            out["quality_gap_points"] = 100.0 * (final["quality"] - self.baseline["quality"])
            out["cost_ratio"] = final["cost_usd"] / self.baseline["cost_usd"] if self.baseline["cost_usd"] > 0 else None
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "config": self.config.to_dict(),
            "summary": self.summary(),
            "baseline_test": self.baseline,
            "cost_ref_usd": self.cost_ref_usd,
            "reference_model": self.reference_model,
            "versions": self.versions,
            "rounds": [r.to_dict() for r in self.rounds],
            "out": self.out,
        }


# --- pieces ----------------------------------------------------------------------------------------
def _lgbm(world: LoopWorld, cfg: LoopConfig) -> RoutingPolicy:
    from router_rl.policies.lgbm import LGBMPolicy

    # prior_shrinkage fixed at 0: its automatic choice (lgbm.choose_shrinkage) raises StopIteration when the
    # criterion is NaN, which a pseudo-matrix from a small log can produce (reported; not this package)
    return LGBMPolicy(world.models, config={"num_boost_round": cfg.learner_rounds, "num_threads": 1,
                                            "prior_shrinkage": 0.0},
                      decision={"lam": cfg.lam})


def offline_baseline(world: LoopWorld, cfg: LoopConfig, X_traffic: np.ndarray) -> RoutingPolicy:
    """The LightGBM router fitted offline on the full-information matrix of the traffic tasks."""
    pol = _lgbm(world, cfg)
    pol.fit(X_traffic, world.matrix.take(world.traffic_rows), seed=cfg.seed)
    pol.attach_encoder(world.encoder)
    return pol


def held_out_comparison(
    world: LoopWorld, cfg: LoopConfig, registry: Any, X_traffic: np.ndarray, X_test: np.ndarray, cref: float,
    baseline: RoutingPolicy | None = None,
) -> tuple[str, dict[str, float], dict[str, float]]:
    """``(final live version, its held-out truth, the offline LightGBM's)``, both on the matrix as recorded."""
    live = str(registry.live)
    base = baseline if baseline is not None else offline_baseline(world, cfg, X_traffic)
    return (live, _test_truth(world, registry.load(live), X_test, 0, cfg.lam, cref),
            _test_truth(world, base, X_test, 0, cfg.lam, cref))


def rescore(out: str | Path) -> dict[str, Any]:
    """:func:`held_out_comparison` of a finished run folder (its ``config.json`` and ``registry/``)."""
    from router_rl.loop.refit import HeldOutScorer
    from router_rl.registry import PolicyRegistry

    sc = HeldOutScorer(out)
    registry = PolicyRegistry(sc.root / "registry")
    live = str(registry.live)
    final, base = sc.truth(registry.load(live)), sc.reference
    out_d: dict[str, Any] = {"final_live_version": live, "final_test": final, "baseline_test": base,
                             "quality_gap_points": 100.0 * (final["quality"] - base["quality"]),
                             "cost_ratio": final["cost_usd"] / base["cost_usd"] if base["cost_usd"] > 0 else None}
    return out_d


def reprice(table: pl.DataFrame, world: LoopWorld, row_of: dict[str, int]) -> pl.DataFrame:
    """``cost_usd`` of answered rows := the matrix's cost of (task, outcome model) (see the module docstring)."""
    idx = {m: j for j, m in enumerate(world.models)}
    rows = [row_of[r] for r in table["request_id"].to_list()]
    outm = table["outcome_model"].to_list()
    cost = [float(world.matrix.cost[i, idx[m]]) if m is not None else None for i, m in zip(rows, outm, strict=True)]
    return table.with_columns(pl.Series("cost_usd", cost, dtype=pl.Float64))


def _estimate(est: Any) -> dict[str, Any]:
    return {"value": float(est.value), "lower": float(est.lower), "upper": float(est.upper)}


def _covered(e: dict[str, Any], truth: float) -> dict[str, Any]:
    return {**e, "truth": truth, "covered": bool(e["lower"] <= truth <= e["upper"])}


def bad_candidate(kind: str, world: LoopWorld, data: LoggedData, cfg: LoopConfig, seed: int) -> RoutingPolicy:
    """A deliberately worse candidate: ``random``, ``cheapest`` (always the cheapest model) or
    ``corrupted`` (the off-policy LightGBM fitted on inverted quality labels)."""
    import dataclasses

    from router_rl.policies.baselines import RandomPolicy, SingleModelPolicy
    from router_rl.policies.offpolicy import OffPolicyConfig, fit_from_log

    if kind == "random":
        pol: RoutingPolicy = RandomPolicy(world.models)
    elif kind == "cheapest":
        cost = world.matrix.cost[world.traffic_rows].mean(axis=0)
        pol = SingleModelPolicy(world.models, model=world.models[int(np.argmin(cost))])
    else:
        q = np.asarray(data.quality, dtype=np.float64)
        bad = dataclasses.replace(data, quality=np.where(np.isfinite(q), 1.0 - q, np.nan))
        pol = fit_from_log(_lgbm(world, cfg), bad, OffPolicyConfig(clip=cfg.clip), seed=seed,  # type: ignore[arg-type]
                           encoder=world.encoder, catalog=world.catalog)
        return pol
    pol.attach_encoder(world.encoder)
    return pol


def gate_record(verdict: Any) -> dict[str, Any]:
    """The round record's view of a :class:`router_rl.registry.gate.GateVerdict`."""
    checks = {c.name: {"passed": c.passed, "value": c.value, "op": c.op, "threshold": c.threshold,
                       "detail": c.detail} for c in verdict.checks}
    failed = [c.name for c in verdict.checks if c.passed is False]
    return {"passed": bool(verdict.passed), "failed": failed, "checks": checks,
            "estimator": verdict.config.estimator, "warnings": list(verdict.warnings)}


def _value_dict(truth: Any, pi: np.ndarray, lam: float, cref: float) -> dict[str, float]:
    v = truth.value(pi)
    v = {k: float(x) for k, x in v.items() if k in ("quality", "cost_usd", "local_share")}
    v["utility"] = utility(v, lam, cref)
    return v


def _on_log(policy: RoutingPolicy, data: LoggedData, world: LoopWorld) -> np.ndarray:
    """``(n, k)`` distribution of ``policy`` on the log's features, in the world's model order."""
    pi = np.asarray(policy.action_distribution(np.asarray(data.X)), dtype=np.float64)
    return pi[:, [policy.models.index(m) for m in world.models]]


def _test_truth(world: LoopWorld, policy: RoutingPolicy, X_test: np.ndarray, round_: int, lam: float,
                cref: float) -> dict[str, float]:
    t = round_truth(world, np.asarray([f"test-{i}" for i in range(world.test_rows.size)], dtype=object),
                    world.test_rows, round_)
    pi = np.asarray(policy.action_distribution(X_test), dtype=np.float64)
    cols = [policy.models.index(m) for m in world.models]
    return _value_dict(t, pi[:, cols], lam, cref)


async def _traffic(servers: LoopServers, world: LoopWorld, cfg: LoopConfig, round_: int,
                   rows: np.ndarray, ids: list[str], oracle: Any, swap_to: str | None,
                   swap_log: dict[str, Any]) -> list[Answer]:
    """The round's requests; ``swap_to`` goes live through ``POST /admin/policy`` at request ``swap_at_request``."""
    import httpx

    from router_rl.loop.driver import drive

    tasks = world.task_rows_frame(rows)
    oracle.set_round(round_)

    async def swap() -> None:
        t = time.perf_counter()
        async with httpx.AsyncClient(timeout=120, headers={"authorization": f"Bearer {servers.token}"}) as http:
            r = await http.post(servers.router_url + "/admin/policy",
                                json={"version": swap_to, "reason": f"loop round {round_ - 1}: gate passed",
                                      "actor": "loop"})
        if r.status_code != 200:
            raise RuntimeError(f"hot swap to {swap_to} refused: {r.status_code} {r.text[:300]}")
        swap_log.update({"version": swap_to, "at_request": cfg.swap_at_request, "seconds": time.perf_counter() - t})

    if swap_to is not None and cfg.swap_at_request == 0:
        await swap()

    async def progress(i: int) -> None:
        if swap_to is not None and i == cfg.swap_at_request and cfg.swap_at_request > 0:
            asyncio.get_running_loop().create_task(swap())  # in flight while the traffic goes on

    answers = await drive(lambda: servers.router_url, servers.token, tasks, rows.tolist(), ids,
                          concurrency=cfg.concurrency, timeout_s=cfg.request_timeout_s, on_answer=oracle.submit,
                          on_progress=progress)
    for _ in range(600):  # a swap started late in a short round: wait for it
        if swap_to is None or swap_log:
            break
        await asyncio.sleep(0.1)
    return answers


def _inject_regression(servers: LoopServers, world: LoopWorld, cfg: LoopConfig, round_: int,
                       prev_served: dict[str, int]) -> dict[str, Any]:
    import httpx

    model = cfg.regression_model
    if model is None:
        model = max(prev_served, key=lambda m: prev_served[m]) if prev_served else world.models[0]
    if model not in world.models:
        raise ValueError(f"regression_model: {model!r} is not one of {list(world.models)}")
    srv = servers.backend_of(model)
    r = httpx.put(srv.base_url + "/admin/quality", json={"model": model, "factor": cfg.regression_factor}, timeout=10)
    if r.status_code != 200:
        raise RuntimeError(f"regression injection refused by the replay backend: {r.status_code} {r.text}")
    world.factors.append((round_, model, cfg.regression_factor))
    return {"model": model, "factor": cfg.regression_factor}


def _registry_version(policy_version: str | None) -> str | None:
    """``v0003`` of a decision's ``policy_version`` ``v0003/lgbm@...`` (None: not from the registry)."""
    if not policy_version or "/" not in policy_version:
        return None
    return policy_version.split("/", 1)[0]


def rules_artifact(world: LoopWorld, directory: Path) -> Path:
    """The rule router (the ``balanced`` tiers) as a ``rules`` policy artifact: the loop's first live version."""
    from router_rl.loop.servers import rule_tiers
    from router_rl.policies.baselines import RuleRouter

    t = rule_tiers(world)
    pol = RuleRouter(world.models, small_model=t["simple"], large_model=t["complex"], cloud_model=t["very_complex"])
    pol.attach_encoder(world.encoder)
    pol.save(directory)
    return directory


# --- the loop ----------------------------------------------------------------------------------------
def run_loop(cfg: LoopConfig, out: str | Path, *, progress: Any = None) -> LoopResult:
    """Run the closed loop (module docstring) and return its record; everything is written under ``out``.

    Args:
        cfg: Settings.
        out: Run folder (created; decision log, feedback, registry, router configs, reports).
        progress: Optional ``callable(str)`` receiving one line per phase.

    Raises:
        router_rl.loop.world.LoopWorldError: the trace file cannot drive a loop.
    """
    from router_rl.logs.data import LoggedData
    from router_rl.logs.join import join_logs
    from router_rl.loop.oracle_feedback import OracleFeedback
    from router_rl.loop.servers import LoopServers
    from router_rl.loop.world import load_world
    from router_rl.policies.offpolicy import OffPolicyConfig, fit_from_log
    from router_rl.registry import PolicyRegistry
    from router_rl.registry.gate import evaluate_gate

    say = progress or (lambda s: log.info(s))
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    world = load_world(cfg.traces, seed=cfg.seed, fleet_tasks=cfg.fleet_tasks, hash_buckets=cfg.hash_buckets)
    rng = np.random.default_rng(cfg.seed)
    tr = world.traffic_rows
    q_mean = world.matrix.quality[tr].mean(axis=0)
    ref = int(np.argmax(q_mean))
    cref = float(world.matrix.cost[tr, ref].mean())
    X_traffic = world.features(tr)
    X_test = world.features(world.test_rows)
    say(f"world {world.source}: {tr.size} traffic tasks, {world.test_rows.size} held out, models {list(world.models)}")
    t0 = time.perf_counter()
    baseline_pol = offline_baseline(world, cfg, X_traffic)
    say(f"offline full-information LightGBM fitted ({time.perf_counter() - t0:.1f}s)")

    registry = PolicyRegistry.create(root / "registry")
    start = registry.register(rules_artifact(world, root / "candidates" / "rules"), source="loop: rule router")
    registry.set_live(start, reason="loop start: the rule router", actor="loop")
    records: list[RoundRecord] = []
    row_of: dict[str, int] = {}
    round_ids: dict[int, list[str]] = {}
    prev_served: dict[str, int] = {}
    pending_swap: str | None = None
    seen_rollbacks = 0
    with LoopServers(world, root, epsilon=cfg.epsilon, seed=cfg.seed, time_scale=cfg.time_scale,
                     registry=registry.root, rollback=cfg.rollback_settings()) as servers:
        for r in range(1, cfg.rounds + 1):
            live_before = str(registry.live)
            rec = RoundRecord(round=r, live_version=pending_swap or live_before)
            if cfg.inject_regression_round == r:
                rec.regression = _inject_regression(servers, world, cfg, r, prev_served)
                say(f"round {r}: regression injected: {rec.regression}")
            # 1. traffic + oracle feedback (+ the hot swap of last round's promotion, under load)
            t = time.perf_counter()
            rows = rng.choice(tr, size=cfg.requests_per_round, replace=True)
            ids = [f"s{cfg.seed}-r{r:02d}-{i:05d}" for i in range(cfg.requests_per_round)]
            row_of.update(zip(ids, rows.tolist(), strict=True))
            round_ids[r] = ids
            swap_log: dict[str, Any] = {}

            async def go(rows: np.ndarray = rows, ids: list[str] = ids, r: int = r,
                         swap_to: str | None = pending_swap, swap_log: dict[str, Any] = swap_log
                         ) -> tuple[list[Answer], Any]:
                async with OracleFeedback(world, lambda: servers.router_url, servers.token,
                                          delay_s=cfg.feedback_delay_s, batch_size=cfg.feedback_batch) as oracle:
                    answers = await _traffic(servers, world, cfg, r, rows, ids, oracle, swap_to, swap_log)
                return answers, oracle.stats

            answers, ostats = asyncio.run(go())
            pending_swap = None
            rec.seconds["traffic"] = time.perf_counter() - t
            if swap_log:
                rec.candidate["swap"] = swap_log
            rec.requests = len(answers)
            bad = [a for a in answers if not a.ok]
            rec.failed = len(bad)
            rec.failures = sorted({str(a.error) for a in bad})[:10]
            rec.oracle = asdict(ostats)
            vers: dict[str, int] = {}
            served: dict[str, int] = {}
            for a in answers:
                vers[str(a.policy_version)] = vers.get(str(a.policy_version), 0) + 1
                if a.served_model:
                    served[a.served_model] = served.get(a.served_model, 0) + 1
            rec.decided_by = vers
            prev_served = served
            # rollbacks the router made during the round, and after how many requests of it
            rbs = registry.records("rollback")[seen_rollbacks:]
            seen_rollbacks += len(rbs)
            rollbacks = []
            for rb in rbs:
                to, frm = rb.get("to"), rb.get("from")
                # the first request after the last one the rolled-back version decided (answers are in
                # send order, up to the driver's concurrency in flight: the first switch to ``to`` can be
                # a request sent before the round's swap and decided by the old version)
                on_from = [i for i, a in enumerate(answers) if _registry_version(a.policy_version) == frm]
                first = on_from[-1] + 1 if on_from and on_from[-1] + 1 < len(answers) else next(
                    (i for i, a in enumerate(answers) if _registry_version(a.policy_version) == to and i > 0
                     and _registry_version(answers[i - 1].policy_version) != to), None)
                rollbacks.append({"from": rb.get("from"), "to": to, "reason": rb.get("reason"),
                                  "actor": rb.get("actor"), "first_request_on_previous": first})
            rec.rollbacks = rollbacks
            say(f"round {r}: {rec.requests} requests ({rec.failed} failed) in {rec.seconds['traffic']:.1f}s, "
                f"versions {vers}, oracle sent {ostats.sent}" + (f", ROLLBACK {rollbacks}" if rollbacks else ""))
            time.sleep(0.5)  # the router's decision-log flush interval is 0.2 s

            # 2. join + re-price
            t = time.perf_counter()
            table, jrep = join_logs(root / "decisions", root / "feedback", catalog=world.catalog, drop_unusable=True)
            if jrep.fingerprint_mismatches or jrep.excluded_no_features:
                raise RuntimeError(f"round {r}: join excluded rows: {jrep.to_dict()}")
            rc = table.filter(pl.col("request_id").is_in(ids))["cost_usd"].mean()
            rec.router_cost_usd = float(rc) if isinstance(rc, int | float) else 0.0
            table = reprice(table, world, row_of)
            log_path = root / f"logged-r{r:02d}.parquet"
            table.write_parquet(log_path)
            cur = table.filter(pl.col("request_id").is_in(ids))
            window = list(range(max(1, r - cfg.train_window + 1) if cfg.train_window else 1, r + 1))
            win_ids = [i for w in window for i in round_ids[w]]
            train_tab = table.filter(pl.col("request_id").is_in(win_ids))
            data_cur = LoggedData.from_table(cur, catalog=world.catalog, models=world.models)
            data_train = LoggedData.from_table(train_tab, catalog=world.catalog, models=world.models)
            rec.seconds["join"] = time.perf_counter() - t
            lab = np.isfinite(data_cur.quality)
            loc = np.asarray([x == "local" for x in world.locations])
            out_a = data_cur.outcome_actions
            rec.live = {
                "quality": float(np.nanmean(data_cur.quality)),
                "cost_usd": float(np.nanmean(data_cur.cost_usd)),
                "local_share": float(loc[out_a[out_a >= 0]].mean()),
                "labeled": int(lab.sum()),
                "rows": int(data_cur.n),
            }
            ex = cur["explored"].mean()
            rec.explored_share = float(ex) if isinstance(ex, int | float) else 0.0

            # 3. truth of the served policy (before exploration) and of the served traffic on this round's requests
            truth = round_truth(world, data_cur.request_ids, np.asarray([row_of[i] for i in data_cur.request_ids]), r)
            allowed = allowed_mask(data_cur.logging_probs, cfg.epsilon)
            pi_live = base_distribution(data_cur.logging_probs, cfg.epsilon)
            rec.true_live = _value_dict(truth, pi_live, cfg.lam, cref)
            rec.true_served = _value_dict(truth, data_cur.logging_probs, cfg.lam, cref)

            # 4. candidate
            t = time.perf_counter()
            is_bad = cfg.bad_candidate_round == r
            if is_bad:
                cand = bad_candidate(cfg.bad_candidate_kind, world, data_train, cfg, seed=cfg.seed * 1000 + r)
                kind: str = cfg.bad_candidate_kind
            else:
                cand = fit_from_log(_lgbm(world, cfg), data_train,  # type: ignore[arg-type]
                                    OffPolicyConfig(clip=cfg.clip),
                                    seed=cfg.seed * 1000 + r, encoder=world.encoder, catalog=world.catalog)
                kind = "lgbm-offpolicy"
            cand_dir = root / "candidates" / f"r{r:02d}"
            cand.save(cand_dir)
            cand_version = registry.register(cand_dir, source=f"loop round {r}: {kind}")
            rec.seconds["train"] = time.perf_counter() - t
            pi_cand_raw = np.asarray(cand.action_distribution(np.asarray(data_cur.X)), dtype=np.float64)
            pi_cand_raw = pi_cand_raw[:, [cand.models.index(m) for m in world.models]]
            pi_cand, empty = served_by_router(pi_cand_raw, allowed)

            # 5. the promotion gate (registry.gate.evaluate_gate) on this round's log, candidate vs live
            t = time.perf_counter()
            live_now = str(registry.live)
            live_pol = registry.load(live_now)
            cand.metadata["registry_version"] = cand_version
            verdict = evaluate_gate(cand, live_pol, data_cur, cfg.gate_config(cref, cfg.seed * 1000 + r),
                                    log_path=str(log_path))
            (root / f"gate-r{r:02d}.json").write_text(json.dumps(verdict.to_dict(), indent=2, default=str))
            rec.seconds["ope"] = time.perf_counter() - t
            rec.gate = gate_record(verdict)
            e = verdict.config.estimator
            pi_live_target = _on_log(live_pol, data_cur, world)
            true_live_target = _value_dict(truth, pi_live_target, cfg.lam, cref)
            true_cand = _value_dict(truth, pi_cand_raw, cfg.lam, cref)
            true_cand_served = _value_dict(truth, pi_cand, cfg.lam, cref)
            rep = verdict.report
            if rep is not None:
                ev = rep.evaluation
                # evaluate_gate names its OPE targets "candidate:0" and "incumbent" (registry/gate.py)
                cres, lres = ev.policies["candidate:0"], ev.policies["incumbent"]
                rec.ope_live = {m: _covered(_estimate(lres.metrics[m].estimates[e]), true_live_target[m])
                                for m in ("quality", "cost_usd", "utility")}
                cand_ope = {m: _covered(_estimate(cres.metrics[m].estimates[e]), true_cand[m])
                            for m in ("quality", "cost_usd", "utility")}
                udiff = cres.metrics["utility"].difference
                assert udiff is not None
                cand_ope["utility_diff"] = _covered(_estimate(udiff[e]),
                                                    true_cand["utility"] - true_live_target["utility"])
            else:
                cand_ope = {}
            true_diff = true_cand["utility"] - true_live_target["utility"]
            rec.candidate.update({"kind": kind, "bad": is_bad, "version": cand_version,
                                  "policy_version": cand.version, "dir": str(cand_dir), "true": true_cand,
                                  "true_served": true_cand_served, "ope": cand_ope,
                                  "rows_without_allowed_mask_mass": empty, "truly_better": bool(true_diff > 0),
                                  "incumbent": live_now, "true_incumbent": true_live_target})
            registry.record("promotion" if rec.gate["passed"] else "refusal", {
                "candidate": cand_version, "incumbent": live_now, "log": str(log_path), "round": r,
                "verdict": verdict.to_dict(), "gate": "router_rl.registry.gate.evaluate_gate",
            })

            # 6. promote: the swap happens under the next round's traffic (or now, after the last round)
            if rec.gate["passed"]:
                rec.promoted = cand_version
                if r < cfg.rounds:
                    pending_swap = cand_version
                else:
                    servers.admin("POST", "/admin/policy", {"version": cand_version, "actor": "loop",
                                                            "reason": f"loop round {r}: gate passed"})
                say(f"round {r}: PROMOTED {cand_version} ({kind}): utility gain lower bound "
                    f"{rec.gate['checks'].get('utility_gain_lower', {}).get('value') or float('nan'):+.4f}")
            else:
                say(f"round {r}: REFUSED {cand_version} ({kind}): failed {rec.gate['failed']} (utility gain lower "
                    f"bound {rec.gate['checks'].get('utility_gain_lower', {}).get('value') or float('nan'):+.4f})")
            after = pending_swap or str(registry.live)
            rec.candidate["live_after"] = after
            rec.test_live = _test_truth(world, registry.load(after), X_test, r, cfg.lam, cref)
            records.append(rec)
            with (root / "rounds.jsonl").open("a") as fh:
                fh.write(json.dumps(rec.to_dict()) + "\n")
        rec_state = servers.admin("GET", "/admin/state")
        (root / "router-state.json").write_text(json.dumps(rec_state, indent=2, default=str))
    final_version, final_test, baseline = held_out_comparison(world, cfg, registry, X_traffic, X_test, cref,
                                                              baseline=baseline_pol)
    versions = {v.version: str(registry.path(v.version)) for v in registry.versions()}
    return LoopResult(config=cfg, rounds=records, baseline=baseline, cost_ref_usd=cref,
                      reference_model=world.models[ref], versions=versions, out=str(root),
                      final_version=final_version, final_test=final_test)

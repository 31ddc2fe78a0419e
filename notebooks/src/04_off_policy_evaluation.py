# Source of notebooks/04_off_policy_evaluation.ipynb (percent format; build with notebooks/build_notebooks.py).

# %% [markdown]
# # Off-policy evaluation on a decision log
#
# **What it shows.** Estimating how a *candidate* router would do from the decision log of the
# router in production, before deploying it: the log in the live router's own schema, joined with
# its feedback, then DM, IPS, SNIPS, DR and switch-DR (`router_rl.ope`) with bootstrap intervals
# and importance-weight diagnostics, checked against the truth, and the situations in which the
# estimators disagree (little exploration, a biased reward model, wrong propensities).
#
# The log is **simulated with known truth** (`router_rl.logs.simulate.simulate_log`): the router
# is played on the simulated fleet, where every model's answer to every task is known, so the
# candidate's true value on the logged requests is exact. A real router log goes through the same
# `join_logs` -> `LoggedData` path; only the truth is missing there.
#
# **How long it runs.** About 25 s on 2 cores (3,000 simulated tasks, 4,000 logged requests,
# 500 bootstrap resamples; up to 3x longer on a busy machine).
#
# Public API used: `router_rl.logs` (`simulate_log`, `join_logs`, `LoggedData`), `router_rl.ope`
# (estimators, `LoggedFeedback`, `estimate_all`, `ope.synthetic`), `router_rl.policies.exploration`.
# Reference: `docs/evaluation.md`, `docs/traces.md`.

# %%
# %matplotlib inline
import copy

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from router_rl.eval import default_features
from router_rl.logs.data import LoggedData
from router_rl.logs.join import join_logs
from router_rl.logs.simulate import LogSimulationConfig, simulate_log
from router_rl.ope import LoggedFeedback, SwitchDR, default_estimators, estimate_all
from router_rl.ope.synthetic import make_bandit
from router_rl.policies.base import make_policy
from router_rl.policies.exploration import ExplorationConfig, explore
from router_rl.traces import simulate_fleet

SEED = 0
pl.Config.set_tbl_width_chars(160)
plt.rcParams.update({"figure.dpi": 70, "savefig.dpi": 70})

# %% [markdown]
# ## Production router, candidate router
# * **Production (logging) policy**: LightGBM at λ = 0 (highest predicted quality), with
#   ε-exploration: with probability ε = 0.3 a uniformly random model. The router's `explore`
#   computes the exact distribution it samples from, so the logged propensity is the true sampling
#   probability.
# * **Candidate (target) policy**: the same LightGBM with λ calibrated on validation for 95% of the
#   reference quality: much cheaper, a little worse. What are its quality and cost?

# %%
traces = simulate_fleet(3000, seed=SEED)
matrix = traces.matrix()
train, val, test = (matrix.split(s) for s in ("train", "val", "test"))
features = default_features(train)
production = make_policy("lgbm", train.models, config={"num_boost_round": 60, "cv_folds": 2})
production.attach_encoder(features.shared_encoder())
production.fit(features(production, train), train, seed=SEED)
candidate = copy.deepcopy(production)
candidate.calibrate(features(candidate, val), val, "quality=0.95")
print(f"candidate λ = {candidate.decision.lam:.3f} (production: {production.decision.lam})")

# %% [markdown]
# ## The log: decisions, feedback, join
# 4,000 requests drawn (with replacement) from the test tasks; 2% of calls fail and are answered by
# the fallback model; 90% of the answered requests get a quality label (feedback arrives later and
# not always). `write` stores the decision log and the feedback as the live router does (part
# files); `join_logs` joins them into one labeled row per decision and counts everything it sees.

# %%
EPSILON = 0.3
sim_config = LogSimulationConfig(feedback_rate=0.9, fallback_rate=0.02)
sim = simulate_log(traces, production, n=4000, exploration=ExplorationConfig(epsilon=EPSILON), split="test",
                   seed=SEED, config=sim_config)
sim.write("router-log")
table, report = join_logs("router-log/decisions", "router-log/feedback", catalog=sim.catalog)
rep = report.to_dict()
print({k: rep[k] for k in ("decisions", "rows", "labeled", "unlabeled", "fallbacks", "feedback_rows",
                           "orphan_feedback")})
sim.decisions.select("request_id", "agent_type", "chosen_model", "propensity", "explored", "served_model",
                     "fallback_used", "cost_usd").head(5)

# %% [markdown]
# The estimators use the labeled rows (`LoggedData.labeled()`): here feedback is missing at random,
# so dropping unlabeled rows does not bias them; in production, check that the labels that arrive
# are not a selected subset (e.g. only complaints).

# %%
logged = LoggedData.from_table(table, catalog=sim.catalog).labeled()
X = logged.X  # the features the router logged, encoded by the production encoder
target = candidate.action_distribution(X)
q_hat = np.clip(production.predict_quality(X), 0.0, 1.0)  # the reward model DM and DR use
c_hat = production.predict_cost(X)
truth_rows = sim.truth.align(logged.request_ids)
truth = truth_rows.value(target)
print(logged.summary()["n_labeled"], "labeled decisions;",
      f"true value of the candidate on them: quality {truth['quality']:.4f}, cost {truth['cost_usd']:.5f} USD")
print(f"production on the same rows: quality {truth_rows.value(logged.logging_probs)['quality']:.4f}")

# %% [markdown]
# ## The estimators, with intervals and diagnostics
# `estimate_all` runs every estimator on one set of 500 bootstrap resamples (percentile intervals,
# 95%). Quality is the reward here; the same estimators applied to the logged cost estimate the
# candidate's cost. The weight diagnostics are shared: Kish effective sample size (ESS) and the
# largest importance weight π(a|x) / p(a|x).

# %%
def estimate(name, rewards, reward_hat, actions, propensities, target=target, value=None):
    data = LoggedFeedback.from_arrays(rewards=rewards, actions=actions, propensities=propensities,
                                      target=target, reward_hat=reward_hat)
    est = estimate_all(default_estimators(), data, n_bootstrap=500, rng=SEED)
    v = truth[name] if value is None else value
    return [{"reward": name, "estimator": k, "value": e.value, "lower": e.lower, "upper": e.upper,
             "covers_truth": e.lower <= v <= e.upper} for k, e in est.items()], est


q_rows, est_q = estimate("quality", logged.quality, q_hat, logged.actions, logged.propensities)
c_rows, _ = estimate("cost_usd", logged.cost_usd, c_hat, logged.actions, logged.propensities)
d = est_q["ips"].diagnostics
print(f"weights: ESS {d.ess:.0f} of {d.n} ({d.ess_ratio:.1%}), max weight {d.max_weight:.1f}, "
      f"mean weight {d.mean_weight:.3f}")
pl.DataFrame(q_rows + c_rows).with_columns(pl.col("value", "lower", "upper").round(5))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, rows, key in ((axes[0], q_rows, "quality"), (axes[1], c_rows, "cost_usd")):
    v = np.array([r["value"] for r in rows])
    lo, hi = np.array([r["lower"] for r in rows]), np.array([r["upper"] for r in rows])
    ax.errorbar(range(len(rows)), v, yerr=[v - lo, hi - v], fmt="o", capsize=4)
    ax.axhline(truth[key], color="black", ls="--", lw=1, label="truth")
    ax.set_xticks(range(len(rows)), [r["estimator"] for r in rows])
    ax.set_title(f"candidate {key}: estimate and 95% interval")
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Reading it: the candidate's action is logged only where production chose it or explored onto it,
# so a deterministic candidate that often disagrees with production leaves a small effective
# sample (the ESS above) and wide IPS intervals. DM's interval is the narrowest and can still miss
# the truth: it resamples only the reward model's predictions, and the model's bias is invisible to
# the bootstrap. Switch-DR drops the correction of rows whose weight exceeds τ = 10 (here every
# explored row, weight 7 / ε ≈ 23), so it sits close to DM.
#
# ## When do they disagree?
# Three things that happen with real logs, each changed alone (`SimulatedLog.logged()` gives the
# same `LoggedData` as the join, without the files):
# 1. **Little exploration** (ε from 0.3 down to 0.01): where the candidate disagrees with
#    production its action is logged only when production explores onto it, with weight 7 / ε
#    (23 at ε = 0.3, 700 at ε = 0.01). As ε falls the ESS drops, the intervals widen and IPS swings.
#    The **mean weight** (exactly 1 in expectation with correct propensities) moves away from 1:
#    below it when most of the candidate's decisions never appear in the log, above it when a few
#    rows of weight 700 dominate. SNIPS and DR lean on the rows where the two routers agree and on
#    the reward model. DM does not move (it never looks at the logged actions).
# 2. **A biased reward model** (q̂ shifted by +0.1): DM is off by about the shift; DR and
#    switch-DR correct part of it with the logged rewards; IPS / SNIPS never used it.
# 3. **Wrong propensities** (the log records the propensities of an older configuration,
#    ε = 0.1, while the router explored with ε = 0.3): explored rows get 3x their weight, IPS is
#    biased upwards, and the mean weight moves above 1, the diagnostic that catches it.

# %%
def scenario(case, sim_log, reward_hat=None, propensities=None):
    """Errors and interval widths of every estimator on one simulated log (labeled rows)."""
    lg = sim_log.logged().labeled()
    tgt = candidate.action_distribution(lg.X)
    qh = np.clip(production.predict_quality(lg.X), 0, 1) if reward_hat is None else reward_hat(lg.X)
    p = lg.propensities if propensities is None else propensities(lg)
    value = sim_log.truth.align(lg.request_ids).value(tgt)["quality"]
    rows, est = estimate("quality", lg.quality, qh, lg.actions, p, target=tgt, value=value)
    dg = est["ips"].diagnostics
    return [{"case": case, "ess": round(dg.ess), "mean_weight": round(dg.mean_weight, 3),
             "error": r["value"] - value, "width": r["upper"] - r["lower"], **r} for r in rows]


logs_by_eps = {eps: simulate_log(traces, production, n=4000, exploration=ExplorationConfig(epsilon=eps),
                                 split="test", seed=SEED, config=sim_config)
               for eps in (0.3, 0.1, 0.03, 0.01)}
scen = [row for eps, s in logs_by_eps.items() for row in scenario(f"epsilon={eps}", s)]
scen += scenario("q_hat + 0.1", logs_by_eps[EPSILON],
                 reward_hat=lambda X_: np.clip(production.predict_quality(X_) + 0.1, 0, 1))
scen += scenario("wrong propensities", logs_by_eps[EPSILON], propensities=lambda lg: explore(
    production.action_distribution(lg.X), ExplorationConfig(epsilon=0.1))[np.arange(lg.n), lg.actions])
scen_df = pl.DataFrame(scen)
scen_df.pivot(on="estimator", index=["case", "ess", "mean_weight"], values="error").with_columns(
    pl.selectors.float().round(4))

# %% [markdown]
# The table is each estimator's error (estimate − truth) on quality. The interval widths:

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
eps_rows = scen_df.filter(pl.col("case").str.starts_with("epsilon"))
for name in ("dm", "ips", "snips", "dr", "switch_dr"):
    sub = eps_rows.filter(pl.col("estimator") == name)
    ax.plot([float(c.split("=")[1]) for c in sub["case"]], sub["width"], "o-", label=name)
ax.set(xscale="log", xlabel="exploration ε of the production router", ylabel="95% interval width (quality)",
       title="interval width vs exploration")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
scen_df.pivot(on="estimator", index="case", values="width").with_columns(pl.selectors.float().round(4))

# %% [markdown]
# Switch-DR keeps the DR correction only where the weight is at most τ (10 by default) and falls
# back on the reward model elsewhere: with little exploration (ε = 0.03 below) it trades some bias
# for a much narrower interval; τ = ∞ is DR. Its τ is a choice to report with the estimate.

# %%
lg = logs_by_eps[0.03].logged().labeled()
tgt = candidate.action_distribution(lg.X)
value = logs_by_eps[0.03].truth.align(lg.request_ids).value(tgt)["quality"]
data = LoggedFeedback.from_arrays(rewards=lg.quality, actions=lg.actions, propensities=lg.propensities, target=tgt,
                                  reward_hat=np.clip(production.predict_quality(lg.X), 0, 1))
est = estimate_all([SwitchDR(tau=t) for t in (1.0, 10.0, 100.0, float("inf"))], data, n_bootstrap=500, rng=SEED)
pl.DataFrame([{"estimator": k, "error": round(e.value - value, 4), "width": round(e.upper - e.lower, 4)}
              for k, e in est.items()])

# %% [markdown]
# ## Do the intervals cover? A known-truth check
# `router_rl.ope.synthetic.make_bandit` is a fixed bandit problem with a known target value; drawing
# 100 logs from it and counting how often each 95% interval contains the truth checks the
# intervals themselves (about 95 expected for the unbiased estimators).

# %%
bandit = make_bandit(2000, 5, SEED)
cover = {k: 0 for k in ("dm", "ips", "snips", "dr", "switch_dr")}
gen = np.random.default_rng(SEED)
for _ in range(100):
    logs = bandit.sample_logs(gen)
    data = LoggedFeedback.from_arrays(rewards=logs.rewards, actions=logs.actions, propensities=logs.propensities,
                                      target=logs.target, reward_hat=logs.reward_hat)
    for k, e in estimate_all(default_estimators(), data, n_bootstrap=200, rng=gen).items():
        cover[k] += e.lower <= bandit.true_value <= e.upper
print(f"true value {bandit.true_value:.4f}; intervals containing it, of 100 logs:", cover)

# %% [markdown]
# ## On a real router's log
# Notebook `05_closed_loop` runs the same path on the decision log of a **real** router on
# 127.0.0.1 (replay backends, exploration, feedback through `POST /v1/feedback`, `join_logs`):
# every round it estimates the live version's quality from its own log (DR, 95% interval) next to
# the true value known from the matrix, and judges each candidate with the OPE gate.

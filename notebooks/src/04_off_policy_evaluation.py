# Source of notebooks/04_off_policy_evaluation.ipynb (percent format; build with notebooks/build_notebooks.py).
# ruff: noqa: B018 (a cell's last expression is its displayed result)

# %% [markdown]
# # Off-policy evaluation on a decision log
#
# **What it shows.** Estimating how a *candidate* router would do from the log of the router in
# production, before deploying it: DM, IPS, SNIPS, DR and switch-DR (`router_rl.ope`) with
# bootstrap intervals and importance-weight diagnostics, checked against the truth, and the
# situations in which the estimators disagree (little exploration, a biased reward model, wrong
# propensities).
#
# The log here is **simulated with known truth**: on the simulated fleet every model's answer to
# every task is known, so the candidate's true value is exact. The production router's own
# decision log (the live router's `DECISION_LOG_SCHEMA`) and the learning loop that turns it into
# this notebook's arrays are not merged yet; this notebook will switch to it then.
#
# **How long it runs.** About 40 s on 2 cores (5,000 simulated tasks, 1,000 of them logged,
# 500 bootstrap resamples).
#
# Public API used: `router_rl.ope` (estimators, `LoggedFeedback`, `estimate_all`,
# `ope.synthetic`), `router_rl.policies.exploration.explore`, `router_rl.traces.simulate_fleet`.
# Reference: `docs/evaluation.md`.

# %%
# %matplotlib inline
import copy

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from router_rl.eval import default_features
from router_rl.ope import LoggedFeedback, Replay, SwitchDR, default_estimators, estimate_all
from router_rl.ope.synthetic import make_bandit
from router_rl.policies.base import make_policy
from router_rl.policies.exploration import ExplorationConfig, explore
from router_rl.traces import simulate_fleet

SEED = 0
pl.Config.set_tbl_width_chars(160)
plt.rcParams.update({"figure.dpi": 70, "savefig.dpi": 70})

# %% [markdown]
# ## Production router, candidate router, and the log
# * **Production (logging) policy**: LightGBM at λ = 0 (highest predicted quality), with
#   ε-exploration: with probability ε a uniformly random model. `explore` returns the exact
#   distribution sampled from, so the logged propensity is the true sampling probability.
# * **Candidate (target) policy**: the same LightGBM with λ calibrated on validation for 95% of the
#   reference quality: much cheaper, a little worse. What are its quality and cost?
# * **Log**: one logged decision per test task: the model sampled, its propensity, and the observed
#   quality and cost of that model's answer only (partial information, as in production).
# * **Truth**: exact replay of the candidate on the full outcome matrix of the same tasks.

# %%
traces = simulate_fleet(5000, seed=SEED)
matrix = traces.matrix()
train, val, test = (matrix.split(s) for s in ("train", "val", "test"))
features = default_features(train)
lgbm = make_policy("lgbm", train.models, config={"num_boost_round": 60, "cv_folds": 2})
lgbm.attach_encoder(features.shared_encoder())
lgbm.fit(features(lgbm, train), train, seed=SEED)
candidate = copy.deepcopy(lgbm)
candidate.calibrate(features(candidate, val), val, "quality=0.95")
X = features(lgbm, test)
target = candidate.action_distribution(X)
production = lgbm.action_distribution(X)
q_hat = np.clip(lgbm.predict_quality(X), 0.0, 1.0)  # the reward model DM and DR use
truth = {"quality": Replay().estimate(target=target, reward_matrix=test.quality),
         "cost_usd": Replay().estimate(target=target, reward_matrix=test.cost)}
prod_value = Replay().estimate(target=production, reward_matrix=test.quality)
print(f"{test.n_tasks} test tasks; candidate λ = {candidate.decision.lam:.3f}")
print(f"true quality: production {prod_value:.4f}, candidate {truth['quality']:.4f}")
print(f"true cost of the candidate: {truth['cost_usd']:.5f} USD per request")


def draw_log(epsilon, seed):
    """One logged decision per test task from the production policy with ε-exploration."""
    logging = explore(production, ExplorationConfig(epsilon=epsilon))
    rng = np.random.default_rng(seed)
    actions = (logging.cumsum(axis=1) < rng.random((len(logging), 1))).sum(axis=1).clip(max=logging.shape[1] - 1)
    rows = np.arange(len(actions))
    return actions, logging[rows, actions]


EPSILON = 0.3
actions, propensities = draw_log(EPSILON, SEED)
print("share of logged decisions where production explored:", round(float((actions != production.argmax(1)).mean()), 3))

# %% [markdown]
# ## The estimators, with intervals and diagnostics
# `estimate_all` runs every estimator on one set of 500 bootstrap resamples (percentile intervals,
# 95%). Quality is the reward here; the same estimators applied to the logged cost estimate the
# candidate's cost. The weight diagnostics are shared: Kish effective sample size (ESS) and the
# largest importance weight π(a|x) / p(a|x).

# %%
def estimate(reward_name, rewards, reward_hat, actions, propensities):
    data = LoggedFeedback.from_arrays(rewards=rewards, actions=actions, propensities=propensities,
                                      target=target, reward_hat=reward_hat)
    est = estimate_all(default_estimators(), data, n_bootstrap=500, rng=SEED)
    return [{"reward": reward_name, "estimator": k, "value": e.value, "lower": e.lower, "upper": e.upper,
             "covers_truth": e.lower <= truth[reward_name] <= e.upper} for k, e in est.items()], est


rows_idx = np.arange(test.n_tasks)
q_rows, est_q = estimate("quality", test.quality[rows_idx, actions], q_hat, actions, propensities)
c_hat = lgbm.predict_cost(X)
c_rows, _ = estimate("cost_usd", test.cost[rows_idx, actions], c_hat, actions, propensities)
d = est_q["ips"].diagnostics
print(f"weights: ESS {d.ess:.0f} of {d.n} ({d.ess_ratio:.1%}), max weight {d.max_weight:.1f}, "
      f"mean weight {d.mean_weight:.3f}")
table = pl.DataFrame(q_rows + c_rows).with_columns(pl.col("value", "lower", "upper").round(5))
table

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, rows, key in ((axes[0], q_rows, "quality"), (axes[1], c_rows, "cost_usd")):
    names = [r["estimator"] for r in rows]
    v = np.array([r["value"] for r in rows])
    lo, hi = np.array([r["lower"] for r in rows]), np.array([r["upper"] for r in rows])
    ax.errorbar(range(len(rows)), v, yerr=[v - lo, hi - v], fmt="o", capsize=4)
    ax.axhline(truth[key], color="black", ls="--", lw=1, label="truth (full replay)")
    ax.set_xticks(range(len(rows)), names)
    ax.set_title(f"candidate {key}: estimate and 95% interval")
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Reading it: the candidate's action is logged only where production chose it or explored onto it,
# so a deterministic candidate that often disagrees with production leaves a small effective
# sample (the ESS above) and wide IPS / DR intervals. DM's interval is the narrowest and can still
# miss the truth: it resamples only the reward model's predictions, and the model's bias is
# invisible to the bootstrap. Switch-DR drops the correction of rows whose weight exceeds τ = 10
# (here every explored row, weight 7 / ε ≈ 23), so it sits close to DM.
#
# ## When do they disagree?
# Three things that happen with real logs, each changed alone:
# 1. **Little exploration** (ε from 0.3 down to 0.01): where the candidate disagrees with
#    production its action is logged only when production explores onto it, with weight 7 / ε
#    (23 at ε = 0.3, 700 at ε = 0.01). As ε falls the ESS drops and IPS swings. At the smallest ε
#    no explored row may match at all: every weight is then 0 or about 1, the ESS looks healthy,
#    and only the **mean weight** (far below 1) says that most of the candidate's decisions were
#    never observed. IPS is then badly low; SNIPS and DR lean on the rows where the two routers agree
#    and on the reward model, which can happen to be right but is not guaranteed. DM does not move.
# 2. **A biased reward model** (q̂ shifted by +0.1): DM is off by about the shift; DR and
#    switch-DR correct it with the logged rewards; IPS / SNIPS never used it.
# 3. **Wrong propensities** (the log records 1/7 for every decision, as if production had routed
#    uniformly at random): IPS is biased; the *mean weight* moves far from 1, the diagnostic that
#    catches it (with correct propensities its expectation is exactly 1).

# %%
scen = []
for eps in (0.3, 0.1, 0.03, 0.01):
    a, p = draw_log(eps, SEED)
    rows, est = estimate("quality", test.quality[rows_idx, a], q_hat, a, p)
    dg = est["ips"].diagnostics
    scen += [{"case": f"epsilon={eps}", "ess": round(dg.ess), "mean_weight": round(dg.mean_weight, 3), **r}
             for r in rows]
a, p = draw_log(EPSILON, SEED)
rows, est = estimate("quality", test.quality[rows_idx, a], np.clip(q_hat + 0.1, 0, 1), a, p)
scen += [{"case": "q_hat + 0.1", "ess": round(est["ips"].diagnostics.ess),
          "mean_weight": round(est["ips"].diagnostics.mean_weight, 3), **r} for r in rows]
wrong_p = np.full(len(a), 1.0 / test.n_models)  # "uniform logging" assumed by mistake
rows, est = estimate("quality", test.quality[rows_idx, a], q_hat, a, wrong_p)
scen += [{"case": "wrong propensities", "ess": round(est["ips"].diagnostics.ess),
          "mean_weight": round(est["ips"].diagnostics.mean_weight, 3), **r} for r in rows]
scen_df = pl.DataFrame(scen).with_columns(width=pl.col("upper") - pl.col("lower"),
                                          error=pl.col("value") - truth["quality"])
errors = scen_df.pivot(on="estimator", index=["case", "ess", "mean_weight"], values="error")
errors.with_columns(pl.selectors.float().round(4))

# %% [markdown]
# The table is each estimator's error (estimate − truth) on quality. The interval widths:

# %%
widths = scen_df.pivot(on="estimator", index="case", values="width").with_columns(pl.selectors.float().round(4))
fig, ax = plt.subplots(figsize=(7, 3.6))
eps_rows = scen_df.filter(pl.col("case").str.starts_with("epsilon"))
for name in ("dm", "ips", "snips", "dr", "switch_dr"):
    sub = eps_rows.filter(pl.col("estimator") == name)
    ax.plot([float(c.split("=")[1]) for c in sub["case"]], sub["width"], "o-", label=name)
ax.set(xscale="log", xlabel="exploration ε of the production router", ylabel="95% interval width (quality)",
       title="less exploration, wider intervals")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
widths

# %% [markdown]
# Switch-DR keeps the DR correction only where the weight is at most τ (10 by default) and falls
# back on the reward model elsewhere: with little exploration (ε = 0.03 below) it trades some bias
# for a much narrower interval; τ = ∞ is DR. Its τ is a choice to report with the estimate.

# %%
a, p = draw_log(0.03, SEED)
data = LoggedFeedback.from_arrays(rewards=test.quality[rows_idx, a], actions=a, propensities=p, target=target,
                                  reward_hat=q_hat)
est = estimate_all([SwitchDR(tau=t) for t in (1.0, 10.0, 100.0, float("inf"))], data, n_bootstrap=500, rng=SEED)
pl.DataFrame([{"estimator": k, "error": round(e.value - truth["quality"], 4), "width": round(e.upper - e.lower, 4)}
              for k, e in est.items()])

# %% [markdown]
# ## Do the intervals cover? A known-truth check
# `router_rl.ope.synthetic.make_bandit` is a fixed bandit problem with a known target value; drawing
# 100 logs from it and counting how often each 95% interval contains the truth checks the
# intervals themselves (about 95 expected for the unbiased estimators; DM's reward model is noisy,
# so its narrow interval covers less).

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

# Source of notebooks/07_routerbench.ipynb (percent format; build with notebooks/build_notebooks.py).

# %% [markdown]
# # Real data: RouterBench
#
# **What it shows.** Import the RouterBench 0-shot subset (ARC-Challenge, MBPP, Winogrande x 11
# models, USD per call), train LightGBM and kNN per task, evaluate on each task's test split and
# plot the three cost-quality frontiers against the targets.
#
# **How long it runs.** About 25 s on 2 cores (up to 3x longer on a busy machine). **Needs the datasets folder**:
# `$ROUTER_RL_DATASETS`, or `../shared/datasets` next to the repository
# (`router_rl.core.paths.datasets_dir()`); the data is never copied into the repository.
#
# RouterBench needs `drop_invalid=True`: 14 sample ids appear twice with different prompts and
# carry all 154 NaN score cells; those tasks are dropped and the import report says so.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import polars as pl

from router_rl.core.paths import require_datasets_dir
from router_rl.eval import EvalConfig, default_features, evaluate_policies
from router_rl.eval.resolve import resolve_policy
from router_rl.policies.base import make_policy
from router_rl.traces.importers import DATASET_FOLDERS, import_traces

SEED = 0
plt.rcParams.update({"figure.dpi": 70, "savefig.dpi": 70})
pl.Config.set_tbl_width_chars(160)
path = require_datasets_dir(DATASET_FOLDERS["routerbench"])
traces = import_traces("routerbench", path, drop_invalid=True, seed=SEED)
print("dropped rows per reason:", traces.report.dropped_rows, "| removed tasks:", traces.report.dropped_tasks)
matrix = traces.matrix()
matrix.tasks.group_by("category", "split").len().sort("category", "split")

# %% [markdown]
# ## Per task: train, evaluate, frontier
# The targets are per task: cost share at 95% of the best single model's quality
# (MBPP <= 20%, ARC <= 5%, Winogrande <= 35%; TF-IDF logistic regression reaches 29%, 7.7%, 51%).
# `cost_share_at_95` is read on the **test** frontier (λ chosen with hindsight); the `calibrated`
# columns use the λ chosen on the validation split, applied unchanged to test.

# %%
results = {}
for task in ("mbpp", "arc-challenge", "winogrande"):
    sub = matrix.take((matrix.tasks["category"] == task).to_numpy())
    train, val, test = (sub.split(s) for s in ("train", "val", "test"))
    features = default_features(train)
    pols = {name: resolve_policy(name, train, features, seed=SEED) for name in ("knn", "cheapest", "single")}
    lgbm = make_policy("lgbm", train.models, config={"num_boost_round": 100, "cv_folds": 2})
    lgbm.attach_encoder(features.shared_encoder())
    pols["lgbm"] = lgbm.fit(features(lgbm, train), train, seed=SEED)
    config = EvalConfig(n_bootstrap=200, seed=SEED)
    results[task] = evaluate_policies(train, val, test, pols, config=config, features=features)
    print(f"{task}: train/val/test = {train.n_tasks}/{val.n_tasks}/{test.n_tasks}")


def pct(x):
    return None if x is None else round(100 * x, 1)


pl.DataFrame([
    {"task": task, "policy": name, "reference": res.reference_model,
     "quality_ratio_%": pct(pe.metrics.quality_ratio), "cost_share_%": pct(pe.metrics.cost_share),
     "cost_share_at_95_%": pct(pe.frontier_metrics.get("cost_share_at_quality")),
     "calibrated: test cost %": pct((pe.operating_point or {}).get("test_cost_share")),
     "calibrated: test quality %": pct((pe.operating_point or {}).get("test_quality_ratio")),
     "aiq": pe.frontier_metrics.get("aiq")}
    for task, res in results.items() for name, pe in res.policies.items()
])

# %% [markdown]
# Why the calibrated numbers differ so much from the frontier ones: RouterBench's validation
# carves are tiny (a few dozen tasks per category), so the λ picked on validation is noisy and
# the test quality often misses 95% (or the cost overshoots). Across 5 seeds
# (`experiments/benchmark.py`, README *Results*) ARC and Winogrande miss their targets even on
# the frontier; `experiments/target_feasibility.py` measures why (the routers rank requests
# within a model at about chance).

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
for ax, (task, res) in zip(axes, results.items(), strict=True):
    for i, (name, m) in enumerate(res.single_models.items()):
        ax.scatter(m.mean_cost, m.mean_quality, marker="s", color="grey", alpha=0.6,
                   label="single model" if i == 0 else None)
        if name == res.reference_model or m.mean_quality >= 0.9 * res.single_models[res.reference_model].mean_quality:
            ax.annotate(name, (m.mean_cost, m.mean_quality), xytext=(3, 3), textcoords="offset points", fontsize=6)
    oracle = res.oracle_frontier
    ax.plot([p.mean_cost for p in oracle], [p.mean_quality for p in oracle], "k--", label="oracle")
    for name, pe in res.policies.items():
        pts = sorted((p.mean_cost, p.mean_quality) for p in pe.frontier)
        ax.plot(*zip(*pts, strict=True), marker="o" if len(pts) > 1 else "*", ms=3 if len(pts) > 1 else 9, label=name)
    ax.axhline(0.95 * res.single_models[res.reference_model].mean_quality, color="red", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_title(f"{task} (reference {res.reference_model})")
    ax.set_xlabel("mean cost per request (USD, log)")
axes[0].set_ylabel("mean quality")
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()

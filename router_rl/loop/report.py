"""The loop's report: one row per round as Markdown + JSON, and a PNG plot (matplotlib).

Columns (:data:`ROUND_COLUMNS`): the live version, requests and failures, the true quality of
what was served (the deciding versions before exploration: a hot swap or a rollback mid-round
mixes two), the true quality of the live registry version at the gate (known from the matrix)
next to the gate's OPE estimate and interval, the realised live quality / cost / local share (labels, re-priced cost),
the candidate's true utility gain over the live version next to the gate's estimate and
interval, the gate's verdict (promoted version, or the failed checks), regressions and rollbacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router_rl.loop.rounds import LoopResult, RoundRecord

#: Columns of the per-round table (Markdown and ``rounds_table`` in the JSON).
ROUND_COLUMNS: tuple[str, ...] = (
    "round", "live_version", "requests", "failed",
    "true_served_quality", "true_live_quality", "ope_live_quality", "ope_live_lower", "ope_live_upper",
    "ope_live_covered",
    "live_quality", "live_cost_usd", "live_local_share",
    "candidate", "true_gain", "ope_gain", "ope_gain_lower", "ope_gain_upper", "candidate_quality_covered",
    "verdict", "regression", "rollbacks",
)


def round_row(r: RoundRecord) -> dict[str, Any]:
    """The table row of one round."""
    q = r.ope_live.get("quality", {})
    g = r.candidate.get("ope", {}).get("utility_diff", {})
    cq = r.candidate.get("ope", {}).get("quality", {})
    verdict = f"promoted {r.promoted}" if r.promoted else ("refused: " + ",".join(r.gate.get("failed", [])))
    return {
        "round": r.round,
        "live_version": r.live_version,
        "requests": r.requests,
        "failed": r.failed,
        "true_served_quality": r.true_live.get("quality"),
        "true_live_quality": q.get("truth"),
        "ope_live_quality": q.get("value"),
        "ope_live_lower": q.get("lower"),
        "ope_live_upper": q.get("upper"),
        "ope_live_covered": q.get("covered"),
        "live_quality": r.live.get("quality"),
        "live_cost_usd": r.live.get("cost_usd"),
        "live_local_share": r.live.get("local_share"),
        "candidate": r.candidate.get("kind"),
        "true_gain": g.get("truth"),
        "ope_gain": g.get("value"),
        "ope_gain_lower": g.get("lower"),
        "ope_gain_upper": g.get("upper"),
        "candidate_quality_covered": cq.get("covered"),
        "verdict": verdict,
        "regression": f"{r.regression['model']} x{r.regression['factor']}" if r.regression else "",
        "rollbacks": "; ".join(f"{b['from']}->{b['to']} after {b['first_request_on_previous']} req"
                               for b in r.rollbacks),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def markdown(result: LoopResult) -> str:
    """The report as Markdown (summary, per-round table, baseline)."""
    s = result.summary()
    rows = [round_row(r) for r in result.rounds]
    lines = [
        f"# Closed loop: {len(rows)} rounds x {result.config.requests_per_round} requests, seed {result.config.seed}",
        "",
        f"World: {result.config.traces or 'simulated fleet'}; exploration epsilon {result.config.epsilon}; "
        f"lambda {result.config.lam}; utility = quality - lambda x cost / {result.cost_ref_usd:.5f} USD "
        f"(mean cost of {result.reference_model}).",
        "",
        "## Summary",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for k in ("requests", "failed_requests", "promotions", "refusals", "bad_candidates", "bad_candidates_promoted",
              "live_quality_covered", "candidate_quality_covered", "final_live_version", "quality_gap_points",
              "cost_ratio"):
        lines.append(f"| {k} | {_fmt(s.get(k))} |")
    ft, bt = s.get("final_test") or {}, s.get("baseline_test") or {}
    lines += ["", "Held-out tasks (true values, matrix as recorded): final live version vs offline full-information "
              "LightGBM", "",
              "| policy | quality | cost_usd | local_share | utility |", "|---|---|---|---|---|"]
    for name, v in (("final live", ft), ("offline LightGBM", bt)):
        lines.append(f"| {name} | " + " | ".join(_fmt(v.get(c)) for c in ("quality", "cost_usd", "local_share",
                                                                          "utility")) + " |")
    lines += ["", "## Rounds", "", "| " + " | ".join(ROUND_COLUMNS) + " |",
              "|" + "---|" * len(ROUND_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[c]) for c in ROUND_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def plot(result: LoopResult, path: str | Path) -> Path:
    """PNG: per round, the live version's true quality and its OPE interval, the candidate's true
    utility gain and the gate's interval (promotions marked), and live cost / local share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [round_row(r) for r in result.rounds]
    x = [r["round"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    lo = [r["ope_live_quality"] - r["ope_live_lower"] for r in rows]
    hi = [r["ope_live_upper"] - r["ope_live_quality"] for r in rows]
    ax.errorbar(x, [r["ope_live_quality"] for r in rows], yerr=[lo, hi], fmt="o", capsize=4, label="OPE (95% CI)")
    ax.plot(x, [r["true_live_quality"] for r in rows], "k*", markersize=10, label="true (matrix)")
    ax.plot(x, [r["live_quality"] for r in rows], "s", alpha=0.5, label="realised live (labels)")
    ax.set_title("live version: quality")
    ax.set_xlabel("round")
    ax.legend(fontsize=8)
    ax = axes[1]
    lo = [r["ope_gain"] - r["ope_gain_lower"] for r in rows]
    hi = [r["ope_gain_upper"] - r["ope_gain"] for r in rows]
    ax.errorbar(x, [r["ope_gain"] for r in rows], yerr=[lo, hi], fmt="o", capsize=4, label="gate estimate (95% CI)")
    ax.plot(x, [r["true_gain"] for r in rows], "k*", markersize=10, label="true gain")
    ax.axhline(0.0, color="grey", lw=0.8)
    for r in rows:
        if r["verdict"].startswith("promoted"):
            ax.annotate(r["verdict"].split()[1], (r["round"], r["ope_gain_upper"]), fontsize=8, ha="center",
                        va="bottom", color="green")
    ax.set_title("candidate - live utility")
    ax.set_xlabel("round")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(x, [r["live_cost_usd"] for r in rows], "o-", label="live cost (USD/request)")
    ax.set_xlabel("round")
    ax.set_title("live cost and local share")
    ax2 = ax.twinx()
    ax2.plot(x, [r["live_local_share"] for r in rows], "s--", color="tab:orange", label="local share")
    ax2.set_ylim(0, 1.05)
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def write_report(result: LoopResult, out: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` (the whole record + ``rounds_table``) and ``report.png``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    md = d / "report.md"
    md.write_text(markdown(result))
    js = d / "report.json"
    payload = result.to_dict()
    payload["rounds_table"] = {"columns": list(ROUND_COLUMNS), "rows": [round_row(r) for r in result.rounds]}
    js.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    png = plot(result, d / "report.png")
    return {"markdown": md, "json": js, "png": png}

"""Markdown + HTML evaluation report with PNG plots (matplotlib, Agg backend).

Files written to the output folder::

    report.md            # tables: headline metrics with intervals, frontier metrics, gates
    report.html          # the same content as HTML, plots inline as <img>
    evaluation.json      # EvaluationResult.to_dict()
    frontier.png         # cost-quality frontier of every policy, single models and the oracle
    by_<column>.png      # mean quality per group (category / agent type) per policy
    calibration.png      # reliability curves of policies exposing predicted probabilities
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from router_rl.eval.runner import EvaluationResult


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.4g}"
    return str(v)


def _save(plt: Any, fig: Any, ax: Any, path: Path) -> Path:
    """Add the legend, write ``fig`` to ``path`` (PNG, 110 dpi), close it and return ``path``."""
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plots(res: EvaluationResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[Path] = []
    # frontier
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, m in res.single_models.items():
        ax.scatter([m.mean_cost], [m.mean_quality], marker="s", color="grey", alpha=0.6)
        ax.annotate(name, (m.mean_cost, m.mean_quality), fontsize=7, alpha=0.7)
    oc = [p.mean_cost for p in res.oracle_frontier]
    oq = [p.mean_quality for p in res.oracle_frontier]
    ax.plot(oc, oq, "k--", marker="x", label="oracle (λ sweep)")
    for name, pe in res.policies.items():
        xs = [p.mean_cost for p in pe.frontier]
        ys = [p.mean_quality for p in pe.frontier]
        if len(xs) > 1:
            order = sorted(range(len(xs)), key=lambda i: xs[i])
            ax.plot([xs[i] for i in order], [ys[i] for i in order], marker="o", label=f"{name} (λ sweep)")
        ax.scatter([pe.metrics.mean_cost], [pe.metrics.mean_quality], marker="*", s=120, label=f"{name} (deployed)")
    ax.set_xlabel("mean cost per request (USD)")
    ax.set_ylabel("mean quality")
    ax.set_title(f"Cost-quality frontier ({res.split}, reference: {res.reference_model})")
    files.append(_save(plt, fig, ax, out / "frontier.png"))
    # per-group bars
    cols = sorted({c for pe in res.policies.values() for c in pe.by_group})
    for col in cols:
        groups = sorted({g for pe in res.policies.values() for g in pe.by_group.get(col, {})})
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(groups) * max(1, len(res.policies))), 4))
        width = 0.8 / max(1, len(res.policies))
        for k, (name, pe) in enumerate(res.policies.items()):
            per = pe.by_group.get(col, {})
            vals = [per[g].mean_quality if g in per else 0.0 for g in groups]
            ax.bar([i + k * width for i in range(len(groups))], vals, width=width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
        ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("mean quality")
        ax.set_title(f"Quality by {col}")
        files.append(_save(plt, fig, ax, out / f"by_{col}.png"))
    # calibration
    cal = {n: pe.calibration for n, pe in res.policies.items() if pe.calibration is not None}
    if cal:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], "k:", label="perfect")
        for name, c in cal.items():
            pts = [
                (x, y)
                for x, y in zip(c.mean_predicted, c.mean_observed, strict=True)
                if x is not None and y is not None
            ]
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=f"{name} (ECE {c.ece:.3f})")
        ax.set_xlabel("predicted success of the chosen model")
        ax.set_ylabel("observed quality")
        ax.set_title("Calibration")
        files.append(_save(plt, fig, ax, out / "calibration.png"))
    return files


def _rule(deployed: dict | None) -> str:
    """``λ=… ν=… (target)`` of a deployed decision rule; ``n/a`` for policies without one."""
    if not deployed:
        return "n/a"
    d = deployed.get("decision") or {}
    parts = [f"λ={d.get('lam', 0.0):.3g}"]
    if d.get("nu"):
        parts.append(f"ν={d['nu']:.3g}")
    if deployed.get("calibrated_for"):
        parts.append(f"({deployed['calibrated_for']})")
    return " ".join(parts)


def _tables(res: EvaluationResult) -> list[tuple[str, list[str], list[list[str]]]]:
    head = ["policy", "deployed rule", "quality", "quality ratio", "cost share", "local share", "P50 s", "P95 s",
            "oracle gap"]
    rows = []
    for name, pe in res.policies.items():
        iv = pe.intervals

        def ci(k: str, pct: bool = True, iv: dict = iv) -> str:
            if k not in iv:
                return "n/a"
            v = iv[k]
            return f"{_fmt(v.value, pct)} [{_fmt(v.lower, pct)}, {_fmt(v.upper, pct)}]"

        m = pe.metrics
        rows.append(
            [
                name,
                _rule(pe.deployed),
                ci("mean_quality", False),
                ci("quality_ratio"),
                ci("cost_share"),
                ci("local_share"),
                _fmt(m.latency_p50),
                _fmt(m.latency_p95),
                ci("oracle_gap", False),
            ]
        )
    fhead = [
        "policy",
        "AIQ",
        "APGR",
        "CPT(50%)",
        "CPT(80%)",
        "cost share @95% (frontier)",
        "re-calibrated on this run's val → test (not the deployed rule)",
    ]
    frows = []
    for name, pe in res.policies.items():
        fm = pe.frontier_metrics
        op = pe.operating_point
        ops = "n/a"
        if op is not None:
            q, c = _fmt(op["test_quality_ratio"], True), _fmt(op["test_cost_share"], True)
            ops = f"λ={op['lam']:g}: quality {q}, cost {c}"
        frows.append(
            [
                name,
                _fmt(fm.get("aiq")),
                _fmt(fm.get("apgr")),
                _fmt(fm.get("cpt50"), True),
                _fmt(fm.get("cpt80"), True),
                _fmt(fm.get("cost_share_at_quality"), True),
                ops,
            ]
        )
    ghead = (
        ["policy", *[p.phase for p in next(iter(res.policies.values())).independence.phases]] if res.policies else []
    )
    grows = []
    for name, pe in res.policies.items():
        cells = [name]
        for ph in pe.independence.phases:
            fails = [f"{c.metric}={_fmt(c.value)}" for c in ph.checks if c.passed is False]
            cells.append(
                {True: "PASS", False: "FAIL", None: "skipped"}[ph.passed] + (f" ({', '.join(fails)})" if fails else "")
            )
        grows.append(cells)
    return [
        ("Headline metrics of each policy as deployed (its saved decision rule; 95% bootstrap intervals)",
         head, rows),
        ("Frontier metrics", fhead, frows),
        ("Independence gates", ghead, grows),
    ]


def write_report(res: EvaluationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``evaluation.json`` and the PNG plots to ``out_dir``.

    Returns:
        ``name -> path`` of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {p.name: p for p in _plots(res, out)}
    files["evaluation.json"] = res.write_json(out / "evaluation.json")
    intro = (
        f"Split **{res.split}**: {res.n_tasks} tasks, {len(res.models)} models. Reference model (best single "
        f"on train): **{res.reference_model}**; weak model (cheapest on train): **{res.weak_model}**. "
        f"Oracle quality {res.oracle.mean_quality:.4g} at cost share {_fmt(res.oracle.cost_share, True)}."
    )
    md = ["# router-rl offline evaluation", "", intro, ""]
    body = [f"<h1>router-rl offline evaluation</h1><p>{html.escape(intro).replace('**', '')}</p>"]
    for title, head, rows in _tables(res):
        md += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += ["| " + " | ".join(r) + " |" for r in rows]
        md.append("")
        body.append(f"<h2>{html.escape(title)}</h2><table border='1' cellpadding='4'><tr>")
        body.append("".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
        body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
        body.append("</table>")
    md.append("## Plots")
    body.append("<h2>Plots</h2>")
    for name in files:
        if name.endswith(".png"):
            md.append(f"![{name}]({name})")
            body.append(f"<p><img src='{html.escape(name)}' alt='{html.escape(name)}'></p>")
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>router-rl evaluation</title></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    files["report.md"] = out / "report.md"
    files["report.html"] = out / "report.html"
    return files

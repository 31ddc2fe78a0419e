"""Markdown + HTML + one PNG per dashboard view of a :class:`~router_rl.eval.live_report.LiveReport`.

Files written to the output folder::

    report.md / report.html   # every section's tables; the PNGs inline
    live_report.json          # LiveReport.to_dict()
    executive.png             # cost vs the all-reference counterfactual, quality, local share
    operations.png            # latency P50 / P95 over time, throughput, tokens/s
    quality.png               # quality over time (local / cloud), quality per agent type with intervals
    routing.png               # local / cloud / emergency / failed share over time, fallbacks

The four PNGs are the four Grafana views of ``deploy/grafana/dashboards`` drawn from the log, for
a reader without Grafana (docs/operations.md).
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router_rl.eval.live_report import Interval, LiveReport

Table = tuple[list[str], list[list[str]]]
VIEWS: tuple[str, ...] = ("executive", "operations", "quality", "routing")


def _f(v: Any, pct: bool = False, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.{digits}g}"
    return str(v)


def _iv(iv: Interval | None, pct: bool = False) -> str:
    if iv is None or iv.value is None:
        return "n/a"
    return f"{_f(iv.value, pct)} [{_f(iv.lower, pct)}, {_f(iv.upper, pct)}] (n={iv.n})"


def _sections(rep: LiveReport) -> list[tuple[str, list[str], list[Table]]]:
    c, cost, q, fb, ops = rep.counts, rep.cost, rep.quality, rep.fallbacks, rep.operations
    level = f"{100 * (1 - 0.05):.0f}%"
    out: list[tuple[str, list[str], list[Table]]] = []
    filt = ", ".join(f"{k}={v}" for k, v in c.items())
    out.append(("Window", [
        f"Decisions from {ops['window_start']} to {ops['window_end']} ({_f(ops['window_s'])} s); "
        f"since={rep.source.get('since')}, until={rep.source.get('until')}, agent types="
        f"{rep.source.get('agent_types') or 'all'}.", f"Counts: {filt}."], []))
    g = rep.gates
    if g is not None:
        rows = []
        for ph in g.phases:
            b = ph.binding
            rows.append([ph.phase, {True: "PASS", False: "FAIL", None: "skipped"}[ph.passed],
                         "n/a" if b is None else f"{b.metric} = {_f(b.value)} (needs {b.op} {_f(b.threshold)})"])
        detail = [[ph.phase, ch.metric, f"{ch.op} {_f(ch.threshold)}", _f(ch.value),
                   {True: "pass", False: "FAIL", None: "skipped"}[ch.passed], _f(ch.margin, True), ch.origin]
                  for ph in g.phases for ch in ph.checks]
        out.append(("Phase gates on live data", [
            f"Highest phase passed: **{g.highest_passed or 'none'}**. Quality ratio from "
            f"{g.inputs['quality_ratio_source']}. Binding gate = the check with the smallest relative margin."],
            [(["phase", "verdict", "binding gate"], rows),
             (["phase", "check", "threshold", "value", "result", "margin", "origin"], detail)]))
    out.append(("Routing", [f"Time buckets of {rep.bucket_s} s."], [
        (["class", "share"], [[k, _f(v, True)] for k, v in rep.shares.items()])]))
    cf = [["reference model", str(cost["reference_model"])],
          ["recorded cost (all rows)", f"{_f(cost['recorded_usd'])} USD"],
          ["recorded cost (rows used)", f"{_f(cost.get('recorded_usd_used'))} USD"],
          ["counterfactual: every request to the reference", f"{_f(cost.get('counterfactual_usd'))} USD"],
          ["saving", _f(cost.get("saving"), True) + (
              f" [{_f(cost['saving_interval'][0], True)}, {_f(cost['saving_interval'][1], True)}]"
              if cost.get("saving_interval") else "")],
          ["rows used / excluded", f"{cost['rows_used']} / {cost['rows_excluded']}"]]
    if cost.get("rows_usage_estimated") is not None:
        cf.append(["rows with router-estimated usage", str(cost["rows_usage_estimated"])])
    pm = [[m, d["location"], str(d["requests"]), _f(d["cost_usd"]), str(d.get("input_tokens", "n/a")),
           str(d.get("output_tokens", "n/a")), _f(d.get("input_tokens_per_s")), _f(d.get("output_tokens_per_s"))]
          for m, d in rep.per_model.items()]
    out.append(("Cost", [f"How: {cost['formula']}."], [
        (["", "value"], cf),
        (["model", "location", "requests", "cost USD", "tokens in", "tokens out", "tokens/s in", "tokens/s out"], pm)]))

    def lat_rows(d: dict[str, dict[str, Any]]) -> list[list[str]]:
        return [[k, str(v["n"]), _f(v["p50"]), _f(v["p95"]), _f(v["p99"])] for k, v in d.items()]

    lh = ["group", "n", "P50 s", "P95 s", "P99 s"]
    out.append(("Latency", ["Served requests, end-to-end seconds as the router measured them."], [
        (lh, lat_rows({"overall": rep.latency["overall"], "SIMPLE tasks": rep.latency["task_class"]["simple"],
                       "COMPLEX tasks (complex + very_complex)": rep.latency["task_class"]["complex"]})),
        (["complexity", *lh[1:]], lat_rows(rep.latency["complexity"])),
        (["agent type", *lh[1:]], lat_rows(rep.latency["agent_type"]))]))
    qrows = [["all labeled rows", _iv(q["overall"])],
             *[[f"answered by {k} models", _iv(v)] for k, v in q["location"].items()],
             [f"answered by the reference ({q['reference_model']})", _iv(q["reference_feedback"])],
             ["ratio: all / reference-answered rows (feedback)", _iv(q["ratio_feedback"], True)]]
    ope = q.get("ope")
    opes: list[Table] = []
    if ope is not None:
        qrows.append([f"ratio: logged / always-{q['reference_model']} (OPE, {ope['estimator']})",
                      _f(ope["ratio"], True)])
        opes.append((["estimator", f"always-{q['reference_model']}", "difference logged policy - it", ],
                     [[k, f"{_f(e['value'])} [{_f(e['lower'])}, {_f(e['upper'])}]",
                       (lambda d: "n/a" if d is None else f"{_f(-d['value'])} [{_f(-d['upper'])}, {_f(-d['lower'])}]")(
                           ope["difference"].get(k))] for k, e in ope["estimates"].items()]))
    out.append(("Quality", [
        f"Mean feedback quality with {level} percentile-bootstrap intervals; rows no model answered count as 0. "
        "The reference's own feedback covers only the requests it answered; the OPE row estimates the reference "
        "on every labeled request (reward model + importance weights; the support it needs comes from exploration)."
        + ("" if ope is None else f" OPE on {ope['n']} labeled rows ({ope['n_excluded']} unlabeled excluded)"
           + (f"; support violated: {_f(ope['unsupported_mass'], True)} of the mass unsupported"
              if ope["support_violated"] else "") + ".")],
        [(["", "quality"], qrows), *opes,
         (["agent type", "quality"], [[k, _iv(v)] for k, v in q["agent_type"].items()])]))
    fbrows = [["fallbacks", f"{fb['fallbacks']} ({_f(fb['fallback_share'], True)})"],
              ["errors (no answer)", f"{fb['errors']} ({_f(fb['error_share'], True)})"],
              ["emergency cloud", str(fb["emergency"])]]
    out.append(("Fallbacks and breakers", [], [
        (["", "count"], fbrows),
        (["fallback reason", "rows"], [[k, str(v)] for k, v in fb["by_reason"].items()] or [["none", "0"]]),
        (["emergency trigger", "rows"], [[k, str(v)] for k, v in fb["emergency_by_trigger"].items()]
         or [["none", "0"]]),
        (["failed attempt kind", "attempts"], [[k, str(v)] for k, v in fb["failed_attempts_by_kind"].items()]
         or [["none", "0"]]),
        (["provider", "breaker trips", "uptime", "rows open", "observed s"],
         [[p, str(d["trips"]), _f(d["uptime"], True), str(d["rows_open"]), _f(d["observed_s"])]
          for p, d in rep.providers.items()] or [["n/a", "", "", "", ""]])]))
    out.append(("Operations", [f"Uptime from: {ops['uptime_source']}.", f"Local engine utilisation: "
                               f"{ops['engine_utilisation']}."], [
        (["", "value"], [["throughput (req/s over the window)", _f(ops["throughput_rps"])],
                         [f"peak (req/s in a {rep.bucket_s} s bucket)", _f(ops["peak_bucket_rps"])]])]))
    if rep.notes:
        out.append(("Not computed / approximated", [f"- {n}" for n in rep.notes], []))
    return out


def _times(rep: LiveReport) -> list[datetime]:
    return [datetime.fromisoformat(s) for s in rep.series["start"]]


def _plots(rep: LiveReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s, t = rep.series, _times(rep)
    w = rep.bucket_s / 86400.0 * 0.9
    files: list[Path] = []

    def nz(v: list[Any]) -> np.ndarray:
        return np.asarray([np.nan if x is None else x for x in v], dtype=float)

    def save(fig: Any, name: str) -> None:
        for ax in fig.axes:
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        fig.tight_layout()
        p = out / f"{name}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        files.append(p)

    req = nz(s["requests"])
    # executive
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(t, np.nancumsum(nz(s["cost_usd"])), label="recorded")
    axes[0].plot(t, np.nancumsum(nz(s["counterfactual_usd"])), "--", label=f"all {rep.cost['reference_model']}")
    axes[0].set_title(f"cumulative cost USD (saving {_f(rep.cost.get('saving'), True)})")
    axes[1].plot(t, nz(s["quality"]), marker="o", label="mean feedback quality")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("quality")
    with np.errstate(invalid="ignore", divide="ignore"):
        axes[2].plot(t, nz(s["local"]) / req, marker="o", label="local share")
    axes[2].axhline(0.8, color="grey", ls=":", label="phase 2 target")
    axes[2].set_ylim(0, 1.05)
    passed = (rep.gates.highest_passed if rep.gates else None) or "none"
    axes[2].set_title(f"local share (highest phase passed: {passed})")
    save(fig, "executive")
    # operations
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(t, nz(s["latency_p50"]), marker="o", label="P50")
    axes[0].plot(t, nz(s["latency_p95"]), marker="o", label="P95")
    axes[0].axhline(5.0, color="grey", ls=":", label="P95 alert 5 s")
    axes[0].set_title("latency s")
    axes[1].bar(t, req / rep.bucket_s, width=w, label="req/s")
    axes[1].set_title("throughput")
    if "input_tokens" in s:
        axes[2].plot(t, nz(s["input_tokens"]) / rep.bucket_s, label="in")
        axes[2].plot(t, nz(s["output_tokens"]) / rep.bucket_s, label="out")
        axes[2].set_title("tokens/s")
    else:
        axes[2].set_title("tokens/s: not in the log (pass --decisions)")
    save(fig, "operations")
    # quality
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(t, nz(s["quality_local"]), marker="o", label="local")
    axes[0].plot(t, nz(s["quality_cloud"]), marker="s", label="cloud")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("feedback quality by location")
    items = [(k, v) for k, v in rep.quality["agent_type"].items() if v.value is not None]
    if items:
        x = np.arange(len(items))
        vals = np.asarray([v.value for _, v in items])
        err = np.asarray([[v.value - v.lower, v.upper - v.value] for _, v in items]).T
        axes[1].bar(x, vals, yerr=err, capsize=3)
        axes[1].set_xticks(x)
        axes[1].set_xticklabels([k for k, _ in items], fontsize=7)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("quality per agent type (95% interval)")
    save(fig, "quality")
    # routing
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    bottom = np.zeros(len(t))
    for name in ("local", "cloud", "emergency", "failed"):
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.nan_to_num(nz(s[name]) / req)
        axes[0].bar(t, v, width=w, bottom=bottom, label=name)
        bottom += v
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("share of requests")
    axes[1].bar(t, nz(s["fallbacks"]), width=w, label="fallbacks")
    axes[1].set_title("fallbacks per bucket")
    save(fig, "routing")
    return files


def write_live_report(rep: LiveReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``live_report.json`` and the four view PNGs.

    Returns:
        ``name -> path`` of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {p.name: p for p in _plots(rep, out)}
    files["live_report.json"] = rep.write_json(out / "live_report.json")
    md = ["# router-rl live report", ""]
    body = ["<h1>router-rl live report</h1>"]
    for title, paras, tables in _sections(rep):
        md += [f"## {title}", ""]
        body.append(f"<h2>{html.escape(title)}</h2>")
        for p in paras:
            md += [p, ""]
            body.append(f"<p>{html.escape(p).replace('**', '')}</p>")
        for head, rows in tables:
            md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            md += ["| " + " | ".join(r) + " |" for r in rows]
            md.append("")
            body.append("<table border='1' cellpadding='4'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                        + "</tr>")
            body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
            body.append("</table>")
    md += ["## Views", ""]
    body.append("<h2>Views</h2>")
    for v in VIEWS:
        md.append(f"![{v}]({v}.png)")
        body.append(f"<p><img src='{v}.png' alt='{v}'></p>")
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>router-rl live report</title></head><body>"
        + "\n".join(body) + "</body></html>\n")
    files["report.md"] = out / "report.md"
    files["report.html"] = out / "report.html"
    return files

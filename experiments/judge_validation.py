"""Validate the QE test judge on a corpus of good test files and their degraded versions.

For every module of the corpus (``tests/judge/corpus/<name>/<name>.py`` with its good test file
``test_<name>.py``, written for this project) the script judges the good file and each
degradation of :mod:`router_rl.judge.degrade` (asserts removed, expected values wrong, half the
tests deleted, tests that only import, tests that crash, tests that hang) with the same
:class:`~router_rl.judge.config.JudgeConfig`, then reports:

* the mean score (and min/max) per variant;
* how many modules are ranked correctly (the good file strictly above every degraded one);
* the mutation score of the good file vs "asserts removed" (the separation the issue asks for).

Usage::

    .venv/bin/python experiments/judge_validation.py                 # whole corpus
    .venv/bin/python experiments/judge_validation.py --quick         # 3 modules, 8 mutants

Writes ``<out-dir>/judge_validation.json`` and ``.md`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router_rl.judge.config import JudgeConfig, MutationBudget, SandboxLimits
from router_rl.judge.degrade import DEGRADATIONS, degrade
from router_rl.judge.tests_judge import judge_tests

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "judge" / "corpus"


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    corpus: str = str(CORPUS)
    modules: list[str] = field(default_factory=list)  # empty = every module of the corpus
    degradations: list[str] = field(default_factory=lambda: list(DEGRADATIONS))
    max_mutants: int = 30
    workers: int = 2
    per_test_timeout_s: float = 2.0
    wall_timeout_s: float = 30.0
    seed: int = 0
    out_dir: str = "experiments/results"
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--corpus", default=d.corpus)
    p.add_argument("--modules", nargs="*", default=[])
    p.add_argument("--degradations", nargs="+", default=d.degradations, choices=list(DEGRADATIONS))
    p.add_argument("--max-mutants", type=int, default=d.max_mutants)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--per-test-timeout-s", type=float, default=d.per_test_timeout_s)
    p.add_argument("--wall-timeout-s", type=float, default=d.wall_timeout_s)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--quick", action="store_true")
    a = Args(**vars(p.parse_args(argv)))
    if a.quick:
        a.max_mutants = min(a.max_mutants, 8)
        if not a.modules:
            a.modules = ["roman", "stack", "bsearch"]
        if a.out_dir == "experiments/results":  # never overwrite the committed results with a smoke run
            a.out_dir = "runs/judge_validation"
    return a


def corpus_modules(corpus: Path, names: list[str]) -> list[str]:
    """Module names of the corpus (folders holding ``<name>.py`` and ``test_<name>.py``)."""
    found = sorted(
        d.name for d in corpus.iterdir() if d.is_dir() and (d / f"{d.name}.py").is_file()
        and (d / f"test_{d.name}.py").is_file()
    )  # fmt: skip
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"--modules: not in the corpus {corpus}: {missing}")
    return names or found


def judge_module(corpus: Path, name: str, cfg: JudgeConfig, degradations: list[str]) -> dict[str, Any]:
    """Judge the good file and every degradation of one module."""
    code = corpus / name / f"{name}.py"
    good = corpus / name / f"test_{name}.py"
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="judge-validation-") as tmp:
        variants = {"good": good}
        for kind in degradations:
            p = Path(tmp) / kind / f"test_{name}.py"
            p.parent.mkdir()
            p.write_text(degrade(good.read_text(), kind))
            variants[kind] = p
        for variant, path in variants.items():
            t0 = time.monotonic()
            j = judge_tests(code, path, cfg)
            d = j.details
            out[variant] = {
                "score": j.score,
                "components": d.get("components"),
                "mutation_score": (d.get("mutation") or {}).get("score"),
                "tests": d.get("tests"),
                "reason": d.get("reason"),
                "wall_s": round(time.monotonic() - t0, 2),
            }
    good_score = out["good"]["score"]
    out["ranked_correctly"] = all(out[k]["score"] < good_score for k in degradations)
    return out


def summarize(results: dict[str, dict[str, Any]], degradations: list[str]) -> dict[str, Any]:
    """Per-variant mean/min/max score, modules ranked correctly, mutation separation."""
    per_variant = {}
    for v in ["good", *degradations]:
        scores = np.array([r[v]["score"] for r in results.values()])
        per_variant[v] = {"mean": float(scores.mean()), "min": float(scores.min()), "max": float(scores.max())}
    sep = [
        (r["good"]["mutation_score"], r["asserts_removed"]["mutation_score"])
        for r in results.values()
        if "asserts_removed" in r
    ]
    out: dict[str, Any] = {
        "modules": len(results),
        "ranked_correctly": sum(1 for r in results.values() if r["ranked_correctly"]),
        "per_variant": per_variant,
    }
    if sep:
        g = np.array([a if a is not None else 0.0 for a, _ in sep])
        b = np.array([x if x is not None else 0.0 for _, x in sep])
        out["mutation_good_vs_asserts_removed"] = {
            "good_mean": float(g.mean()),
            "asserts_removed_mean": float(b.mean()),
            "modules_good_higher": int((g > b).sum()),
            "min_gap": float((g - b).min()),
        }
    return out


def to_markdown(args: Args, summary: dict[str, Any], results: dict[str, dict[str, Any]], wall_s: float) -> str:
    """The tables of docs/judge.md."""
    degr = args.degradations
    lines = [
        "# Judge validation",
        "",
        f"Corpus: {summary['modules']} modules; max_mutants={args.max_mutants}, workers={args.workers}, "
        f"per-test timeout {args.per_test_timeout_s} s, wall {args.wall_timeout_s} s, seed {args.seed}; "
        f"{wall_s:.0f} s on {os.cpu_count()} CPUs ({platform.python_version()}).",
        "",
        f"**Ranked correctly** (good file strictly above every degraded one): "
        f"{summary['ranked_correctly']} / {summary['modules']}",
        "",
        "| variant | mean score | min | max |",
        "|---|---|---|---|",
    ]
    for v, s in summary["per_variant"].items():
        lines.append(f"| {v} | {s['mean']:.3f} | {s['min']:.3f} | {s['max']:.3f} |")
    sep = summary.get("mutation_good_vs_asserts_removed")
    if sep:
        lines += [
            "",
            f"Mutation score, good vs asserts removed: {sep['good_mean']:.3f} vs {sep['asserts_removed_mean']:.3f} "
            f"(good higher in {sep['modules_good_higher']} / {summary['modules']} modules, smallest gap "
            f"{sep['min_gap']:.3f}).",
        ]
    lines += ["", "| module | good | " + " | ".join(degr) + " | mutation good / asserts removed |",
              "|---|---|" + "---|" * len(degr) + "---|"]
    for name, r in results.items():
        mg, mb = r["good"]["mutation_score"], (r.get("asserts_removed") or {}).get("mutation_score")
        fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(
            f"| {name} | {r['good']['score']:.3f} | " + " | ".join(f"{r[k]['score']:.3f}" for k in degr)
            + f" | {fmt(mg)} / {fmt(mb)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the validation; write JSON and Markdown; return the summary."""
    args = parse_args(argv)
    corpus = Path(args.corpus)
    cfg = JudgeConfig(
        limits=SandboxLimits(wall_timeout_s=args.wall_timeout_s, per_test_timeout_s=args.per_test_timeout_s),
        mutation=MutationBudget(max_mutants=args.max_mutants, workers=args.workers, seed=args.seed),
    )
    t0 = time.monotonic()
    results = {}
    for name in corpus_modules(corpus, args.modules):
        results[name] = judge_module(corpus, name, cfg, args.degradations)
        r = results[name]
        print(f"{name:16s} good {r['good']['score']:.3f}  " + "  ".join(
            f"{k} {r[k]['score']:.3f}" for k in args.degradations) + f"  ranked={r['ranked_correctly']}", flush=True)
    wall_s = time.monotonic() - t0
    summary = summarize(results, args.degradations)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "judge_validation.json").write_text(
        json.dumps({"args": asdict(args), "summary": summary, "results": results, "wall_s": wall_s}, indent=1)
    )
    (out / "judge_validation.md").write_text(to_markdown(args, summary, results, wall_s))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()

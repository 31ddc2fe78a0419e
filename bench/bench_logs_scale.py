"""Benchmark the 10M-decisions-a-day pieces: compaction, ``logs join`` and OPE, flat vs partitioned vs Ray.

Generates ``--rows`` synthetic logged decisions over ``--days`` days with their feedback
(:func:`router_rl.logs.synthetic.synthetic_log`: numpy, seeded, not through the router), writes
them as the router's layout (part files of ``--rows-per-part`` rows), then times, rows/s each:

1. ``compact``: part files -> ``day=/policy_version=`` partitions (decisions and feedback);
2. **baseline** ``join_logs`` on the flat part folders (the eager read of every part into one
   frame: what ``router-rl logs join`` does without ``--partitioned``);
3. ``join_partitioned`` in process (one core), then as Ray tasks over the days with 1 and 2 workers;
4. **baseline** OPE: ``load_logged`` of the flat joined file + IPS / SNIPS / DR / DM on every row;
5. ``evaluate_partitioned`` (per-partition sums, held-out ridge reward model on day 1) in process,
   then on Ray with 1 and 2 workers.

One core: polars runs with ``POLARS_MAX_THREADS=1`` (set here before polars is imported) and the
BLAS pools with one thread; each Ray worker is one CPU with one polars thread. The partitioned
and flat results are checked equal (the same joined rows, the same estimates) before timing is
reported.

Usage::

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/bench_logs_scale.py [--rows 10000000] [--days 10] \
        [--workers 1 2] [--out /tmp/bench-logs-scale] [--keep]
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _timed(label: str, rows: int, fn: Callable[[], Any], figures: list[dict[str, Any]]) -> Any:
    t = time.perf_counter()
    out = fn()
    s = time.perf_counter() - t
    figures.append({"step": label, "rows": rows, "seconds": round(s, 2), "rows_per_s": round(rows / s)})
    print(f"{label:<48} {rows:>11,} rows {s:>9.1f} s {rows / s:>12,.0f} rows/s   (max RSS {_rss_gb():.1f} GB)",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--rows-per-part", type=int, default=100_000)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-logs-scale"))
    ap.add_argument("--keep", action="store_true", help="Keep the generated folders.")
    ap.add_argument("--no-flat", action="store_true",
                    help="Skip the flat (eager, one frame) baselines: they hold every row in memory at once.")
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures as JSON.")
    args = ap.parse_args()

    import polars as pl

    from router_rl.logs.data import load_logged
    from router_rl.logs.join import join_logs
    from router_rl.logs.partition import compact, scan_table
    from router_rl.logs.partition_join import join_partitioned
    from router_rl.logs.scale_ope import evaluate_partitioned
    from router_rl.logs.synthetic import logging_distribution, synthetic_log, write_parts
    from router_rl.ope.estimators import LoggedFeedback, make_estimator
    from router_rl.ope.reward_model import _ridge_fold

    root = args.out
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    figures: list[dict[str, Any]] = []
    n = args.rows
    print(f"polars {pl.__version__}, POLARS_MAX_THREADS={os.environ['POLARS_MAX_THREADS']}, "
          f"{n:,} decisions over {args.days} days, parts of {args.rows_per_part:,} rows", flush=True)
    log = _timed("generate (numpy, seeded)", n, lambda: synthetic_log(n, days=args.days, seed=args.seed), figures)
    nf = log.feedback.height
    _timed("write router part files (decisions)", n,
           lambda d=log.decisions: write_parts(d, root / "decisions", rows_per_part=args.rows_per_part), figures)
    write_parts(log.feedback, root / "feedback", rows_per_part=args.rows_per_part)
    W, locations, k = log.W, log.locations, len(log.models)
    rng = np.random.default_rng(args.seed + 1)
    Wt = rng.normal(0.0, 1.0, W.shape)
    rest = log.decisions["ts"].dt.date().cast(pl.Utf8).to_numpy() != str(log.decisions["ts"][0].date())
    truth = float((logging_distribution(log.X[rest], Wt, 0.2) * log.mu[rest]).sum(axis=1).mean())
    del log

    rep_c = _timed("compact decisions -> day/policy_version", n,
                   lambda: compact(root / "decisions", root / "p/decisions"), figures)
    assert rep_c.rows_written == n
    def _bytes(d: Path) -> int:
        return sum(f.stat().st_size for f in d.rglob("*.parquet"))

    print(f"on disk: router parts {_bytes(root / 'decisions') / n:.0f} B/decision, partitions "
          f"{_bytes(root / 'p/decisions') / n:.0f} B/decision ({rep_c.files_written} files)", flush=True)
    _timed("compact feedback -> day (received)", nf,
           lambda: compact(root / "feedback", root / "p/feedback", table="feedback"), figures)

    flat_file = root / "logged.parquet"
    if not args.no_flat:
        flat, frep = _timed("BASELINE join_logs, flat eager read", n,
                            lambda: join_logs(root / "decisions", root / "feedback"), figures)
        flat.write_parquet(flat_file)
        del flat
    prep = _timed("join_partitioned, in process (1 core)", n,
                  lambda: join_partitioned(root / "p/decisions", root / "p/feedback", root / "logged"), figures)
    if args.no_flat:
        frep = prep.total
    assert prep.total.to_dict() == frep.to_dict(), "partitioned join report differs from the flat join"
    if not args.no_flat:
        got = scan_table(root / "logged", "logged").select(pl.len(), pl.col("quality").sum()).collect().row(0)
        want = pl.scan_parquet(flat_file).select(pl.len(), pl.col("quality").sum()).collect().row(0)
        assert got[0] == want[0] and abs(got[1] - want[1]) < 1e-6 * max(1.0, abs(want[1])), (got, want)
    print(f"join: {prep.total.rows:,} rows, {prep.total.labeled:,} labeled, {prep.total.unlabeled:,} unlabeled, "
          f"{prep.total.duplicate_feedback_ids:,} duplicate feedback ids, {len(prep.files)} files", flush=True)


    def target(X: np.ndarray) -> np.ndarray:
        return logging_distribution(X, Wt, 0.2)

    def flat_ope() -> dict[str, float]:
        data = load_logged(flat_file, locations=locations)
        first_day = data.ts.astype("datetime64[D]") == data.ts.astype("datetime64[D]").min()
        fit = data.take(first_day).labeled()
        ev = data.take(~first_day).labeled()
        q = _ridge_fold(fit.X.astype(np.float64), fit.actions, fit.quality, ev.X.astype(np.float64), k, 1.0)
        fb = LoggedFeedback.from_arrays(rewards=ev.quality, actions=ev.actions, propensities=ev.propensities,
                                        target=target(ev.X), reward_hat=q)
        return {e: make_estimator(e).estimate_data(fb) for e in ("ips", "snips", "dm", "dr")}

    base = _timed("BASELINE OPE: load_logged flat file + estimators", n, flat_ope, figures) if not args.no_flat \
        else None
    res = _timed("evaluate_partitioned, in process (1 core)", n,
                 lambda: evaluate_partitioned(root / "logged", target, locations=locations), figures)
    if base is None:
        base = {e: v.value for e, v in res.estimates.items()}
    for e, v in base.items():
        assert abs(res.estimates[e].value - v) < 1e-9, (e, res.estimates[e].value, v)
    import ray

    from router_rl.logs.ray_pool import ensure_ray

    for w in args.workers:  # Ray last: on a loaded machine its start-up may fail (reported, not hidden)
        try:
            _timed(f"ray.init ({w} CPUs, not in the rows/s below)", n, lambda w=w: ensure_ray(w, attempts=1), figures)
        except Exception as e:  # ray raises a bare Exception on a start-up timeout
            ray.shutdown()
            print(f"Ray {w} worker(s): NOT MEASURED, ray.init failed: {str(e).splitlines()[0]}", flush=True)
            figures.append({"step": f"ray {w} workers", "error": str(e).splitlines()[0]})
            continue
        out = root / f"logged-ray{w}"
        r = _timed(f"join_partitioned, Ray {w} worker(s)", n,
                   lambda out=out, w=w: join_partitioned(root / "p/decisions", root / "p/feedback", out, workers=w),
                   figures)
        assert r.total.to_dict() == frep.to_dict()
        rr = _timed(f"evaluate_partitioned, Ray {w} worker(s)", n,
                    lambda w=w: evaluate_partitioned(root / "logged", target, locations=locations, workers=w),
                    figures)
        assert all(abs(rr.estimates[e].value - v) < 1e-9 for e, v in base.items())
        ray.shutdown()
    print(f"\nOPE on {res.n_labeled:,} labeled rows of {res.n_rows:,} (day 1 = {res.fit_rows:,} rows fits the "
          f"reward model), true value {truth:.4f}:")
    for e, est in res.estimates.items():
        ref = "" if args.no_flat else f"  (flat baseline {base[e]:.4f})"
        print(f"  {e:<6} {est.value:.4f}  95% [{est.lower:.4f}, {est.upper:.4f}]{ref}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "figures": figures,
                                         "estimates": {e: v.to_dict() for e, v in res.estimates.items()},
                                         "truth": truth}, indent=2))
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()

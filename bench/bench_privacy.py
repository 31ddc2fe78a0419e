"""Scan speed of the privacy detector on ordinary and adversarial prompts (single thread).

Prints the time of ``is_sensitive`` on issue #13's 100 KB ``"a." * 50000`` prompt, on 1 MB and
7.9 MB of ordinary simulated fleet prompts, and of ``detect_sensitive`` on 1 MB of each
adversarial shape of ``tests/features/test_feat_privacy_linear.py`` (median and slowest), next
to the time of lower-casing + encoding the same 1 MB (the in-run baseline).

    .venv/bin/python bench/bench_privacy.py [--mb 1.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=1.0, help="size of each adversarial input (MB)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "features"))
    from test_feat_privacy_linear import SHAPES

    from router_rl.features import detect_sensitive, is_sensitive
    from router_rl.traces.simulate import simulate_fleet

    def timed(fn, x) -> float:  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        fn(x)
        return time.perf_counter() - t

    print(f"issue #13 input 'a.' * 50000: is_sensitive {timed(is_sensitive, 'a.' * 50000) * 1e3:.1f} ms")
    tasks = simulate_fleet(2000, seed=1).matrix().tasks
    clean = [p for p, s in zip(tasks["prompt"].to_list(), tasks["privacy"].to_list(), strict=True) if not s]
    ordinary = "\n\n".join(clean)
    ordinary = (ordinary * (8_000_000 // len(ordinary) + 1))[:7_900_000]
    for n in (1_000_000, 7_900_000):
        print(f"ordinary prompts {n / 1e6:.1f} MB: is_sensitive {timed(is_sensitive, ordinary[:n]):.3f} s")
    size = int(args.mb * 1_000_000)
    base = timed(lambda s: s.lower().encode(), ordinary[:size])
    rows = []
    for sh in SHAPES:
        s = (sh * (size // len(sh) + 1))[:size]
        rows.append((timed(detect_sensitive, s), sh))
    rows.sort()
    med = rows[len(rows) // 2][0]
    print(f"{len(rows)} adversarial shapes x {args.mb} MB, detect_sensitive: median {med:.3f} s, slowest "
          + ", ".join(f"{sh[:16]!r} {t:.2f} s" for t, sh in rows[-3:][::-1]))
    print(f"baseline: lower() + encode() of {args.mb} MB: {base * 1e3:.1f} ms")


if __name__ == "__main__":
    main()

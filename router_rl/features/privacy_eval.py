"""Recall / false-positive measurement of the privacy detector on its labelled corpus and the simulated fleet.

The corpus (``router_rl/features/data/privacy_corpus.json``) holds *templates*: every secret is
synthetic, generated at load time from a seeded ``np.random.Generator`` in the right shape
(``{AN:36}`` = 36 random alphanumerics, ``{B64:40}``, ``{HEX:32}``, ``{CARD:4}`` = a Luhn-valid
card number starting with 4, ...), so no secret-shaped literal sits in the repository and no real
key is ever used. Each row names the pattern family and the rule set it comes from (``credit``).

    python -m router_rl.features.privacy_eval [--seed 0] [--fleet 5000] [--detector-file other/privacy.py]
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Final

import numpy as np

from router_rl.features.privacy import is_sensitive as _is_sensitive

_ALPHABETS: Final = {
    "AN": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "UAN": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "AL": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "LOW": "abcdefghijklmnopqrstuvwxyz",
    "D": "0123456789",
    "HEX": "0123456789abcdef",
    "LHEX": "0123456789abcdef",
    "B64": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "TOK": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    "BECH": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
}
_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([A-Z0-9]+)(?::(\d+))?\}")


@dataclass(frozen=True)
class CorpusItem:
    """One labelled string of the corpus.

    Attributes:
        id: Row id (``s...`` sensitive, ``n...`` clean).
        sensitive: The label.
        family: Pattern family (``github_token``, ``password_unquoted``, ``code``, ...).
        credit: Where the family / the example comes from.
        text: The expanded text (synthetic secrets filled in).
    """

    id: str
    sensitive: bool
    family: str
    credit: str
    text: str


def _luhn_complete(prefix: str, length: int, rng: np.random.Generator) -> str:
    body = prefix + "".join(str(int(d)) for d in rng.integers(0, 10, length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these digits are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def expand(template: str, rng: np.random.Generator) -> str:
    """Fill a corpus template's placeholders with synthetic values drawn from ``rng``.

    Raises:
        ValueError: an unknown placeholder (the message names it).
    """

    def one(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok in ("{{", "}}"):
            return tok[0]
        name, n = m.group(1), m.group(2)
        if name in _ALPHABETS:
            if n is None:
                raise ValueError(f"placeholder {tok}: expected a length, e.g. {{{name}:16}}")
            alpha = _ALPHABETS[name]
            return "".join(alpha[i] for i in rng.integers(0, len(alpha), int(n)))
        if name == "AKIA":
            return "AKIA"
        if name == "BASIC":
            user = "".join(chr(97 + int(i)) for i in rng.integers(0, 26, 6))
            pw = "".join(_ALPHABETS["AN"][i] for i in rng.integers(0, 62, 12))
            return base64.b64encode(f"{user}:{pw}".encode()).decode()
        if name == "CARD":
            prefix = n or "4"
            return _luhn_complete(prefix, 15 if prefix in ("34", "37") else 16, rng)
        raise ValueError(f"unknown placeholder {tok}")

    return _PLACEHOLDER.sub(one, template)


def load_corpus(seed: int = 0) -> list[CorpusItem]:
    """The labelled corpus with its synthetic secrets generated from ``seed``.

    Raises:
        ValueError: a malformed row (names the row id and the field).
    """
    raw = json.loads(resources.files("router_rl.features").joinpath("data/privacy_corpus.json").read_text())
    rng = np.random.default_rng(seed)
    out: list[CorpusItem] = []
    for i, row in enumerate(raw):
        for field in ("id", "label", "family", "credit", "template"):
            if not isinstance(row.get(field), str):
                raise ValueError(f"privacy_corpus.json row {i}: field {field!r}: expected a string")
        if row["label"] not in ("sensitive", "clean"):
            raise ValueError(f"privacy_corpus.json row {row['id']}: field 'label': expected sensitive|clean")
        try:
            text = expand(row["template"], rng)
        except ValueError as e:
            raise ValueError(f"privacy_corpus.json row {row['id']}: field 'template': {e}") from e
        out.append(CorpusItem(row["id"], row["label"] == "sensitive", row["family"], row["credit"], text))
    return out


@dataclass(frozen=True)
class DetectorScores:
    """Recall on the corpus's sensitive rows, false positives on its clean rows and on fleet prompts."""

    n_sensitive: int
    n_clean: int
    recall: float
    corpus_fpr: float
    missed: tuple[str, ...]
    false_positives: tuple[str, ...]
    fleet_prompts: int
    fleet_fpr: float
    fleet_recall: float


def score(
    seed: int = 0, fleet_tasks: int = 5000, fleet_seed: int = 11, detector: Callable[[str], bool] | None = None
) -> DetectorScores:
    """Score :func:`~router_rl.features.privacy.is_sensitive` on the corpus and the simulated fleet.

    Args:
        seed: Seed of the corpus's synthetic secrets.
        fleet_tasks: Simulated fleet prompts (``router_rl.traces.simulate.simulate_fleet``); their
            ``privacy`` column says which carry an injected secret.
        fleet_seed: Seed of the simulation.
        detector: The ``is_sensitive`` to score (default: this package's).
    """
    from router_rl.traces.simulate import simulate_fleet

    is_sensitive = detector or _is_sensitive
    items = load_corpus(seed)
    pos = [it for it in items if it.sensitive]
    neg = [it for it in items if not it.sensitive]
    missed = tuple(it.id for it in pos if not is_sensitive(it.text))
    fps = tuple(it.id for it in neg if is_sensitive(it.text))
    tasks = simulate_fleet(fleet_tasks, seed=fleet_seed).matrix().tasks
    truth = tasks["privacy"].to_numpy()
    found = np.array([is_sensitive(p) for p in tasks["prompt"].to_list()])
    return DetectorScores(
        n_sensitive=len(pos),
        n_clean=len(neg),
        recall=1 - len(missed) / len(pos),
        corpus_fpr=len(fps) / len(neg),
        missed=missed,
        false_positives=fps,
        fleet_prompts=len(truth),
        fleet_fpr=float((found & ~truth).sum() / max(1, (~truth).sum())),
        fleet_recall=float((found & truth).sum() / max(1, truth.sum())),
    )


def main() -> None:
    """Print the scores (the command quoted in ``docs/features.md``)."""
    ap = argparse.ArgumentParser(description="Recall / FPR of router_rl's privacy detector")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fleet", type=int, default=5000)
    ap.add_argument(
        "--detector-file",
        help="score the is_sensitive of another privacy.py instead (e.g. an older version, for comparison)",
    )
    args = ap.parse_args()
    detector = None
    if args.detector_file:
        spec = importlib.util.spec_from_file_location("_other_privacy", args.detector_file)
        if spec is None or spec.loader is None:
            ap.error(f"--detector-file: cannot load {args.detector_file}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["_other_privacy"] = mod
        spec.loader.exec_module(mod)
        detector = mod.is_sensitive
    s = score(args.seed, args.fleet, detector=detector)
    print(f"corpus: {s.n_sensitive} sensitive, {s.n_clean} clean strings (seed {args.seed})")
    print(f"recall {s.recall:.3f}  missed {list(s.missed)}")
    print(f"corpus false-positive rate {s.corpus_fpr:.3f}  {list(s.false_positives)}")
    print(
        f"simulated fleet: {s.fleet_prompts} prompts, recall {s.fleet_recall:.3f}, "
        f"false-positive rate {s.fleet_fpr:.4f}"
    )


if __name__ == "__main__":
    main()

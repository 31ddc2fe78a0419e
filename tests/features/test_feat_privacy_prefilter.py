"""The privacy prefilter skips only rules that cannot hit: detections equal the unfiltered scan.

The reference here is the scan without the prefilter (every token pattern, every context rule
behind its ``applies`` test, as before the prefilter existed); it is compared with
:func:`detect_sensitive` / :func:`is_sensitive` on the labelled corpus, on fleet prompts, on
random texts built from the rules' own literals and on adversarial repetitions of them.
"""

from __future__ import annotations

import numpy as np
import pytest

import router_rl.features.privacy_prefilter as pf
from router_rl.features import detect_sensitive, is_sensitive
from router_rl.features.privacy import _views
from router_rl.features.privacy_eval import expand, load_corpus
from router_rl.features.privacy_rules import CONTEXT_RULES, TOKEN_ANY_PATTERNS, TOKEN_RULES, literal_heads


def _unfiltered(text: str) -> list[tuple[str, int, int]]:
    ab, lab = _views(text)
    hits = [h for rule in TOKEN_RULES for h in rule.scan(ab, lab)]
    hits += [h for c in CONTEXT_RULES if c.applies(lab) for h in c.scan(ab, lab)]
    return sorted(set(hits), key=lambda h: (h[1], h[2], h[0]))


def _detected(text: str) -> list[tuple[str, int, int]]:
    return sorted({(f.kind, f.start, f.end) for f in detect_sensitive(text)}, key=lambda h: (h[1], h[2], h[0]))


_LITERALS = sorted({lit.text.decode() for lit in pf.literals()} | {"@acme-corp.io", "4111 1111 1111 1111", "=", ":"})


def _random_texts(n: int, seed: int) -> list[str]:
    """Texts mixing the prefilter's literals, corpus snippets, random base64 runs, digits and unicode."""
    rng = np.random.default_rng(seed)
    corpus = [it.text for it in load_corpus(seed)]
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./+=:@ '\"\n\t?&$é")
    out = []
    for _ in range(n):
        parts = []
        for _ in range(int(rng.integers(1, 12))):
            r = rng.random()
            if r < 0.35:
                parts.append(_LITERALS[int(rng.integers(len(_LITERALS)))])
            elif r < 0.5:
                parts.append(corpus[int(rng.integers(len(corpus)))])
            elif r < 0.6:
                parts.append(expand("{B64:40}", rng))
            elif r < 0.7:
                parts.append("".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(3, 20)))))
            else:
                k = int(rng.integers(1, 30))
                parts.append("".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), k)))
        out.append("".join(parts))
    return out


def test_literal_heads_expand_literals_sets_and_alternations() -> None:
    assert literal_heads(rb"ab(?:cd|e[fg])x") == (b"abcdx", b"abefx", b"abegx")
    assert literal_heads(rb"ab(?:cd|e[fg]+)x") == (b"abcd", b"abe")  # a repeat stops the expansion
    assert set(literal_heads(rb"gh(?<![a-z].)[pou]_[A-Z]{3}")) == {b"ghp_", b"gho_", b"ghu_"}
    assert literal_heads(rb"x[a-z]y") == (b"x",)  # a range stops the expansion
    assert literal_heads(rb"[a-z]") == (b"",)  # nothing required: the empty head (always runs)
    assert literal_heads(rb"(?i)abc") == (b"",)


def test_every_token_match_starts_with_one_of_its_heads() -> None:
    texts = [it.text for it in load_corpus(0)] + _random_texts(300, 1)
    n_matches = 0
    for text in texts:
        ab, _ = _views(text)
        for rule in TOKEN_RULES:
            for pat, heads in zip(rule.patterns, rule.heads, strict=True):
                for m in pat.finditer(ab):
                    assert any(ab.startswith(h, m.start()) for h in heads), (rule.kind, heads)
                    n_matches += 1
    assert n_matches > 100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_mask_equals_its_reference(seed: int) -> None:
    pytest.importorskip("numba")
    texts = _random_texts(400, seed) + [it.text for it in load_corpus(seed)] + ["", "a", "@", "@x", "1" * 13]
    n_set = 0
    for text in texts:
        ab, lab = _views(text)
        got = pf.rule_mask(ab, lab)
        assert got == pf.mask_reference(ab, lab), text[:80]
        n_set += bin(got).count("1")
    assert n_set > 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_detections_equal_the_unfiltered_scan(seed: int) -> None:
    texts = _random_texts(500, seed) + [it.text for it in load_corpus(seed)]
    n_hits = 0
    for text in texts:
        ref = _unfiltered(text)
        assert _detected(text) == ref, text[:120]
        assert is_sensitive(text) == bool(ref), text[:120]
        n_hits += len(ref)
    assert n_hits > 200  # the texts do exercise the rules


def test_detections_equal_the_unfiltered_scan_on_fleet_prompts() -> None:
    from router_rl.traces.simulate import simulate_fleet

    prompts = simulate_fleet(300, seed=5).matrix().tasks["prompt"].to_list()
    for text in prompts:
        ref = _unfiltered(text)
        assert _detected(text) == ref
        assert is_sensitive(text) == bool(ref)


def test_every_rule_bit_is_reachable_and_prunes() -> None:
    """Each rule has a condition that is set on its corpus positives and clear on plain prose."""
    prose = "Please review the change and summarise the risks for the release notes."
    ab, lab = _views(prose)
    mask = pf.rule_mask(ab, lab)
    assert mask == pf.always_run()  # nothing in plain prose can hit: every conditioned rule skipped
    seen = 0
    for it in load_corpus(0):
        a, la = _views(it.text)
        seen |= pf.rule_mask(a, la)
    context_bits = sum(1 << (pf.CONTEXT_BASE + k) for k in range(len(CONTEXT_RULES)))
    assert seen & context_bits == context_bits  # every context rule's condition holds on its positives
    for g, (heads, _) in enumerate(TOKEN_ANY_PATTERNS):
        for h in heads:  # each head alone sets exactly its group's bit among the token groups
            a, la = _views(" " + h.decode() + " ")
            assert pf.rule_mask(a, la) & ((1 << pf.CONTEXT_BASE) - 1) == 1 << g, h


def test_adversarial_repetitions_keep_detections() -> None:
    for lit in _LITERALS:
        text = (lit + " ") * 300 + lit * 50
        assert _detected(text) == _unfiltered(text)


def test_without_numba_every_rule_runs_and_detections_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _random_texts(150, 7)
    expected = [_detected(t) for t in texts]
    monkeypatch.setattr(pf, "_kernel", lambda: None)
    ab, lab = _views("plain text")
    assert pf.rule_mask(ab, lab) == pf.ALL_RULES
    assert [_detected(t) for t in texts] == expected

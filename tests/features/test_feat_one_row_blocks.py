"""The one-call text blocks (``features/one_row.py``) equal the separate forms, for every setting."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.features import EncoderConfig
from router_rl.features import one_row as one_row_mod
from router_rl.features.complexity import COMPLEXITY_KEYWORD_GROUPS, keyword_groups_one
from router_rl.features.jit import kernel_backend
from router_rl.features.text_stats import ERROR_KEYWORDS, STAT_NAMES, TEST_KEYWORDS
from router_rl.traces.simulate import simulate_fleet

pytestmark = pytest.mark.skipif(kernel_backend() != "numba", reason="numba switched off")

_ODD = ["", "a", "é", "ÀÉÎ ünïcode 🚀 İstanbul", "```py\ndef f():\n  return 1;\n```", "mockmockmock", "x" * 5000,
        "\ud800 lone surrogate", "  at a.b(c.java:1)\n  File \"a.py\", line 3\n@@ -1 +1 @@", "\n" * 4100]
_GROUPS = one_row_mod.KeywordGroups([TEST_KEYWORDS, ERROR_KEYWORDS, *COMPLEXITY_KEYWORD_GROUPS.values()])


def _texts() -> list[str]:
    return _ODD + [p.lower() for p in simulate_fleet(200, seed=4).matrix().tasks["prompt"].to_list()]


@pytest.mark.parametrize(
    "cfg",
    [EncoderConfig(), EncoderConfig(n_word_hash=0), EncoderConfig(n_char_hash=0, seed=3),
     EncoderConfig(n_word_hash=0, n_char_hash=0), EncoderConfig(word_ngram_range=(1, 3), char_ngram_range=(2, 7))],
)
@pytest.mark.parametrize("with_groups", [True, False])
def test_one_call_equals_the_separate_forms(cfg: EncoderConfig, with_groups: bool) -> None:
    groups = _GROUPS if with_groups else None
    nh = cfg.n_word_hash + cfg.n_char_hash
    written_any = False
    for t in _texts():
        enc = t.encode("utf-8", "surrogatepass")
        row1 = np.zeros(nh + 12, dtype=np.float32)
        row2 = np.zeros(nh + 12, dtype=np.float32)
        tot1, st1, written, _ = one_row_mod.text_blocks_one(row1, t, enc, cfg, groups, nh + 2 if with_groups else -1)
        tot2, st2, _, _ = one_row_mod._separately(row2, t, enc, cfg, groups)
        assert row1[:nh].tobytes() == row2[:nh].tobytes() and tot1 == tot2 and st1 == st2, t[:40]
        if written:
            assert st1 is not None
            want = np.log1p(np.array([st1[s] for s in STAT_NAMES], dtype=np.float64)).astype(np.float32)
            assert row1[nh + 2 : nh + 11].tobytes() == want.tobytes(), t[:40]
            written_any = True
        else:  # nothing beyond the hashed blocks is touched
            assert not row1[nh:].any()
            assert not with_groups or not t.isascii() or max(st1.values()) >= 4096  # type: ignore[union-attr]
        if with_groups:
            assert tot1[0] == sum(t.count(k) for k in TEST_KEYWORDS)
            assert sum(1 for v in tot1[2:] if v) == keyword_groups_one(t)
    assert written_any == with_groups


def test_the_numpy_form_runs_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = one_row_mod._separately

    def spy(*a: object) -> object:
        calls.append(1)
        return real(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(one_row_mod, "_separately", spy)
    row = np.zeros(530, dtype=np.float32)
    one_row_mod.text_blocks_one(row, "def f(): pass", b"def f(): pass", EncoderConfig(), _GROUPS, 512)
    assert calls == []
    monkeypatch.setattr(one_row_mod, "_kernel", lambda: None)
    row = np.zeros(530, dtype=np.float32)
    text = "def f(): pass"
    _, st, written, _ = one_row_mod.text_blocks_one(row, text, text.encode(), EncoderConfig(), _GROUPS, 512)
    assert calls == [1] and st is not None and not written and np.isclose(np.linalg.norm(row[:256]), 1.0)


@pytest.mark.parametrize(("size", "log_col", "dtype"), [(100, -1, np.float32), (520, 515, np.float32),
                                                         (520, 0, np.float64)])
def test_a_row_that_cannot_hold_the_blocks_is_refused(size: int, log_col: int, dtype: type) -> None:
    row = np.zeros(size, dtype=dtype)
    with pytest.raises(ValueError, match="cannot hold the blocks"):
        one_row_mod.text_blocks_one(row, "abc def", b"abc def", EncoderConfig(), _GROUPS, log_col)
    assert not row.any()


def test_a_small_row_without_the_log_block_is_fine() -> None:
    """No hashing, no structure block: the row is only as long as the other blocks (here 5)."""
    cfg = EncoderConfig(n_word_hash=0, n_char_hash=0)
    row = np.zeros(5, dtype=np.float32)
    totals, stats, written, _ = one_row_mod.text_blocks_one(row, "def f(): pass", b"def f(): pass", cfg, _GROUPS)
    assert not written and not row.any() and stats is not None and totals[0] == 0


def test_groups_zero_and_one_are_required() -> None:
    with pytest.raises(ValueError, match="groups 0 and 1"):
        one_row_mod.KeywordGroups([("a",)])


def test_the_privacy_verdict_of_the_one_call_is_is_sensitive() -> None:
    """Same verdict as the standalone detector on the labelled corpus (in prompts) and the fleet's prompts."""
    from router_rl.features import is_sensitive
    from router_rl.features.privacy_eval import load_corpus

    cfg = EncoderConfig()
    corpus = [it.text for it in load_corpus(seed=0)]
    texts = corpus + [f"Please fix the test.\n{t}\nThanks" for t in corpus]
    texts += [*simulate_fleet(200, seed=5).matrix().tasks["prompt"].to_list(), "", "Ünïcode password=Hunter2Secret",
              "\u212a password=Hunter2Secret", "\u212aelvin"]  # the Kelvin sign lower-cases to ASCII "k"
    seen = {True: 0, False: 0}
    for t in texts:
        low = t.lower()
        row = np.zeros(cfg.n_word_hash + cfg.n_char_hash + 9, dtype=np.float32)
        _, _, _, sens = one_row_mod.text_blocks_one(row, low, low.encode("utf-8", "surrogatepass"), cfg, _GROUPS,
                                                    -1, t)
        if not t.isascii():
            assert sens is None  # the caller scans it (its privacy views are not its UTF-8 bytes)
            continue
        assert sens == is_sensitive(t), t[:60]
        seen[sens] += 1
    assert seen[True] > 100 and seen[False] > 100

"""``transform_one`` (the live router's single-record fast path) equals ``transform`` row for row, bitwise."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from router_rl.features import EncoderConfig, FeatureEncoder, complexity_scores
from router_rl.features.complexity import complexity_one, keyword_group_counts, keyword_groups_one
from router_rl.features.hashing import encode_texts, hash_ngrams, hash_ngrams_one
from router_rl.features.text_stats import prompt_stats, prompt_stats_one

ODD_PROMPTS = [
    "",
    "a",
    "ab",
    "  \n\t ",
    "é",
    "ÀÉÎ ünïcode 🚀 text with İstanbul (lower() changes length)",
    "```python\ndef f():\n    return 1;\n}\n```",
    "Traceback (most recent call last):\n  File \"a.py\", line 3, in f\nKeyError: x\n@@ -1,2 +1,3 @@\n",
    "refactor the architecture; fix the race condition and the memory leak; migrate; fuzz it",
    "x" * 6000,
    "word " * 900,
    "mail jane@acme.io, card 4111 1111 1111 1111, AKIAIOSFODNN7EXAMPLE",
]


@pytest.fixture(scope="module")
def fleet() -> pl.DataFrame:
    from router_rl.traces.simulate import simulate_fleet

    return simulate_fleet(400, seed=5).matrix().tasks


def _frame(fleet: pl.DataFrame) -> pl.DataFrame:
    odd = pl.DataFrame(
        {
            "prompt": [*ODD_PROMPTS, None],
            "agent_type": ["test-generator", "never-seen", None, *(["code-reviewer"] * (len(ODD_PROMPTS) - 2))],
            "category": ["unit"] * (len(ODD_PROMPTS) + 1),
            "max_tokens": [None, 0, 2001, 4001, 5000, *([512] * (len(ODD_PROMPTS) - 4))],
            "n_messages": [0, 1, 6, 11, *([2] * (len(ODD_PROMPTS) - 3))],
        },
        schema_overrides={"max_tokens": pl.Int64, "n_messages": pl.Int64},
    )
    cols = ["prompt", "agent_type", "category", "max_tokens", "n_messages"]
    return pl.concat([fleet.select(cols), odd], how="vertical_relaxed")


@pytest.mark.parametrize(
    "cfg",
    [
        EncoderConfig(),
        EncoderConfig(n_word_hash=0, n_char_hash=64, char_ngram_range=(1, 7), seed=3),
        EncoderConfig(n_word_hash=32, n_char_hash=0, word_ngram_range=(1, 4), use_complexity=False),
        EncoderConfig(use_structure=False, numeric_columns=("max_tokens_num",), categorical_columns=("agent_type",)),
    ],
    ids=["default", "char-only", "word-only", "no-structure+numeric"],
)
def test_transform_one_equals_transform_bitwise(fleet: pl.DataFrame, cfg: EncoderConfig) -> None:
    tasks = _frame(fleet).with_columns(pl.col("max_tokens").cast(pl.Float64).alias("max_tokens_num"))
    enc = FeatureEncoder(cfg).fit(tasks.head(300))
    X = enc.transform(tasks)
    for i, rec in enumerate(tasks.to_dicts()):
        one = enc.transform_one(rec)
        assert one.dtype == np.float32 and one.shape == (enc.dim,)
        assert one.tobytes() == X[i].tobytes(), (i, np.flatnonzero(one != X[i])[:5])
        if i % 50 == 0:  # the router calls transform_records([record]): same path
            assert enc.transform_records([rec]).tobytes() == X[i : i + 1].tobytes()


def test_lone_surrogate_record_equals_batch(fleet: pl.DataFrame) -> None:
    """Polars frames cannot hold lone surrogates; records can (the router's JSON may carry one)."""
    enc = FeatureEncoder(EncoderConfig().restricted_to(["prompt"])).fit(fleet.select("prompt"))
    rec = {"prompt": "\ud800 lone surrogate password=Hunter2Secret"}
    other = {"prompt": "plain"}
    assert enc.transform_one(rec).tobytes() == enc.transform_records([rec, other])[0].tobytes()
    assert enc.transform_one(rec)[enc.feature_names.index("privacy:sensitive")] == 1.0


def test_messages_record_equals_batch(fleet: pl.DataFrame) -> None:
    enc = FeatureEncoder(EncoderConfig().restricted_to(["prompt"])).fit(fleet.select("prompt"))
    rec = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "password=Hunter2"}]}
    assert enc.transform_one(rec).tobytes() == enc.transform_records([rec, rec])[0].tobytes()


def test_scalar_helpers_match_batch(fleet: pl.DataFrame) -> None:
    prompts = [p.lower() for p in [*fleet["prompt"].to_list()[:150], *ODD_PROMPTS]]
    stats = prompt_stats(prompts)
    W, C = hash_ngrams(encode_texts(prompts), n_word=64, n_char=64, seed=9)
    groups = keyword_group_counts(prompts)
    for i, p in enumerate(prompts):
        one = prompt_stats_one(p)
        assert {k: int(v[i]) for k, v in stats.items()} == one
        w, c = hash_ngrams_one(encode_texts([p])[0], n_word=64, n_char=64, seed=9)
        assert w.tobytes() == W[i].tobytes() and c.tobytes() == C[i].tobytes()
        assert keyword_groups_one(p) == groups[i]
    for mt, nm in ((None, 1), (2500, 7), (9000, 12), (0, 0)):
        scores, levels = complexity_scores(prompts, max_tokens=[mt] * len(prompts), n_messages=[nm] * len(prompts))
        for i, p in enumerate(prompts):
            st = prompt_stats_one(p)
            has_code = st["code_fences"] > 0 or st["code_lines"] >= 2
            s, lv = complexity_one(st["chars"], float("nan") if mt is None else float(mt), nm, has_code, groups[i])
            assert (s, lv) == (int(scores[i]), levels[i].rank)


def test_transform_one_reports_bad_fields() -> None:
    from router_rl.features import FeatureInputError

    enc = FeatureEncoder(EncoderConfig().restricted_to(["prompt"])).fit(pl.DataFrame({"prompt": ["a b c"]}))
    with pytest.raises(FeatureInputError, match="record 0, field 'max_tokens'"):
        enc.transform_one({"prompt": "x", "max_tokens": "many"})
    with pytest.raises(FeatureInputError, match="record 0: expected a dict"):
        enc.transform_one(["not", "a", "dict"])  # type: ignore[arg-type]

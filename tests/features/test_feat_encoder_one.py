"""``transform_one`` (the live router's single-record fast path) equals ``transform`` row for row, bitwise.

Also: its compiled (numba) kernels equal their numpy twins, and numba is imported only on first use.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import router_rl.features.hashing as hashing
import router_rl.features.one_row as one_row
import router_rl.features.text_stats as text_stats
from router_rl.features import EncoderConfig, FeatureEncoder, complexity_scores
from router_rl.features.complexity import complexity_one, keyword_group_counts, keyword_groups_one
from router_rl.features.encoder import _one_pass_groups
from router_rl.features.hashing import encode_texts, hash_ngrams, hash_ngrams_one
from router_rl.features.jit import kernel_backend
from router_rl.features.text_stats import KeywordTable, prompt_stats, prompt_stats_one, substring_counts_one

ODD_PROMPTS = [
    "",
    "a",
    "ab",
    "  \n\t ",
    "é",
    "ÀÉÎ ünïcode 🚀 text with İstanbul (lower() changes length)",
    "\u212a is the Kelvin sign: its lower case is the ASCII k; password=Hunter2Secret",
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
        EncoderConfig(n_word_hash=0, n_char_hash=0, use_structure=False, categorical_columns=()),  # a 4-wide row
    ],
    ids=["default", "char-only", "word-only", "no-structure+numeric", "complexity-only"],
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


# --- the compiled (numba) kernels and their numpy twins -------------------------------------

HASH_CFGS = [
    {"n_word": 256, "n_char": 256},
    {"n_word": 0, "n_char": 64, "char_ngram_range": (1, 7), "seed": 3},
    {"n_word": 32, "n_char": 0, "word_ngram_range": (1, 4)},
    {"n_word": 7, "n_char": 5, "word_ngram_range": (2, 3), "char_ngram_range": (2, 2), "seed": 12345},
]


def _adversarial_bytes() -> list[bytes]:
    rng = np.random.default_rng(11)
    out = [p.lower().encode("utf-8", "surrogatepass") for p in ODD_PROMPTS]
    alphabet = np.frombuffer(b"ab _9.-x\n\t \r\x0b\x0c\xc3\xa9", dtype=np.uint8)
    for _ in range(150):
        out.append(bytes(rng.integers(0, 256, int(rng.integers(0, 400))).astype(np.uint8)))  # any byte
        out.append(bytes(rng.choice(alphabet, int(rng.integers(0, 400)))))  # runs of words / whitespace
    return out


def test_numba_is_the_backend_here_and_is_not_imported_by_the_package() -> None:
    assert kernel_backend() == "numba"  # numba is a core dependency: the compiled path is what runs
    code = (
        "import sys, router_rl, router_rl.features, router_rl.policies.lgbm, router_rl.policies.treeeval;"
        "from router_rl.features import EncoderConfig, FeatureEncoder; FeatureEncoder(EncoderConfig());"
        "print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("cfg", HASH_CFGS, ids=["default", "char-1-7", "word-1-4", "tiny"])
def test_compiled_and_numpy_one_row_hashing_equal_the_batch_bitwise(cfg: dict) -> None:
    texts = _adversarial_bytes()
    W, C = hash_ngrams(texts, **cfg)
    assert hashing._one_row_kernel() is not None
    for i, t in enumerate(texts):
        w, c = hash_ngrams_one(t, **cfg)  # compiled
        nw, nc = np.zeros(cfg["n_word"]), np.zeros(cfg["n_char"])
        if t:
            rng_w = cfg.get("word_ngram_range", (1, 2))
            rng_c = cfg.get("char_ngram_range", (3, 5))
            hashing._hash_one_numpy(t, nw, nc, rng_w, rng_c, cfg.get("seed", 0))  # the numpy twin
        assert w.tobytes() == W[i].tobytes() == nw.tobytes(), (i, t[:40])
        assert c.tobytes() == C[i].tobytes() == nc.tobytes(), (i, t[:40])


_ONE_PASS_KEYWORDS = _one_pass_groups().table.keywords


def test_one_pass_substring_counts_equal_str_count() -> None:
    rng = np.random.default_rng(2)
    pieces = [*_ONE_PASS_KEYWORDS, "mockmock", "errorerror", "stack traceback", "eee", "é", "🚀", " ", "\n", "x"]
    texts = ["", "mockmockmock", "errorrorerror", "tracebacktraceback", "aaaa"] + [
        "".join(rng.choice(pieces, int(rng.integers(0, 60)))) for _ in range(300)
    ]
    table = KeywordTable(_ONE_PASS_KEYWORDS)
    assert table.ascii and text_stats._substring_kernel() is not None
    for t in texts:
        want = [t.count(k) for k in _ONE_PASS_KEYWORDS]
        assert substring_counts_one(t, t.encode("utf-8", "surrogatepass"), table) == want, t[:60]
    odd = KeywordTable(("é", "a"))  # non-ASCII / 1-character keywords: counted on the text itself
    assert not odd.ascii
    assert substring_counts_one("éaé", "éaé".encode(), odd) == [2, 1]


def test_transform_one_without_numba_equals_transform_bitwise(fleet: pl.DataFrame, monkeypatch) -> None:
    """The numpy twins (numba absent or ROUTER_RL_NUMBA=0) give the same features."""
    tasks = _frame(fleet)
    enc = FeatureEncoder(EncoderConfig()).fit(tasks.head(300))
    X = enc.transform(tasks)
    with_numba = [enc.transform_one(rec) for rec in tasks.to_dicts()]
    for mod, name in ((hashing, "_one_row_kernel"), (text_stats, "_substring_kernel"), (text_stats, "_stats_kernel"),
                      (one_row, "_kernel")):
        assert getattr(mod, name)() is not None
        monkeypatch.setattr(mod, name, lambda: None)
    for i, rec in enumerate(tasks.to_dicts()):
        one = enc.transform_one(rec)
        assert one.tobytes() == X[i].tobytes() == with_numba[i].tobytes(), i


def test_env_var_switches_to_the_numpy_twins() -> None:
    code = (
        "from router_rl.features.jit import kernel_backend; from router_rl.features.hashing import _one_row_kernel;"
        "print(kernel_backend(), _one_row_kernel() is None)"
    )
    env = {**os.environ, "ROUTER_RL_NUMBA": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["numpy", "True"]


def test_warm_up_compiles_every_kernel_before_the_first_request() -> None:
    code = (
        "from router_rl.features.jit import warm_up; print(warm_up());"
        "from router_rl.features._kernels import hash_one_row, substring_counts, structure_counts, encode_text_row;"
        "from router_rl.policies._tree_kernel import predict_one;"
        "print(*(len(k.signatures) for k in (hash_one_row, substring_counts, structure_counts, encode_text_row,"
        " predict_one)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "numba" and all(int(v) >= 1 for v in lines[-1].split())

"""FeatureEncoder: shapes, parity frame/records, unknown bucket, persistence, fingerprints, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router_rl.features import (
    EncoderConfig,
    EncoderLoadError,
    EncoderNotFittedError,
    FeatureEncoder,
    FeatureInputError,
)
from router_rl.features.encoder import COMPLEXITY_NAMES, ENCODER_VERSION, STRUCTURE_NAMES, UNKNOWN

SMALL = EncoderConfig(n_word_hash=32, n_char_hash=32, numeric_columns=["loc"])


def _tasks() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": ["t0", "t1", "t2", "t3"],
            "prompt": [
                "Generate pytest unit tests for src/cart.py\n```python\ndef total(x):\n    return sum(x)\n```",
                'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\nValueError: boom',
                None,
                "Security audit of the distributed auth service; refactor for concurrency",
            ],
            "agent_type": ["test-generator", "flaky-hunter", "test-generator", None],
            "category": ["unit", "debug", "unit", "security"],
            "max_tokens": [512, None, 1024, 8000],
            "n_messages": [1, 3, None, 12],
            "loc": [120.0, None, 40.0, 900.0],
        }
    )


@pytest.fixture(scope="module")
def fitted() -> FeatureEncoder:
    return FeatureEncoder(SMALL).fit(_tasks())


def test_shape_names_dtype(fitted: FeatureEncoder) -> None:
    X = fitted.transform(_tasks())
    assert X.dtype == np.float32
    assert X.shape == (4, fitted.dim) == (4, len(fitted.feature_names))
    expected_dim = 32 + 32 + len(STRUCTURE_NAMES) + len(COMPLEXITY_NAMES) + (2 + 1) + (3 + 1) + 1
    assert fitted.dim == expected_dim
    assert len(set(fitted.feature_names)) == fitted.dim
    assert np.isfinite(X).all()


def _col(enc: FeatureEncoder, X: np.ndarray, name: str) -> np.ndarray:
    return X[:, enc.feature_names.index(name)]


def test_feature_values(fitted: FeatureEncoder) -> None:
    X = fitted.transform(_tasks())
    names = fitted.feature_names
    text = X[:, :64]
    # missing prompt -> zero text features, flagged
    assert not text[2].any() and _col(fitted, X, "struct:prompt_missing").tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(np.linalg.norm(X[[0, 1, 3], :32], axis=1), 1.0, rtol=1e-6)
    assert _col(fitted, X, "struct:log_code_fences")[0] == pytest.approx(np.log1p(2))
    assert _col(fitted, X, "struct:has_code").tolist() == [1, 0, 0, 0]
    assert _col(fitted, X, "struct:log_stack_trace_lines")[1] == pytest.approx(np.log1p(2))
    assert _col(fitted, X, "struct:log_file_paths")[0] == pytest.approx(np.log1p(1))
    assert _col(fitted, X, "struct:max_tokens_missing").tolist() == [0, 1, 0, 0]
    assert _col(fitted, X, "struct:log_n_messages").tolist() == pytest.approx(np.log1p([1, 3, 1, 12]).tolist())
    # complexity one-hot: row 3 = keywords(+4) + max_tokens(+2) + messages(+2) = 8 -> very complex
    assert _col(fitted, X, "cx:very_complex").tolist() == [0, 0, 0, 1]
    assert _col(fitted, X, "cx:score")[3] == pytest.approx(8 / 11)
    cx = X[:, [names.index(n) for n in COMPLEXITY_NAMES[1:]]]
    assert cx.sum(axis=1).tolist() == [1, 1, 1, 1]
    # categorical: null agent_type -> unknown bucket
    assert _col(fitted, X, f"cat:agent_type={UNKNOWN}").tolist() == [0, 0, 0, 1]
    assert _col(fitted, X, "cat:agent_type=test-generator").tolist() == [1, 0, 1, 0]
    # numeric: standardised on the fitted values, missing -> 0
    loc = _col(fitted, X, "num:loc")
    vals = np.array([120.0, 40.0, 900.0])
    assert loc[1] == 0.0
    np.testing.assert_allclose(loc[[0, 2, 3]], (vals - vals.mean()) / vals.std(), rtol=1e-5)


def test_unknown_category_bucket(fitted: FeatureEncoder) -> None:
    x = fitted.transform_one({"prompt": "x", "agent_type": "never-seen", "category": "unit", "loc": 1})
    names = fitted.feature_names
    assert x[names.index(f"cat:agent_type={UNKNOWN}")] == 1.0
    assert sum(x[i] for i, n in enumerate(names) if n.startswith("cat:agent_type=")) == 1.0
    assert x[names.index("cat:category=unit")] == 1.0


def test_records_equal_frame_and_one(fitted: FeatureEncoder) -> None:
    df = _tasks()
    X = fitted.transform(df)
    R = fitted.transform_records(df.to_dicts())
    np.testing.assert_array_equal(X, R)
    # absent keys == null columns
    recs = [{k: v for k, v in r.items() if v is not None} for r in df.to_dicts()]
    np.testing.assert_array_equal(X, fitted.transform_records(recs))
    for i, r in enumerate(recs):
        np.testing.assert_array_equal(fitted.transform_one(r), X[i])


def test_messages_give_text_and_count(fitted: FeatureEncoder) -> None:
    msgs = [
        {"role": "system", "content": "You are a QE agent."},
        {"role": "user", "content": "Write tests for cart.py"},
    ]
    via_msgs = fitted.transform_one({"messages": msgs, "agent_type": "x", "category": "unit"})
    via_prompt = fitted.transform_one(
        {
            "prompt": "You are a QE agent.\n\nWrite tests for cart.py",
            "n_messages": 2,
            "agent_type": "x",
            "category": "unit",
        }
    )
    np.testing.assert_array_equal(via_msgs, via_prompt)
    df = pl.DataFrame(
        {"messages": [msgs], "agent_type": ["x"], "category": ["unit"], "loc": [None]},
        schema_overrides={"loc": pl.Float64},
    )
    np.testing.assert_array_equal(fitted.transform(df)[0], via_msgs)


def test_save_load_identity(fitted: FeatureEncoder, tmp_path: Path) -> None:
    p = fitted.save(tmp_path / "sub" / "encoder.json")
    loaded = FeatureEncoder.load(p, expected_fingerprint=fitted.fingerprint)
    assert loaded.fingerprint == fitted.fingerprint
    assert loaded.config == fitted.config
    assert loaded.feature_names == fitted.feature_names
    np.testing.assert_array_equal(loaded.transform(_tasks()), fitted.transform(_tasks()))
    data = json.loads(p.read_text())
    assert data["version"] == ENCODER_VERSION == 2 and data["dim"] == fitted.dim


def test_load_refusals(fitted: FeatureEncoder, tmp_path: Path) -> None:
    p = fitted.save(tmp_path / "encoder.json")
    data = json.loads(p.read_text())
    with pytest.raises(EncoderLoadError, match="not found"):
        FeatureEncoder.load(tmp_path / "nope.json")
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(EncoderLoadError, match=r"encoder version 99, but this router_rl reads version 2"):
        FeatureEncoder.load(bad)
    data["state"]["vocab"]["category"].append("zzz")
    bad.write_text(json.dumps(data))
    with pytest.raises(EncoderLoadError, match="fingerprint"):
        FeatureEncoder.load(bad)
    bad.write_text("{not json")
    with pytest.raises(EncoderLoadError, match="invalid JSON"):
        FeatureEncoder.load(bad)
    with pytest.raises(EncoderLoadError, match="trained with encoder 0000"):
        FeatureEncoder.load(p, expected_fingerprint="0000")


def test_fingerprint_changes_with_config_and_state(fitted: FeatureEncoder) -> None:
    df = _tasks()
    same = FeatureEncoder(EncoderConfig(n_word_hash=32, n_char_hash=32, numeric_columns=("loc",))).fit(df)
    assert same.fingerprint == fitted.fingerprint
    variants = [
        SMALL.model_copy(update={"n_word_hash": 33}),
        SMALL.model_copy(update={"seed": 1}),
        SMALL.model_copy(update={"char_ngram_range": (2, 4)}),
        SMALL.model_copy(update={"use_structure": False}),
    ]
    fps = {FeatureEncoder(c).fit(df).fingerprint for c in variants}
    assert len(fps) == len(variants) and fitted.fingerprint not in fps
    other_data = FeatureEncoder(SMALL).fit(df.head(2))  # different vocabulary / scaling
    assert other_data.fingerprint != fitted.fingerprint


_FP_CODE = """
import polars as pl, hashlib
from router_rl.features import FeatureEncoder, EncoderConfig
df = pl.DataFrame(
    {"prompt": ["assert foo() == 1", "refactor the api"], "agent_type": ["a", "b"], "category": ["u", "v"]}
)
enc = FeatureEncoder(EncoderConfig(n_word_hash=64, n_char_hash=64)).fit(df)
print(enc.fingerprint, hashlib.sha256(enc.transform(df).tobytes()).hexdigest())
"""


def test_deterministic_across_processes() -> None:
    outs = {
        subprocess.run(
            [sys.executable, "-c", _FP_CODE], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": s}
        ).stdout.strip()
        for s in ("1", "999")
    }
    assert len(outs) == 1


def test_missing_columns_and_restricted_config() -> None:
    df = _tasks().drop("agent_type")
    with pytest.raises(FeatureInputError, match=r"FeatureEncoder.fit: missing column\(s\) \['agent_type'\]"):
        FeatureEncoder(SMALL).fit(df)
    cfg = SMALL.restricted_to(df.columns)
    assert cfg.categorical_columns == ("category",)
    enc = FeatureEncoder(cfg).fit(df)
    with pytest.raises(FeatureInputError, match=r"FeatureEncoder.transform: missing column\(s\) \['loc'\]"):
        enc.transform(df.drop("loc"))


def test_bad_inputs_are_named(fitted: FeatureEncoder) -> None:
    with pytest.raises(FeatureInputError, match="record 1, field 'prompt': expected a string"):
        fitted.transform_records([{"prompt": "ok"}, {"prompt": 42}])
    with pytest.raises(FeatureInputError, match="record 0, field 'max_tokens': expected >= 0"):
        fitted.transform_records([{"max_tokens": -5}])
    with pytest.raises(FeatureInputError, match="record 0, field 'loc': expected a number"):
        fitted.transform_records([{"loc": "big"}])
    with pytest.raises(FeatureInputError, match=r"record 0, field 'messages\[0\].content'"):
        fitted.transform_records([{"messages": [{"role": "user", "content": 3}]}])
    with pytest.raises(FeatureInputError, match="column 'prompt': expected strings"):
        fitted.transform(_tasks().with_columns(pl.lit(1).alias("prompt")))
    with pytest.raises(FeatureInputError, match="row 1, column 'max_tokens': expected >= 0"):
        fitted.transform(_tasks().with_columns(pl.Series("max_tokens", [1, -2, 3, -4])))
    with pytest.raises(FeatureInputError, match="column 'loc': expected a numeric column"):
        FeatureEncoder(SMALL).fit(_tasks().with_columns(pl.col("loc").cast(pl.Utf8)))
    with pytest.raises(FeatureInputError, match="no rows"):
        FeatureEncoder(SMALL).fit(_tasks().head(0))


def test_unfitted_and_config_validation() -> None:
    enc = FeatureEncoder(SMALL)
    with pytest.raises(EncoderNotFittedError):
        _ = enc.dim
    with pytest.raises(EncoderNotFittedError):
        enc.transform(_tasks())
    for bad in (
        {"char_ngram_range": (3, 9)},
        {"word_ngram_range": (2, 1)},
        {"n_word_hash": -1},
        {"categorical_columns": ["prompt"]},
        {"categorical_columns": ["a", "a"]},
        {"categorical_columns": ["a"], "numeric_columns": ["a"]},
        {"bogus": 1},
    ):
        with pytest.raises(ValueError):
            EncoderConfig(**bad)


def test_max_categories_keeps_most_frequent() -> None:
    df = pl.DataFrame({"prompt": ["p"] * 6, "agent_type": ["a", "a", "a", "b", "b", "c"], "category": ["x"] * 6})
    enc = FeatureEncoder(EncoderConfig(n_word_hash=0, n_char_hash=0, max_categories=2)).fit(df)
    assert [n for n in enc.feature_names if n.startswith("cat:agent_type")] == [
        "cat:agent_type=a",
        "cat:agent_type=b",
        f"cat:agent_type={UNKNOWN}",
    ]
    x = enc.transform_one({"agent_type": "c", "category": "x"})
    assert x[enc.feature_names.index(f"cat:agent_type={UNKNOWN}")] == 1.0


def test_integer_and_bool_categories_match_records() -> None:
    df = pl.DataFrame({"prompt": ["a", "b"], "agent_type": [1, 2], "category": [True, False]})
    enc = FeatureEncoder(EncoderConfig(n_word_hash=8, n_char_hash=8)).fit(df)
    np.testing.assert_array_equal(enc.transform(df), enc.transform_records(df.to_dicts()))
    assert "cat:agent_type=1" in enc.feature_names and "cat:category=true" in enc.feature_names


def test_privacy_flag_column_marks_secrets_only() -> None:
    enc = FeatureEncoder(EncoderConfig(categorical_columns=[])).fit(pl.DataFrame({"prompt": ["x"]}))
    col = enc.feature_names.index("privacy:sensitive")
    X = enc.transform_records(
        [
            {"prompt": "deploy with key AKIAQWERTYUIOPASDFGH here"},
            {"prompt": "password_field = form.get('password')"},
            {"prompt": None},
        ]
    )
    assert X[:, col].tolist() == [1.0, 0.0, 0.0]

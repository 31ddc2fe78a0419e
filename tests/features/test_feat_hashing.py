"""Hashed n-gram features: exactness against a pure-Python reference, batching, stability."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from router_rl.features import hashing as H

MASK = (1 << 64) - 1


def _mix_py(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    x ^= x >> 31
    return x


def _slot_py(key: int, tag: int, n_buckets: int) -> tuple[int, int]:
    h = key ^ tag
    h = (h * 0xBF58476D1CE4E5B9) & MASK
    h ^= h >> 29
    h = (h * 0x94D049BB133111EB) & MASK
    slot = ((h >> 32) * 2 * n_buckets) >> 32
    return slot // 2, -1 if slot % 2 else 1


def _reference(text: str, n_word: int, n_char: int, wr: tuple[int, int], cr: tuple[int, int], seed: int):
    """Straightforward per-n-gram implementation of the documented algorithm."""
    b = text.encode("utf-8", "surrogatepass")
    wtag, ctag = int(H._seed_tag(seed, 1)), int(H._seed_tag(seed, 2))
    # words
    is_word = [bool(H._WORD_TABLE[c]) for c in b]
    toks, i = [], 0
    while i < len(b):
        if is_word[i]:
            j = i
            while j < len(b) and is_word[j]:
                j += 1
            if j - i >= H.MIN_WORD_BYTES:
                seg = 0
                for k, c in enumerate(b[i:j]):
                    seg = (seg + c * pow(H._Q_INV, k, 1 << 64)) & MASK
                toks.append(_mix_py((seg + (j - i) * int(H._LEN_MUL)) & MASK))
            i = j
        else:
            i += 1
    word = np.zeros(n_word)
    for n in range(wr[0], wr[1] + 1):
        for s in range(len(toks) - n + 1):
            key = toks[s]
            for m in range(1, n):
                key = _mix_py((key * int(H._COMBINE) + toks[s + m] + m + 1) & MASK)
            bucket, sign = _slot_py(key, wtag, n_word)
            word[bucket] += sign
    # chars: collapse whitespace runs to one space
    out, prev_ws = [], False
    for c in b:
        ws = bool(H._WS_TABLE[c])
        if ws and prev_ws:
            continue
        out.append(0x20 if ws else c)
        prev_ws = ws
    char = np.zeros(n_char)
    for n in range(cr[0], cr[1] + 1):
        for s in range(len(out) - n + 1):
            key = 0
            for c in out[s : s + n]:
                key = (key << 8) | c
            bucket, sign = _slot_py(key ^ (n << 56), ctag, n_char)
            char[bucket] += sign
    for v in (word, char):
        nrm = np.linalg.norm(v)
        if nrm > 0:
            v /= nrm
    return word, char


TEXTS = [
    "def test_login():\n    assert client.post('/login').status_code == 200",
    "",
    "a",
    "ab",
    "Ünïcödé  prompt\t\twith   spaces\n\n\nand ütf-8 — dashes 🚀",
    "x" * 300,
    "pytest -k 'test_a or test_b' failed: AssertionError at src/app/main.py:42",
]


@pytest.mark.parametrize("seed", [0, 7])
def test_matches_pure_python_reference(seed: int) -> None:
    lowered = [t.lower() for t in TEXTS]
    w, c = H.hash_ngrams(H.encode_texts(lowered), n_word=64, n_char=50, seed=seed)
    for i, t in enumerate(lowered):
        rw, rc = _reference(t, 64, 50, (1, 2), (3, 5), seed)
        np.testing.assert_allclose(w[i], rw, atol=1e-12, err_msg=f"word block of text {i}")
        np.testing.assert_allclose(c[i], rc, atol=1e-12, err_msg=f"char block of text {i}")


def test_reference_other_ranges() -> None:
    t = "refactor the payment service; add tests for race conditions in checkout"
    w, c = H.hash_ngrams(H.encode_texts([t]), n_word=32, n_char=40, word_ngram_range=(2, 3), char_ngram_range=(1, 7))
    rw, rc = _reference(t, 32, 40, (2, 3), (1, 7), 0)
    np.testing.assert_allclose(w[0], rw, atol=1e-12)
    np.testing.assert_allclose(c[0], rc, atol=1e-12)


def test_batch_equals_single_and_chunking_is_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    vocab = ["assert", "error", "def", "test_x", "foo.py", "\n", "  ", "```", "é"]
    texts = ["".join(rng.choice(vocab, size=int(rng.integers(0, 60)))) for _ in range(200)]
    enc = H.encode_texts(texts)
    w_all, c_all = H.hash_ngrams(enc, n_word=128, n_char=128)
    monkeypatch.setattr(H, "CHUNK_BYTES", 97)
    w_small, c_small = H.hash_ngrams(enc, n_word=128, n_char=128)
    np.testing.assert_array_equal(w_all, w_small)
    np.testing.assert_array_equal(c_all, c_small)
    for i in (0, 17, 199):
        w1, c1 = H.hash_ngrams([enc[i]], n_word=128, n_char=128)
        np.testing.assert_array_equal(w1[0], w_all[i])
        np.testing.assert_array_equal(c1[0], c_all[i])


def test_norms_and_empty_rows() -> None:
    w, c = H.hash_ngrams(H.encode_texts(["hello world again", "", "a"]), n_word=16, n_char=16)
    assert np.linalg.norm(w[0]) == pytest.approx(1.0)
    assert np.linalg.norm(c[0]) == pytest.approx(1.0)
    assert not w[1].any() and not c[1].any()
    assert not w[2].any() and not c[2].any()  # 1-byte text: no 2-byte word, no 3-gram


def test_seed_changes_buckets_and_disabled_blocks() -> None:
    enc = H.encode_texts(["generate integration tests for the checkout api"])
    a, _ = H.hash_ngrams(enc, n_word=256, n_char=0, seed=0)
    b, _ = H.hash_ngrams(enc, n_word=256, n_char=0, seed=1)
    assert not np.array_equal(a, b)
    w, c = H.hash_ngrams(enc, n_word=0, n_char=0)
    assert w.shape == (1, 0) and c.shape == (1, 0)
    with pytest.raises(ValueError, match="n <= 7"):
        H.hash_ngrams(enc, n_word=4, n_char=4, char_ngram_range=(3, 8))


_DIGEST_CODE = """
import hashlib, numpy as np
from router_rl.features import hashing as H
T = ["pytest failed: assertionerror in tests/test_api.py", "ünï"]
w, c = H.hash_ngrams(H.encode_texts(T), n_word=64, n_char=64)
print(hashlib.sha256(np.sign(w).astype(np.int8).tobytes() + np.sign(c).astype(np.int8).tobytes()).hexdigest())
"""


def test_stable_across_processes_and_hash_seeds() -> None:
    digests = set()
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_CODE],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        digests.add(out.stdout.strip())
    w, c = H.hash_ngrams(
        H.encode_texts(["pytest failed: assertionerror in tests/test_api.py", "ünï"]), n_word=64, n_char=64
    )
    here = hashlib.sha256(np.sign(w).astype(np.int8).tobytes() + np.sign(c).astype(np.int8).tobytes()).hexdigest()
    assert digests == {here}


def test_golden_buckets() -> None:
    """Pins the hash function: if this changes, bump ENCODER_VERSION (saved policies become invalid)."""
    w, c = H.hash_ngrams(H.encode_texts(["assert ok"]), n_word=64, n_char=16)
    assert (np.flatnonzero(w[0]).tolist(), np.sign(w[0][w[0] != 0]).astype(int).tolist()) == GOLDEN_WORD
    assert np.flatnonzero(c[0]).tolist() == GOLDEN_CHAR


GOLDEN_WORD: tuple[list[int], list[int]] = ([17, 52, 54], [-1, 1, -1])
GOLDEN_CHAR: list[int] = [1, 2, 4, 7, 11, 12, 14, 15]

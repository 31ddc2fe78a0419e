"""Optional sentence embeddings from a local model folder (tiny random BERT built here, offline)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router_rl.features import EncoderConfig, EncoderLoadError, FeatureEncoder

pytestmark = pytest.mark.slow  # importing torch + transformers takes several seconds

CORPUS = ["write unit tests for the cart module", "refactor the architecture", "pytest assert error in login"] * 5


def _build_model(folder: Path, seed: int) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    fast.save_pretrained(folder)
    BertModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("emb")
    return _build_model(base / "m0", seed=0), _build_model(base / "m1", seed=1)


def _tasks() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "prompt": ["write unit tests for cart", None, "refactor the architecture " * 30],
            "agent_type": ["a", "b", "a"],
            "category": ["u", "u", "v"],
        }
    )


def test_embeddings_block(model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    m0, m1 = model_dirs
    cfg = EncoderConfig(n_word_hash=8, n_char_hash=8, embedding_model_path=str(m0), embedding_max_length=32)
    enc = FeatureEncoder(cfg).fit(_tasks())
    base_dim = FeatureEncoder(cfg.model_copy(update={"embedding_model_path": None})).fit(_tasks()).dim
    assert enc.dim == base_dim + 16
    assert enc.feature_names[-1] == "emb[15]"
    X = enc.transform(_tasks())
    emb = X[:, -16:]
    np.testing.assert_allclose(np.linalg.norm(emb[[0, 2]], axis=1), 1.0, rtol=1e-5)
    assert not emb[1].any()  # missing prompt -> zero embedding
    assert not np.allclose(emb[0], emb[2])
    # parity + determinism across encoder instances
    np.testing.assert_array_equal(X, enc.transform_records(_tasks().to_dicts()))
    np.testing.assert_array_equal(X, FeatureEncoder(cfg).fit(_tasks()).transform(_tasks()))

    # the model is identified by content, not path: a copy elsewhere loads with the same fingerprint
    saved = enc.save(tmp_path / "encoder.json")
    moved = shutil.copytree(m0, tmp_path / "moved")
    loaded = FeatureEncoder.load(saved, embedding_model_path=str(moved), expected_fingerprint=enc.fingerprint)
    np.testing.assert_allclose(loaded.transform(_tasks()), X, atol=1e-6)

    # another model (different weights) at the configured path is refused
    other = FeatureEncoder.load(saved, embedding_model_path=str(m1))
    with pytest.raises(EncoderLoadError, match="fitted with"):
        other.transform(_tasks())
    assert json.loads(saved.read_text())["state"]["embedding"]["dim"] == 16


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    cfg = EncoderConfig(n_word_hash=8, n_char_hash=8, embedding_model_path=str(tmp_path / "absent"))
    with pytest.raises(EncoderLoadError, match=r"no config\.json"):
        FeatureEncoder(cfg).fit(_tasks())


def test_features_package_does_not_import_torch() -> None:
    code = (
        "import sys, polars as pl; from router_rl.features import FeatureEncoder;"
        "FeatureEncoder().fit(pl.DataFrame({'prompt': ['x'], 'agent_type': ['a'], 'category': ['c']}));"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"

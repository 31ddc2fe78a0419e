"""Optional sentence embeddings from a locally installed transformers model (torch imported lazily).

The model is never downloaded: it is loaded with ``local_files_only=True`` from a folder holding a
``config.json``, weights and a tokenizer (any ``AutoModel``-compatible encoder, e.g. a
sentence-transformers MiniLM exported with ``save_pretrained``). Embeddings are the attention-mask
weighted mean of the last hidden states, l2-normalised, computed in eval mode without gradients,
so they are deterministic for a given model and input.
"""

from __future__ import annotations

import hashlib
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


class SentenceEmbedder:
    """Mean-pooled sentence embeddings of a local transformers model.

    Args:
        path: Local model folder (``config.json`` + weights + tokenizer files).
        max_length: Token limit per text (longer texts are truncated).
        batch_size: Texts per forward pass.

    Raises:
        EncoderLoadError: the folder does not exist or does not hold a loadable model.
    """

    def __init__(self, path: str | Path, *, max_length: int = 256, batch_size: int = 32) -> None:
        p = Path(path).expanduser()
        if not (p / "config.json").is_file():
            raise EncoderLoadError(
                f"{p}: not a local transformers model folder (no config.json); nothing is downloaded"
            )
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

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns ``(n, dim)`` float32 with unit-norm rows."""
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

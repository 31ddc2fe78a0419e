"""A SentencePiece tokenizer with the small part of the ``transformers`` tokenizer API the federated code uses.

The tiny model that the real llama.cpp engine serves (:mod:`router_rl.engines.tiny`) ships a
SentencePiece ``tokenizer.model`` and no ``tokenizer.json``. ``transformers`` 5 converts such a file
through protobuf, which fails in environments whose protobuf runtime is older than sentencepiece's
generated code; this wrapper reads the file with the ``sentencepiece`` library itself, exactly as
llama.cpp's GGUF vocabulary does (same pieces, same ids), so the adapter trains on the token ids the
engine will see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SentencePieceTokenizer:
    """``tok(text, add_special_tokens=False)["input_ids"]``, ``bos/eos/pad_token(_id)`` and ``decode``.

    Args:
        model_file: The SentencePiece ``tokenizer.model``.
    """

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece as spm

        self.model_file = Path(model_file)
        self._sp = spm.SentencePieceProcessor(model_file=str(self.model_file))
        self.bos_token_id: int | None = self._id_or_none(self._sp.bos_id())
        self.eos_token_id: int | None = self._id_or_none(self._sp.eos_id())
        pad = self._id_or_none(self._sp.pad_id())
        self.pad_token_id: int | None = pad if pad is not None else self.eos_token_id
        self.pad_token: str | None = None if self.pad_token_id is None else self._sp.id_to_piece(self.pad_token_id)
        self.eos_token: str | None = None if self.eos_token_id is None else self._sp.id_to_piece(self.eos_token_id)

    @staticmethod
    def _id_or_none(i: int) -> int | None:
        return int(i) if i >= 0 else None

    def __len__(self) -> int:
        return int(self._sp.get_piece_size())

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, Any]:
        """Token ids of ``text`` (with ``<s>`` first when ``add_special_tokens``)."""
        ids = [int(t) for t in self._sp.encode(text)]
        if add_special_tokens and self.bos_token_id is not None:
            ids = [self.bos_token_id, *ids]
        return {"input_ids": ids}

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``."""
        return str(self._sp.decode([int(i) for i in ids]))

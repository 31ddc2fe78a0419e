"""A SentencePiece vocabulary that tokenises exactly as llama.cpp's SPM tokenizer does.

The tiny model that the real llama.cpp engine serves (:mod:`router_rl.engines.tiny`) ships a
SentencePiece ``tokenizer.model`` and no ``tokenizer.json``. ``transformers`` 5 converts such a file
through protobuf, which fails where the protobuf runtime is older than sentencepiece's generated
code. And the ``sentencepiece`` library's own ``encode`` applies the model's normaliser (``nmt_nfkc``:
a newline becomes a space), while llama.cpp does not normalise (a newline is the byte token
``<0x0A>``): an adapter trained on sentencepiece's ids would not see the ids the engine feeds it.

So the pieces and scores are read with ``sentencepiece`` and the text is segmented with llama.cpp's
algorithm (``llm_tokenizer_spm``): spaces escaped as ``▁``, one ``▁`` prefixed, then the highest-scoring
adjacent pair whose concatenation is a piece is merged first (ties: leftmost), and a symbol that is
not a piece falls back to its UTF-8 bytes ``<0xXX>``. Tested equal to the engine's own tokenisation.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

SPACE = "\u2581"


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
        n = self._sp.get_piece_size()
        self._ids = {self._sp.id_to_piece(i): i for i in range(n) if not self._sp.is_control(i)}
        self._scores = {self._sp.id_to_piece(i): float(self._sp.get_score(i)) for i in range(n)}
        self._bytes = {b: self._ids[f"<0x{b:02X}>"] for b in range(256) if f"<0x{b:02X}>" in self._ids}
        unk = self._sp.unk_id()
        self._unk: int | None = int(unk) if unk >= 0 else None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as llama.cpp's SPM tokenizer computes them (no BOS)."""
        if not text:
            return []
        sym = list(SPACE + text.replace(" ", SPACE))
        prev = list(range(-1, len(sym) - 1))
        nxt = [*range(1, len(sym)), -1]
        heap: list[tuple[float, int, int, int]] = []

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            piece = sym[left] + sym[right]
            if piece in self._ids:
                heapq.heappush(heap, (-self._scores[piece], left, right, len(piece)))

        for i in range(len(sym) - 1):
            push(i, i + 1)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if not sym[left] or not sym[right] or len(sym[left]) + len(sym[right]) != size or nxt[left] != right:
                continue  # stale: one side was merged since
            sym[left] += sym[right]
            sym[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])
        out: list[int] = []
        i = 0
        while i >= 0:
            s = sym[i]
            if s in self._ids:
                out.append(self._ids[s])
            else:
                for b in s.encode("utf-8"):
                    if b in self._bytes:
                        out.append(self._bytes[b])
                    elif self._unk is not None:
                        out.append(self._unk)
            i = nxt[i]
        return out

    @staticmethod
    def _id_or_none(i: int) -> int | None:
        return int(i) if i >= 0 else None

    def __len__(self) -> int:
        return int(self._sp.get_piece_size())

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, Any]:
        """Token ids of ``text`` (with ``<s>`` first when ``add_special_tokens``)."""
        ids = self.encode(text)
        if add_special_tokens and self.bos_token_id is not None:
            ids = [self.bos_token_id, *ids]
        return {"input_ids": ids}

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``."""
        return str(self._sp.decode([int(i) for i in ids]))

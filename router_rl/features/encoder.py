"""The one feature encoder shared by environments, training, offline evaluation and the live router.

(Over 500 lines on purpose: the batch path and the single-record path of the live router stay side
by side, so they cannot drift; ``tests/features/test_feat_encoder_one.py`` checks they agree bitwise.)

Fitted once on training tasks, saved (JSON) with every policy, and used unchanged everywhere, so
there is no train/serve skew: :meth:`FeatureEncoder.transform` (polars frames) and
:meth:`FeatureEncoder.transform_records` (dicts, the live router's form) normalise their input to
the same internal batch and run the same code.

Feature blocks, in column order (names in :attr:`FeatureEncoder.feature_names`):

1. ``word_hash[i]``: signed hashed word n-grams of the lower-cased prompt, l2-normalised.
2. ``char_hash[i]``: signed hashed char n-grams, l2-normalised.
3. ``struct:*``: length and structure statistics (log1p counts, flags).
4. ``cx:*``: complexity-heuristic score (scaled to [0, 1]) and level one-hot.
5. ``cat:<column>=<value>``: one-hot per categorical column, plus ``=__unknown__``.
6. ``num:<column>``: standardised numeric passthrough columns (missing -> 0).
7. ``emb[i]``: optional sentence embedding (mean pooled, l2-normalised).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from router_rl.features.complexity import (
    _LEVELS,
    COMPLEXITY_KEYWORD_GROUPS,
    MAX_SCORE,
    complexity_from_stats,
    complexity_one,
    has_code_from_stats,
    keyword_group_counts,
)
from router_rl.features.config import EncoderConfig
from router_rl.features.errors import EncoderLoadError, EncoderNotFittedError, FeatureInputError
from router_rl.features.hashing import encode_texts, hash_ngrams
from router_rl.features.one_row import KeywordGroups, log1p_table, text_blocks_one
from router_rl.features.privacy import is_sensitive
from router_rl.features.text_stats import (
    ERROR_KEYWORDS,
    STAT_NAMES,
    TEST_KEYWORDS,
    prompt_stats,
)

#: Bumped whenever the meaning of any feature changes; part of every fingerprint.
ENCODER_VERSION: Final = 2
ENCODER_FORMAT: Final = "router_rl.feature_encoder"
UNKNOWN: Final = "__unknown__"

_COUNT_STATS: Final = tuple(s for s in STAT_NAMES)
STRUCTURE_NAMES: Final = (
    *(f"struct:log_{s}" for s in _COUNT_STATS),
    "struct:has_code",
    "struct:log_max_tokens",
    "struct:max_tokens_missing",
    "struct:log_n_messages",
    "struct:prompt_missing",
    "privacy:sensitive",  # a secret/PII finding (router_rl.features.privacy): such tasks must stay local
)
COMPLEXITY_NAMES: Final = ("cx:score", *(f"cx:{lv.value}" for lv in _LEVELS))


@functools.cache
def _one_pass_groups() -> KeywordGroups:
    """What the single-record path counts in one pass: test keywords, error keywords, each complexity group."""
    return KeywordGroups([TEST_KEYWORDS, ERROR_KEYWORDS, *COMPLEXITY_KEYWORD_GROUPS.values()])


@functools.cache
def _log1p_table() -> list[float]:
    """:func:`~router_rl.features.one_row.log1p_table` as Python floats."""
    return log1p_table().tolist()


def _log1p(x: float) -> float:
    """``float(np.log1p(np.float64(x)))``: a table look-up for the small integers (counts), numpy otherwise."""
    table = _log1p_table()
    if 0 <= x < len(table):
        i = int(x)
        if i == x:
            return table[i]
    return float(np.log1p(np.float64(x)))


@dataclass
class _Batch:
    """Encoder input normalised from a frame or from records (one entry per task)."""

    raw: list[str | None]  # prompt text as given (None when missing), for embeddings
    max_tokens: np.ndarray  # float64, NaN = unknown
    n_messages: np.ndarray  # int64
    categorical: dict[str, list[str | None]]
    numeric: dict[str, np.ndarray]  # float64, NaN = missing

    @property
    def n(self) -> int:
        return len(self.raw)


def _messages_text(messages: Any, where: str) -> tuple[str, int]:
    """Join the ``content`` of chat messages; returns ``(text, n_messages)``."""
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        raise FeatureInputError(
            f"{where}, field 'messages': expected a list of {{role, content}}, got {messages!r:.80}"
        )
    parts: list[str] = []
    for j, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise FeatureInputError(f"{where}, field 'messages[{j}]': expected a {{role, content}} object")
        content = m.get("content")
        if content is None:
            continue
        if not isinstance(content, str):
            raise FeatureInputError(f"{where}, field 'messages[{j}].content': expected a string")
        parts.append(content)
    return "\n\n".join(parts), len(messages)


def _category_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return None
    return str(v)


@dataclass
class _Record:
    """One validated task record (the per-record half of :func:`_records_to_batch`)."""

    prompt: str | None
    max_tokens: float  # NaN = unknown
    n_messages: int
    categorical: dict[str, str | None]
    numeric: dict[str, float]  # NaN = missing


def _parse_record(rec: Any, cfg: EncoderConfig, where: str) -> _Record:
    if not isinstance(rec, Mapping):
        raise FeatureInputError(f"{where}: expected a dict of task fields, got {type(rec).__name__}")
    prompt = rec.get("prompt")
    msgs = rec.get("messages")
    n_msg: int | None = None
    if msgs is not None:
        text, n_msg = _messages_text(msgs, where)
        if prompt is None:
            prompt = text
    if prompt is not None and not isinstance(prompt, str):
        raise FeatureInputError(f"{where}, field 'prompt': expected a string or None, got {type(prompt).__name__}")
    max_tokens = math.nan
    mt = rec.get("max_tokens")
    if mt is not None:
        if isinstance(mt, bool) or not isinstance(mt, int | float | np.integer | np.floating):
            raise FeatureInputError(f"{where}, field 'max_tokens': expected a number or None, got {mt!r:.40}")
        if mt < 0:
            raise FeatureInputError(f"{where}, field 'max_tokens': expected >= 0, got {mt}")
        max_tokens = float(mt)
    n_messages = 1
    nm = rec.get("n_messages")
    if nm is not None:
        if isinstance(nm, bool) or not isinstance(nm, int | np.integer) or nm < 0:
            raise FeatureInputError(f"{where}, field 'n_messages': expected an integer >= 0, got {nm!r:.40}")
        n_messages = int(nm)
    elif n_msg is not None:
        n_messages = n_msg
    cats = {c: _category_str(rec.get(c)) for c in cfg.categorical_columns}
    nums: dict[str, float] = {}
    for c in cfg.numeric_columns:
        v = rec.get(c)
        if v is None:
            nums[c] = math.nan
            continue
        if not isinstance(v, int | float | np.integer | np.floating):
            raise FeatureInputError(f"{where}, field {c!r}: expected a number or None, got {v!r:.40}")
        nums[c] = float(v)
    return _Record(prompt, max_tokens, n_messages, cats, nums)


def _records_to_batch(records: Sequence[Mapping[str, Any]], cfg: EncoderConfig) -> _Batch:
    n = len(records)
    raw: list[str | None] = [None] * n
    max_tokens = np.full(n, np.nan)
    n_messages = np.ones(n, dtype=np.int64)
    cats: dict[str, list[str | None]] = {c: [None] * n for c in cfg.categorical_columns}
    nums: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in cfg.numeric_columns}
    for i, rec in enumerate(records):
        r = _parse_record(rec, cfg, f"record {i}")
        raw[i] = r.prompt
        max_tokens[i] = r.max_tokens
        n_messages[i] = r.n_messages
        for c in cfg.categorical_columns:
            cats[c][i] = r.categorical[c]
        for c in cfg.numeric_columns:
            nums[c][i] = r.numeric[c]
    return _Batch(raw, max_tokens, n_messages, cats, nums)


def _frame_to_batch(df: pl.DataFrame, cfg: EncoderConfig, *, what: str) -> _Batch:
    n = df.height
    cols = set(df.columns)

    def numeric_col(name: str) -> np.ndarray:
        s = df[name]
        if not (s.dtype.is_numeric() or s.dtype == pl.Boolean or s.dtype == pl.Null):
            raise FeatureInputError(f"{what}: column {name!r}: expected a numeric column, got dtype {s.dtype}")
        return s.cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)

    raw: list[str | None]
    if "prompt" in cols:
        s = df["prompt"]
        if s.dtype not in (pl.Utf8, pl.Null):
            raise FeatureInputError(f"{what}: column 'prompt': expected strings, got dtype {s.dtype}")
        raw = s.cast(pl.Utf8).to_list()
    else:
        raw = [None] * n
    n_messages = np.ones(n, dtype=np.int64)
    if "messages" in cols:
        for i, msgs in enumerate(df["messages"].to_list()):
            if msgs is None:
                continue
            text, k = _messages_text(msgs, f"{what}: row {i}")
            n_messages[i] = k
            if raw[i] is None:
                raw[i] = text
    max_tokens = np.full(n, np.nan)
    if "max_tokens" in cols:
        max_tokens = numeric_col("max_tokens")
        bad = np.flatnonzero(max_tokens < 0)
        if bad.size:
            raise FeatureInputError(
                f"{what}: row {int(bad[0])}, column 'max_tokens': expected >= 0, got {max_tokens[bad[0]]} "
                f"({bad.size} rows affected)"
            )
    if "n_messages" in cols:
        nm = numeric_col("n_messages")
        have = ~np.isnan(nm)
        bad = np.flatnonzero(have & ((nm < 0) | (nm != np.round(nm))))
        if bad.size:
            raise FeatureInputError(
                f"{what}: row {int(bad[0])}, column 'n_messages': expected an integer >= 0, got {nm[bad[0]]} "
                f"({bad.size} rows affected)"
            )
        n_messages = np.where(have, np.nan_to_num(nm), n_messages).astype(np.int64)
    missing = [c for c in (*cfg.categorical_columns, *cfg.numeric_columns) if c not in cols]
    if missing:
        raise FeatureInputError(
            f"{what}: missing column(s) {missing} required by the encoder config (columns present: "
            f"{sorted(cols)}); use EncoderConfig(...).restricted_to(frame.columns) to drop them"
        )
    cats: dict[str, list[str | None]] = {}
    for c in cfg.categorical_columns:
        s = df[c]
        if s.dtype == pl.Boolean:
            cats[c] = [None if v is None else ("true" if v else "false") for v in s.to_list()]
        elif s.dtype in (pl.Float32, pl.Float64):
            cats[c] = [_category_str(v) for v in s.to_list()]
        else:
            try:
                cats[c] = s.cast(pl.Utf8).to_list()
            except Exception as e:  # pragma: no cover - exotic dtypes (lists, structs)
                raise FeatureInputError(f"{what}: column {c!r}: expected a categorical column, got {s.dtype}") from e
    nums = {c: numeric_col(c) for c in cfg.numeric_columns}
    return _Batch(raw, max_tokens, n_messages, cats, nums)


class FeatureEncoder:
    """Task -> feature vector, fitted on training tasks (see the module docstring for the blocks).

    Args:
        config: Encoder settings; defaults to ``EncoderConfig()``.

    Example:
        >>> enc = FeatureEncoder().fit(train_tasks)          # doctest: +SKIP
        >>> X = enc.transform(matrix.tasks)                  # (n, enc.dim) float32  # doctest: +SKIP
        >>> x = enc.transform_one({"prompt": "...", "agent_type": "test-gen", "category": "unit"})  # doctest: +SKIP
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        self.config: EncoderConfig = config if config is not None else EncoderConfig()
        if not isinstance(self.config, EncoderConfig):
            raise TypeError(f"FeatureEncoder: config must be an EncoderConfig, got {type(config).__name__}")
        self._state: dict[str, Any] | None = None
        self._embedder: Any = None
        self._index_for: dict[str, Any] | None = None  # the state _index / _dim were computed for
        self._index: dict[str, dict[str, int]] = {}
        self._dim = 0

    # --- fitting -----------------------------------------------------------------------------
    def fit(self, tasks: pl.DataFrame) -> FeatureEncoder:
        """Learn categorical vocabularies and numeric scaling from training tasks.

        Args:
            tasks: One row per task; must contain every configured categorical and numeric column.

        Returns:
            ``self``.

        Raises:
            FeatureInputError: a configured column is missing or has the wrong dtype, or ``tasks`` is empty.
        """
        if not isinstance(tasks, pl.DataFrame):
            raise TypeError(f"FeatureEncoder.fit: expected a polars DataFrame, got {type(tasks).__name__}")
        if tasks.height == 0:
            raise FeatureInputError("FeatureEncoder.fit: tasks frame has no rows")
        batch = _frame_to_batch(tasks, self.config, what="FeatureEncoder.fit")
        vocab: dict[str, list[str]] = {}
        for c, values in batch.categorical.items():
            counts = Counter(v for v in values if v is not None)
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.config.max_categories]
            vocab[c] = sorted(k for k, _ in kept)
        numeric: dict[str, dict[str, float]] = {}
        for c, arr in batch.numeric.items():
            fin = arr[np.isfinite(arr)]
            if fin.size == 0:
                raise FeatureInputError(f"FeatureEncoder.fit: column {c!r}: no finite value to fit scaling on")
            std = float(fin.std())
            numeric[c] = {"mean": float(fin.mean()), "std": std if std > 1e-12 else 1.0}
        state: dict[str, Any] = {"vocab": vocab, "numeric": numeric, "embedding": None}
        if self.config.embedding_model_path is not None:
            emb = self._get_embedder()
            state["embedding"] = {"dim": emb.dim, "model_id": emb.model_id}
        self._state = state
        return self

    @property
    def is_fitted(self) -> bool:
        """True after :meth:`fit` or :meth:`load`."""
        return self._state is not None

    def _require_state(self) -> dict[str, Any]:
        if self._state is None:
            raise EncoderNotFittedError("FeatureEncoder: call fit(tasks) (or FeatureEncoder.load) first")
        return self._state

    def _get_embedder(self) -> Any:
        if self._embedder is None:
            from router_rl.features.embeddings import SentenceEmbedder

            cfg = self.config
            assert cfg.embedding_model_path is not None
            emb = SentenceEmbedder(
                cfg.embedding_model_path, max_length=cfg.embedding_max_length, batch_size=cfg.embedding_batch_size
            )
            fitted = (self._state or {}).get("embedding")
            if fitted is not None and fitted.get("model_id") != emb.model_id:
                raise EncoderLoadError(
                    f"embedding model at {cfg.embedding_model_path} is {emb.model_id}, but the encoder was fitted "
                    f"with {fitted.get('model_id')}; point embedding_model_path at the same model"
                )
            self._embedder = emb
        return self._embedder

    # --- shape -------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """Name of every output column, in order (``len == dim``)."""
        st = self._require_state()
        cfg = self.config
        names = [f"word_hash[{i}]" for i in range(cfg.n_word_hash)]
        names += [f"char_hash[{i}]" for i in range(cfg.n_char_hash)]
        if cfg.use_structure:
            names += list(STRUCTURE_NAMES)
        if cfg.use_complexity:
            names += list(COMPLEXITY_NAMES)
        for c in cfg.categorical_columns:
            names += [f"cat:{c}={v}" for v in st["vocab"][c]] + [f"cat:{c}={UNKNOWN}"]
        names += [f"num:{c}" for c in cfg.numeric_columns]
        if st["embedding"] is not None:
            names += [f"emb[{i}]" for i in range(int(st["embedding"]["dim"]))]
        return names

    @property
    def dim(self) -> int:
        """Number of output features."""
        st = self._require_state()
        cfg = self.config
        d = cfg.n_word_hash + cfg.n_char_hash
        d += len(STRUCTURE_NAMES) if cfg.use_structure else 0
        d += len(COMPLEXITY_NAMES) if cfg.use_complexity else 0
        d += sum(len(st["vocab"][c]) + 1 for c in cfg.categorical_columns)
        d += len(cfg.numeric_columns)
        if st["embedding"] is not None:
            d += int(st["embedding"]["dim"])
        return d

    @property
    def fingerprint(self) -> str:
        """Stable 16-hex-digit hash of encoder version + config + fitted state."""
        return _fingerprint(self.config, self._require_state())

    def check_fingerprint(self, expected: str, *, what: str = "policy") -> None:
        """Raise :class:`EncoderLoadError` unless this encoder's fingerprint equals ``expected``."""
        if self.fingerprint != expected:
            raise EncoderLoadError(
                f"{what} was trained with encoder {expected}, but this encoder is {self.fingerprint}: "
                "features would not match; load the encoder.json saved with it"
            )

    # --- transform ---------------------------------------------------------------------------
    def transform(self, tasks: pl.DataFrame) -> np.ndarray:
        """Encode a frame of tasks.

        Args:
            tasks: One row per task: ``prompt`` (optional; missing -> zero text features),
                ``messages``, ``max_tokens``, ``n_messages`` (optional) and every configured
                categorical / numeric column.

        Returns:
            ``(n, dim)`` float32.
        """
        if not isinstance(tasks, pl.DataFrame):
            raise TypeError(f"FeatureEncoder.transform: expected a polars DataFrame, got {type(tasks).__name__}")
        self._require_state()
        return self._encode(_frame_to_batch(tasks, self.config, what="FeatureEncoder.transform"))

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode task dicts (the live router's form); same output as :meth:`transform` for the same content.

        Args:
            records: Dicts with keys ``prompt``, ``category``, ``agent_type``, ``max_tokens``,
                ``n_messages``, ``messages`` (list of ``{role, content}``; used as the text when
                ``prompt`` is absent, and for ``n_messages`` when that is absent) and the
                configured numeric columns. Absent keys count as missing values.

        Returns:
            ``(n, dim)`` float32.
        """
        self._require_state()
        if len(records) == 1 and self._state is not None and self._state["embedding"] is None:
            return self._encode_one(_parse_record(records[0], self.config, "record 0"))[None, :]
        return self._encode(_records_to_batch(records, self.config))

    def _cat_index(self) -> dict[str, dict[str, int]]:
        """``{column: {value: position}}`` of the fitted vocabularies (cached per fitted state)."""
        st = self._require_state()
        if self._index_for is not st:
            self._index = {c: {v: j for j, v in enumerate(st["vocab"][c])} for c in self.config.categorical_columns}
            self._dim = self.dim
            self._index_for = st
        return self._index

    def _encode_one(self, rec: _Record) -> np.ndarray:
        """The single-record path of :meth:`_encode` (same features, same float arithmetic)."""
        st = self._require_state()
        index = self._cat_index()
        cfg = self.config
        out = np.zeros(self._dim, dtype=np.float32)
        text = rec.prompt
        lowered = text.lower() if text is not None else ""
        encoded = lowered.encode("utf-8", "surrogatepass")
        col = cfg.n_word_hash + cfg.n_char_hash
        groups = _one_pass_groups() if cfg.use_structure or cfg.use_complexity else None
        totals, stats, logs_written, sensitive = text_blocks_one(
            out, lowered, encoded, cfg, groups, col if cfg.use_structure else -1, text if cfg.use_structure else None
        )
        if stats is not None:
            has_code = stats["code_fences"] > 0 or stats["code_lines"] >= 2
            mt = rec.max_tokens
            if cfg.use_structure:
                # the batch block's order and values (np.log1p, through a table for small integers),
                # cast to float32 on store; the nine statistics' logs are already there when logs_written
                k = len(_COUNT_STATS)
                if not logs_written:
                    out[col : col + k] = [_log1p(stats[s]) for s in _COUNT_STATS]
                vals = [
                    float(has_code),
                    _log1p(0.0 if math.isnan(mt) else mt),
                    float(math.isnan(mt)),
                    _log1p(rec.n_messages),
                    float(text is None),
                    float(is_sensitive(text) if sensitive is None else sensitive),
                ]
                out[col + k : col + k + len(vals)] = vals
                col += k + len(vals)
            if cfg.use_complexity:
                n_groups = sum(1 for t in totals[2:] if t)  # complexity groups present (keyword_groups_one)
                score, level = complexity_one(stats["chars"], mt, rec.n_messages, has_code, n_groups)
                out[col] = score / MAX_SCORE
                out[col + 1 + level] = 1.0
                col += len(COMPLEXITY_NAMES)
        for c in cfg.categorical_columns:
            idx = index[c]
            v = rec.categorical[c]
            j = idx.get(v, len(idx)) if v is not None else len(idx)
            out[col + j] = 1.0
            col += len(idx) + 1
        for c in cfg.numeric_columns:
            p = st["numeric"][c]
            z = (rec.numeric[c] - p["mean"]) / p["std"]
            out[col] = z if math.isfinite(z) else 0.0
            col += 1
        assert col == out.shape[0], (col, out.shape)
        return out

    def transform_one(self, record: Mapping[str, Any]) -> np.ndarray:
        """Encode one task dict; returns ``(dim,)`` float32, bit-identical to its :meth:`transform` row.

        The live router's path: one record is encoded with scalar code and one-row hashing
        (:func:`~router_rl.features.hashing.hash_ngrams_one`) instead of the batch machinery
        (``tests/features/test_feat_encoder_one.py`` checks the equality on varied prompts).
        With an embedding model configured it uses the batch path (the model dominates anyway).
        """
        self._require_state()
        if self._state is not None and self._state["embedding"] is not None:
            return self._encode(_records_to_batch([record], self.config))[0]
        return self._encode_one(_parse_record(record, self.config, "record 0"))

    def _encode(self, batch: _Batch) -> np.ndarray:
        st = self._require_state()
        cfg = self.config
        n = batch.n
        out = np.zeros((n, self.dim), dtype=np.float32)
        lowered = [t.lower() if t is not None else "" for t in batch.raw]
        col = 0
        if cfg.n_word_hash or cfg.n_char_hash:
            word_block, char_block = hash_ngrams(
                encode_texts(lowered),
                n_word=cfg.n_word_hash,
                n_char=cfg.n_char_hash,
                word_ngram_range=cfg.word_ngram_range,
                char_ngram_range=cfg.char_ngram_range,
                seed=cfg.seed,
            )
            out[:, : cfg.n_word_hash] = word_block
            out[:, cfg.n_word_hash : cfg.n_word_hash + cfg.n_char_hash] = char_block
            col = cfg.n_word_hash + cfg.n_char_hash
        if cfg.use_structure or cfg.use_complexity:
            stats = prompt_stats(lowered)
            has_code = has_code_from_stats(stats["code_fences"], stats["code_lines"])
            if cfg.use_structure:
                mt = batch.max_tokens
                block = [np.log1p(stats[s].astype(np.float64)) for s in _COUNT_STATS]
                block += [
                    has_code.astype(np.float64),
                    np.log1p(np.nan_to_num(mt, nan=0.0)),
                    np.isnan(mt).astype(np.float64),
                    np.log1p(batch.n_messages.astype(np.float64)),
                    np.array([t is None for t in batch.raw], dtype=np.float64),
                    np.array([is_sensitive(t) for t in batch.raw], dtype=np.float64),
                ]
                out[:, col : col + len(block)] = np.stack(block, axis=1)
                col += len(block)
            if cfg.use_complexity:
                score, level = complexity_from_stats(
                    stats["chars"], batch.max_tokens, batch.n_messages, has_code, keyword_group_counts(lowered)
                )
                out[:, col] = score / MAX_SCORE
                out[np.arange(n), col + 1 + level] = 1.0
                col += len(COMPLEXITY_NAMES)
        for c in cfg.categorical_columns:
            vocab = st["vocab"][c]
            index = {v: j for j, v in enumerate(vocab)}
            unk = len(vocab)
            idx = np.fromiter((index.get(v, unk) if v is not None else unk for v in batch.categorical[c]), np.int64, n)
            out[np.arange(n), col + idx] = 1.0
            col += len(vocab) + 1
        for c in cfg.numeric_columns:
            p = st["numeric"][c]
            z = (batch.numeric[c] - p["mean"]) / p["std"]
            out[:, col] = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
            col += 1
        if st["embedding"] is not None:
            d = int(st["embedding"]["dim"])
            present = [i for i, t in enumerate(batch.raw) if t]
            if present:
                emb = self._get_embedder().encode([batch.raw[i] for i in present])
                if emb.shape[1] != d:
                    raise EncoderLoadError(
                        f"embedding model {cfg.embedding_model_path} now gives dim {emb.shape[1]}, fitted with {d}"
                    )
                out[present, col : col + d] = emb
            col += d
        assert col == out.shape[1], (col, out.shape)
        return out

    # --- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what :meth:`save` writes)."""
        st = self._require_state()
        return {
            "format": ENCODER_FORMAT,
            "version": ENCODER_VERSION,
            "config": self.config.to_json_dict(),
            "state": st,
            "dim": self.dim,
            "fingerprint": self.fingerprint,
        }

    def save(self, path: str | Path) -> Path:
        """Write the fitted encoder as JSON to ``path`` (a file; parent folders are created)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return p

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "encoder") -> FeatureEncoder:
        """Rebuild an encoder from :meth:`to_dict` output (validated; see :meth:`load`)."""
        if not isinstance(data, Mapping) or data.get("format") != ENCODER_FORMAT:
            raise EncoderLoadError(f"{source}: not a router_rl feature encoder (format != {ENCODER_FORMAT!r})")
        version = data.get("version")
        if version != ENCODER_VERSION:
            raise EncoderLoadError(
                f"{source}: encoder version {version!r}, but this router_rl reads version {ENCODER_VERSION}; "
                "refit the encoder (and the policy) with this version"
            )
        try:
            config = EncoderConfig.model_validate(data["config"])
        except (KeyError, ValueError) as e:
            raise EncoderLoadError(f"{source}: invalid 'config': {e}") from e
        state = data.get("state")
        if not isinstance(state, Mapping) or not {"vocab", "numeric", "embedding"} <= set(state):
            raise EncoderLoadError(f"{source}: 'state' must hold 'vocab', 'numeric' and 'embedding'")
        vocab, numeric = state["vocab"], state["numeric"]
        if set(vocab) != set(config.categorical_columns) or set(numeric) != set(config.numeric_columns):
            raise EncoderLoadError(f"{source}: fitted state does not match the config's columns")
        enc = cls(config)
        enc._state = {"vocab": dict(vocab), "numeric": dict(numeric), "embedding": state["embedding"]}
        stored = data.get("fingerprint")
        if stored != enc.fingerprint:
            raise EncoderLoadError(
                f"{source}: stored fingerprint {stored!r} != recomputed {enc.fingerprint!r} (file edited or corrupt)"
            )
        return enc

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        expected_fingerprint: str | None = None,
        embedding_model_path: str | None = None,
    ) -> FeatureEncoder:
        """Load an encoder saved with :meth:`save`.

        Args:
            path: The JSON file.
            expected_fingerprint: When given, refuse an encoder with another fingerprint.
            embedding_model_path: Where the embedding model is installed on this machine, when it
                differs from the saved path (the model itself must be the same: checked by id).

        Raises:
            EncoderLoadError: missing file, invalid JSON, other format/version, edited content,
                or a fingerprint other than ``expected_fingerprint``.
        """
        p = Path(path)
        if not p.is_file():
            raise EncoderLoadError(f"{p}: encoder file not found")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise EncoderLoadError(f"{p}: invalid JSON ({e})") from e
        if embedding_model_path is not None and isinstance(data, dict) and isinstance(data.get("config"), dict):
            data["config"]["embedding_model_path"] = embedding_model_path
        enc = cls.from_dict(data, source=str(p))
        if expected_fingerprint is not None:
            enc.check_fingerprint(expected_fingerprint, what=f"{p} (expected)")
        return enc

    def __repr__(self) -> str:
        if self._state is None:
            return f"FeatureEncoder(unfitted, {self.config!r})"
        return f"FeatureEncoder(dim={self.dim}, fingerprint={self.fingerprint})"


#: Config fields that do not change any feature value (the embedding model is identified by its
#: ``model_id`` in the fitted state instead of by where it is installed).
_NOT_FINGERPRINTED: Final = ("embedding_model_path", "embedding_batch_size")


def _fingerprint(config: EncoderConfig, state: Mapping[str, Any]) -> str:
    cfg = {k: v for k, v in config.to_json_dict().items() if k not in _NOT_FINGERPRINTED}
    payload = json.dumps(
        {"version": ENCODER_VERSION, "config": cfg, "state": state}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

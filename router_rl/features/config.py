"""Validated configuration of the shared :class:`~router_rl.features.encoder.FeatureEncoder`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from router_rl.features.hashing import MAX_CHAR_N

#: Columns with a fixed meaning to the encoder; they cannot be categorical / numeric passthrough.
RESERVED_COLUMNS = ("prompt", "messages", "max_tokens", "n_messages")


class EncoderConfig(BaseModel):
    """Settings of the feature encoder; frozen and validated on construction.

    Attributes:
        n_word_hash: Buckets of the hashed word n-gram block (0 disables it).
        n_char_hash: Buckets of the hashed char n-gram block (0 disables it).
        word_ngram_range: Inclusive ``(min_n, max_n)`` of word n-grams.
        char_ngram_range: Inclusive ``(min_n, max_n)`` of char (UTF-8 byte) n-grams, ``max_n <= 7``.
        use_structure: Add length / structure features (``struct:*``).
        use_complexity: Add the complexity-heuristic features (``cx:*``).
        categorical_columns: Task columns one-hot encoded with a learned vocabulary plus an
            ``__unknown__`` bucket (unseen and missing values).
        numeric_columns: Numeric task columns passed through after standardisation
            (missing -> 0, i.e. the training mean).
        max_categories: Most frequent values kept per categorical column (others -> unknown).
        embedding_model_path: Local folder of a sentence-embedding model (transformers format).
            Never downloaded: loaded with ``local_files_only=True``.
        embedding_max_length: Token limit per prompt for the embedding model.
        embedding_batch_size: Prompts per forward pass of the embedding model.
        seed: Hash seed (changes bucket assignments) and seed of anything random.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_word_hash: Annotated[int, Field(ge=0, le=1 << 20)] = 256
    n_char_hash: Annotated[int, Field(ge=0, le=1 << 20)] = 256
    word_ngram_range: tuple[int, int] = (1, 2)
    char_ngram_range: tuple[int, int] = (3, 5)
    use_structure: bool = True
    use_complexity: bool = True
    categorical_columns: tuple[str, ...] = ("agent_type", "category")
    numeric_columns: tuple[str, ...] = ()
    max_categories: Annotated[int, Field(ge=1)] = 100
    embedding_model_path: str | None = None
    embedding_max_length: Annotated[int, Field(ge=8)] = 256
    embedding_batch_size: Annotated[int, Field(ge=1)] = 32
    seed: Annotated[int, Field(ge=0, lt=1 << 63)] = 0

    @field_validator("word_ngram_range")
    @classmethod
    def _check_word_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 4:
            raise ValueError(f"expected 1 <= min_n <= max_n <= 4, got {v}")
        return v

    @field_validator("char_ngram_range")
    @classmethod
    def _check_char_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= MAX_CHAR_N:
            raise ValueError(f"expected 1 <= min_n <= max_n <= {MAX_CHAR_N}, got {v}")
        return v

    @field_validator("categorical_columns", "numeric_columns")
    @classmethod
    def _check_columns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate column names in {list(v)}")
        reserved = [c for c in v if c in RESERVED_COLUMNS]
        if reserved:
            raise ValueError(f"columns {reserved} are read by the encoder itself (reserved: {list(RESERVED_COLUMNS)})")
        if any(not c for c in v):
            raise ValueError("empty column name")
        return v

    @field_validator("embedding_model_path")
    @classmethod
    def _check_path(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("empty path; use None to disable embeddings")
        return v

    @model_validator(mode="after")
    def _check_disjoint(self) -> EncoderConfig:
        both = sorted(set(self.categorical_columns) & set(self.numeric_columns))
        if both:
            raise ValueError(f"columns {both} are both categorical and numeric")
        return self

    def restricted_to(self, columns: Iterable[str]) -> EncoderConfig:
        """A copy keeping only the categorical / numeric columns present in ``columns``.

        Useful for datasets without some default column (e.g. real traces have no ``agent_type``)::

            cfg = EncoderConfig().restricted_to(matrix.tasks.columns)
        """
        cols = set(columns)
        return self.model_copy(
            update={
                "categorical_columns": tuple(c for c in self.categorical_columns if c in cols),
                "numeric_columns": tuple(c for c in self.numeric_columns if c in cols),
            }
        )

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists), the form saved in ``encoder.json``."""
        return self.model_dump(mode="json")

"""Shared feature encoder (task -> vector), complexity heuristic and privacy detector.

``router_rl.features`` imports only ``router_rl.core`` and numpy / polars / pydantic; the optional
sentence-embedding backend (torch / transformers) is imported lazily by
:mod:`router_rl.features.embeddings` when an ``embedding_model_path`` is configured.
"""

from router_rl.features.complexity import Complexity, complexity_score, complexity_scores
from router_rl.features.config import EncoderConfig
from router_rl.features.encoder import ENCODER_VERSION, FeatureEncoder
from router_rl.features.errors import EncoderLoadError, EncoderNotFittedError, FeatureInputError
from router_rl.features.privacy import (
    LARGE_TEXT_CHARS,
    SCAN_RULE,
    Finding,
    detect_sensitive,
    is_sensitive,
    is_sensitive_any,
    redact,
)

__all__ = [
    "ENCODER_VERSION",
    "LARGE_TEXT_CHARS",
    "SCAN_RULE",
    "Complexity",
    "EncoderConfig",
    "EncoderLoadError",
    "EncoderNotFittedError",
    "FeatureEncoder",
    "FeatureInputError",
    "Finding",
    "complexity_score",
    "complexity_scores",
    "detect_sensitive",
    "is_sensitive",
    "is_sensitive_any",
    "redact",
]

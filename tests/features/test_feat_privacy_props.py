"""Property-based checks of the privacy detector (hypothesis): API contracts on arbitrary text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router_rl.features import detect_sensitive, is_sensitive, redact

# text made of the characters secret patterns care about, plus arbitrary unicode
_PIECES = ["password", "token", "://", "AKIA", "eyJ", "sk-", "é", "\ud800"]
_ALPHA = st.sampled_from([*"aA1_-./+=:@ '\"\n?&$pPkK", *_PIECES])
TEXTS = st.one_of(st.text(max_size=300), st.lists(_ALPHA, max_size=120).map("".join))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(TEXTS)
def test_spans_are_valid_and_is_sensitive_agrees(text: str) -> None:
    found = detect_sensitive(text)
    assert is_sensitive(text) == bool(found)
    for f in found:
        assert 0 <= f.start < f.end <= len(text)
    assert found == sorted(found, key=lambda f: (f.start, f.end, f.kind))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(TEXTS, st.sampled_from(["password=Hunter2Secret", "AKIAIOSFODNN7EXAMPLE", "jane.doe@acme-corp.io"]))
def test_a_secret_is_found_wherever_it_is_embedded(prefix: str, secret: str) -> None:
    text = prefix + "\n" + secret + "\n"
    assert is_sensitive(text)
    assert secret not in redact(text)

"""Weighted FedAvg of LoRA tensors (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.federated.aggregate import is_adapter_key, weighted_fedavg, weighted_mean

KA = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
KB = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


def _state(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {KA: rng.normal(size=(4, 8)).astype(np.float32), KB: rng.normal(size=(8, 4)).astype(np.float32)}


def test_weighted_fedavg_equals_hand_computed_mean() -> None:
    rng = np.random.default_rng(0)
    s = [_state(rng) for _ in range(3)]
    w = [10, 30, 60]
    out = weighted_fedavg(s, w)
    for k in (KA, KB):
        hand = (10 * s[0][k].astype(np.float64) + 30 * s[1][k] + 60 * s[2][k]) / 100
        np.testing.assert_allclose(out[k], hand, rtol=1e-6, atol=1e-7)
        assert out[k].dtype == np.float32
    # a single element checked literally
    assert out[KA][0, 0] == pytest.approx(0.1 * s[0][KA][0, 0] + 0.3 * s[1][KA][0, 0] + 0.6 * s[2][KA][0, 0], rel=1e-5)


def test_weights_matter_and_scale_invariant() -> None:
    rng = np.random.default_rng(1)
    s = [_state(rng) for _ in range(2)]
    a = weighted_fedavg(s, [1, 1])
    b = weighted_fedavg(s, [1, 3])
    c = weighted_fedavg(s, [5, 15])
    assert not np.allclose(a[KA], b[KA])
    np.testing.assert_allclose(b[KA], c[KA], rtol=1e-6)
    # a zero-weight client does not count
    np.testing.assert_array_equal(weighted_fedavg(s, [0, 2])[KB], s[1][KB])


def test_rejects_non_adapter_tensors() -> None:
    rng = np.random.default_rng(2)
    s = _state(rng)
    s["base_model.model.model.embed_tokens.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="non-adapter"):
        weighted_fedavg([s, s], [1, 1])
    assert not is_adapter_key("base_model.model.lm_head.weight")
    assert is_adapter_key(KA) and is_adapter_key(KB)


@pytest.mark.parametrize(
    ("weights", "match"),
    [([1], "2 states but 1 weights"), ([0, 0], "sum to 0"), ([1, -1], ">= 0"), ([1, float("nan")], "finite")],
)
def test_bad_weights(weights: list[float], match: str) -> None:
    rng = np.random.default_rng(3)
    s = [_state(rng), _state(rng)]
    with pytest.raises(ValueError, match=match):
        weighted_fedavg(s, weights)


def test_mismatched_clients() -> None:
    rng = np.random.default_rng(4)
    a, b = _state(rng), _state(rng)
    with pytest.raises(ValueError, match="no client states"):
        weighted_fedavg([], [])
    b_missing = {KA: b[KA]}
    with pytest.raises(ValueError, match="client 1 keys differ"):
        weighted_fedavg([a, b_missing], [1, 1])
    b_shape = {KA: b[KA][:2], KB: b[KB]}
    with pytest.raises(ValueError, match=r"client 1 has shape \(2, 8\)"):
        weighted_fedavg([a, b_shape], [1, 1])


def test_weighted_mean() -> None:
    assert weighted_mean([1.0, 4.0], [3, 1]) == pytest.approx(1.75)

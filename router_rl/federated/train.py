"""Seeded local training and evaluation loops for a LoRA-wrapped causal LM (torch, 1 thread)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from router_rl.federated.config import FederatedConfig

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one client's local training in one round."""

    loss: float
    steps: int
    num_examples: int


@dataclass(frozen=True)
class EvalResult:
    """Token-level evaluation of a model on held-out sequences."""

    loss: float
    perplexity: float
    num_examples: int
    num_tokens: int


def _batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    for i, s in enumerate(seqs):  # SFT: no loss on the prompt of a MaskedSequence (data.py)
        labels[i, : getattr(s, "n_masked", 0)] = IGNORE_INDEX
    return ids, mask, labels


def _batches(
    seqs: Sequence[Sequence[int]], batch_size: int, rng: np.random.Generator | None
) -> Iterator[list[Sequence[int]]]:
    order = rng.permutation(len(seqs)) if rng is not None else np.arange(len(seqs))
    for start in range(0, len(order), batch_size):
        yield [seqs[i] for i in order[start : start + batch_size]]


def _seed_all(seed: Sequence[int]) -> np.random.Generator:
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(list(seed))
    torch.manual_seed(int(rng.integers(0, 2**62)))
    return rng


def _pad_id(model: Any) -> int:
    pid = getattr(model.config, "pad_token_id", None)
    return int(pid) if pid is not None else 0


def train_local(
    model: Any, seqs: Sequence[Sequence[int]], cfg: FederatedConfig, *, server_round: int, partition_id: int,
    lr: float | None = None, local_epochs: int | None = None, proximal_mu: float | None = None,
) -> TrainResult:
    """Train ``model``'s trainable (LoRA) parameters on ``seqs`` with AdamW.

    Seeded by ``(cfg.seed, server_round, partition_id)``: batch order and dropout are reproducible.

    Args:
        model: A peft model (only LoRA parameters require grad).
        seqs: Token-id sequences.
        cfg: Run config (batch size, epochs, step cap, weight decay).
        server_round: Current round (part of the seed).
        partition_id: Client index (part of the seed).
        lr: Learning rate override (the server may send one); default ``cfg.lr``.
        local_epochs: Epochs override; default ``cfg.local_epochs``.
        proximal_mu: FedProx ``mu``: adds ``mu / 2 * ||w - w_global||^2`` over the LoRA parameters
            (``w_global`` = their values when this call starts); 0 adds nothing (plain FedAvg).
            Default: ``cfg.proximal_mu`` (0 unless ``cfg.strategy == "fedprox"``).

    Returns:
        Mean token loss over the steps taken, the step count and ``len(seqs)``.
    """
    import torch

    if not seqs:
        raise ValueError(f"train_local: client {partition_id} has no training examples")
    rng = _seed_all((cfg.seed, server_round, partition_id, 1))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("train_local: model has no trainable parameters (expected a LoRA-wrapped model)")
    if proximal_mu is None:
        proximal_mu = cfg.proximal_mu if cfg.strategy == "fedprox" else 0.0
    if proximal_mu < 0:
        raise ValueError(f"train_local: proximal_mu must be >= 0, got {proximal_mu}")
    anchor = [p.detach().clone() for p in params] if proximal_mu > 0 else []
    opt = torch.optim.AdamW(params, lr=lr if lr is not None else cfg.lr, weight_decay=cfg.weight_decay)
    pad = _pad_id(model)
    model.train()
    losses: list[float] = []
    steps = 0
    for _ in range(local_epochs if local_epochs is not None else cfg.local_epochs):
        for batch in _batches(seqs, cfg.batch_size, rng):
            ids, mask, labels = _batch(batch, pad)
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            loss = out.loss
            if anchor:
                loss = loss + 0.5 * proximal_mu * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(out.loss.detach()))
            steps += 1
            if cfg.max_local_steps and steps >= cfg.max_local_steps:
                break
        if cfg.max_local_steps and steps >= cfg.max_local_steps:
            break
    model.eval()
    return TrainResult(loss=float(np.mean(losses)), steps=steps, num_examples=len(seqs))


def evaluate(model: Any, seqs: Sequence[Sequence[int]], *, batch_size: int = 16) -> EvalResult:
    """Mean next-token cross-entropy (per predicted token) and perplexity on ``seqs``."""
    import torch

    if not seqs:
        raise ValueError("evaluate: no sequences")
    torch.set_num_threads(1)
    pad = _pad_id(model)
    model.eval()
    total, n_tok = 0.0, 0
    with torch.no_grad():
        for batch in _batches(seqs, batch_size, None):
            ids, mask, labels = _batch(batch, pad)
            logits = model(input_ids=ids, attention_mask=mask).logits
            shift_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])
            shift_labels = labels[:, 1:].reshape(-1)
            loss = torch.nn.functional.cross_entropy(
                shift_logits.float(), shift_labels, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            total += float(loss)
            n_tok += int((shift_labels != IGNORE_INDEX).sum())
    mean = total / max(n_tok, 1)
    return EvalResult(loss=mean, perplexity=math.exp(min(mean, 50.0)), num_examples=len(seqs), num_tokens=n_tok)

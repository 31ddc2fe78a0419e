"""Per-agent data partitions: each client's prompts, tokenised locally (prompts never leave it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router_rl.federated.config import FederatedConfig


@dataclass(frozen=True)
class ClientPartition:
    """One client's local data (token ids only; prompt text is dropped after tokenisation).

    Attributes:
        partition_id: Index of the client (position of its agent type in the config).
        agent_type: The QE agent type this client fine-tunes for.
        train: Token-id sequences of the training split.
        eval: Token-id sequences of the held-out (val + test) split.
    """

    partition_id: int
    agent_type: str
    train: tuple[tuple[int, ...], ...]
    eval: tuple[tuple[int, ...], ...]

    @property
    def num_train(self) -> int:
        """Number of local training examples (the FedAvg weight)."""
        return len(self.train)

    @property
    def num_eval(self) -> int:
        """Number of held-out examples."""
        return len(self.eval)


def agent_prompts(cfg: FederatedConfig, agent_type: str) -> tuple[list[str], list[str]]:
    """``(train_prompts, heldout_prompts)`` of ``agent_type`` in the simulated fleet of ``cfg``.

    Uses the fleet's own train split for training and its val + test splits as held-out data.
    """
    from router_rl.traces.simulate import simulate_fleet

    ts = simulate_fleet(cfg.n_tasks, seed=cfg.seed)
    tasks = ts.outcomes.select("task_id", "prompt", "agent_type", "split").unique("task_id", maintain_order=True)
    mine = tasks.filter(tasks["agent_type"] == agent_type)
    train = mine.filter(mine["split"] == "train")["prompt"].to_list()
    held = mine.filter(mine["split"] != "train")["prompt"].to_list()
    if cfg.max_examples_per_client:
        train = train[: cfg.max_examples_per_client]
    if cfg.max_eval_examples_per_client:
        held = held[: cfg.max_eval_examples_per_client]
    if not train or not held:
        raise ValueError(
            f"agent type {agent_type!r}: {len(train)} train / {len(held)} held-out prompts in a fleet of "
            f"n_tasks={cfg.n_tasks}; raise n_tasks"
        )
    return train, held


def tokenize(tokenizer: Any, prompts: list[str], max_length: int) -> tuple[tuple[int, ...], ...]:
    """Tokenise ``prompts`` as ``<bos> text <eos>`` truncated to ``max_length`` tokens."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = []
    for p in prompts:
        ids = list(tokenizer(p, add_special_tokens=False)["input_ids"])
        seq = ([bos] if bos is not None else []) + ids + ([eos] if eos is not None else [])
        out.append(tuple(int(t) for t in seq[:max_length]))
    return tuple(out)


def build_partition(cfg: FederatedConfig, partition_id: int, tokenizer: Any) -> ClientPartition:
    """Build client ``partition_id``'s partition (its agent type's prompts, tokenised)."""
    if not 0 <= partition_id < cfg.num_clients:
        raise ValueError(f"partition-id {partition_id} out of range: the config has {cfg.num_clients} agent types")
    agent = cfg.agent_types[partition_id]
    train, held = agent_prompts(cfg, agent)
    return ClientPartition(
        partition_id=partition_id,
        agent_type=agent,
        train=tokenize(tokenizer, train, cfg.max_length),
        eval=tokenize(tokenizer, held, cfg.max_length),
    )

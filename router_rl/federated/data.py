"""Per-agent data partitions, tokenised locally (text never leaves the client).

``data_source = "simulated"``: the agent type's simulated prompts for language modelling.
``data_source = "trajectories"``: the accepted (prompt -> response) pairs of the client's own
trajectory store (:mod:`router_rl.federated.trajectories`) for supervised fine-tuning; each
sequence is a :class:`MaskedSequence` whose prompt tokens carry no loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
        report: Counts of how the data were read (trajectories: :class:`TrajectoryReport` plus the
            train / held-out split and truncations); empty for simulated prompts.
    """

    partition_id: int
    agent_type: str
    train: tuple[tuple[int, ...], ...]
    eval: tuple[tuple[int, ...], ...]
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_train(self) -> int:
        """Number of local training examples (the FedAvg weight)."""
        return len(self.train)

    @property
    def num_eval(self) -> int:
        """Number of held-out examples."""
        return len(self.eval)


def _capped(train: list[Any], held: list[Any], cfg: FederatedConfig) -> tuple[list[Any], list[Any]]:
    """``train`` / ``held`` cut to the config's per-client caps (0 = no cap)."""
    if cfg.max_examples_per_client:
        train = train[: cfg.max_examples_per_client]
    if cfg.max_eval_examples_per_client:
        held = held[: cfg.max_eval_examples_per_client]
    return train, held

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
    train, held = _capped(train, held, cfg)
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


class MaskedSequence(tuple[int, ...]):
    """Token ids whose first ``n_masked`` tokens (the prompt) carry no loss (SFT on the response).

    A plain tuple to every consumer; :func:`router_rl.federated.train._batch` reads ``n_masked``.
    """

    n_masked: int

    def __new__(cls, ids: Any = (), n_masked: int = 0) -> MaskedSequence:
        obj = super().__new__(cls, (int(t) for t in ids))
        obj.n_masked = int(n_masked)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (MaskedSequence, (tuple(self), self.n_masked))


def tokenize_pair(
    tokenizer: Any, prompt: str, response: str, *, max_length: int, max_request_tokens: int
) -> MaskedSequence:
    """``<bos> user: PROMPT\nassistant: RESPONSE <eos>`` with the loss on ``RESPONSE <eos>`` only.

    The layout is the plain chat template the engine serves with
    (:data:`router_rl.engines.gguf_export.PLAIN_CHAT_TEMPLATE`). The prompt keeps its last
    ``max_request_tokens`` tokens (where the question is); the sequence is cut at ``max_length``.
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    head = list(tokenizer(f"user: {prompt}\nassistant:", add_special_tokens=False)["input_ids"])
    head = ([bos] if bos is not None else []) + head[-max_request_tokens:]
    body = list(tokenizer(f" {response}", add_special_tokens=False)["input_ids"]) + ([eos] if eos is not None else [])
    seq = (head + body)[:max_length]
    return MaskedSequence(seq, n_masked=min(len(head), len(seq)))


def trajectory_partition(cfg: FederatedConfig, partition_id: int, tokenizer: Any) -> ClientPartition:
    """Client ``partition_id``'s accepted trajectories, split by prompt hash, tokenised for SFT."""
    from router_rl.federated.trajectories import TrajectoryStore, split_heldout

    name = cfg.agent_types[partition_id]
    store = TrajectoryStore(cfg.trajectory_dirs[partition_id])
    trajs, rep = store.read(cfg.quality_threshold)
    train, held = split_heldout(trajs, cfg.heldout_fraction, cfg.seed)
    n_train, n_held = len(train), len(held)
    train, held = _capped(train, held, cfg)
    if not train or not held:
        raise ValueError(
            f"client {name!r} (store {store.root}): {len(train)} train / {len(held)} held-out accepted "
            f"trajectories (accepted {rep.accepted} of {rep.rows} rows at quality >= {cfg.quality_threshold})"
        )

    def tok(ts: list[Any]) -> tuple[MaskedSequence, ...]:
        return tuple(tokenize_pair(tokenizer, t.prompt, t.response, max_length=cfg.max_length,
                                   max_request_tokens=cfg.max_request_tokens) for t in ts)

    tr, ev = tok(train), tok(held)
    no_response = sum(1 for s in (*tr, *ev) if len(s) <= s.n_masked)
    if no_response:
        raise ValueError(
            f"client {name!r}: {no_response} sequence(s) have no response token left after truncation "
            f"(max_length={cfg.max_length}, max_request_tokens={cfg.max_request_tokens}); raise max_length"
        )
    report = {**rep.to_dict(), "train_accepted": n_train, "heldout_accepted": n_held,
              "train_used": len(tr), "heldout_used": len(ev),
              "truncated": sum(1 for s in (*tr, *ev) if len(s) == cfg.max_length)}
    report.pop("join", None)
    return ClientPartition(partition_id=partition_id, agent_type=name, train=tr, eval=ev, report=report)


def build_partition(cfg: FederatedConfig, partition_id: int, tokenizer: Any) -> ClientPartition:
    """Build client ``partition_id``'s partition (its prompts or its accepted trajectories, tokenised)."""
    if not 0 <= partition_id < cfg.num_clients:
        raise ValueError(f"partition-id {partition_id} out of range: the config has {cfg.num_clients} agent types")
    if cfg.data_source == "trajectories":
        return trajectory_partition(cfg, partition_id, tokenizer)
    agent = cfg.agent_types[partition_id]
    train, held = agent_prompts(cfg, agent)
    return ClientPartition(
        partition_id=partition_id,
        agent_type=agent,
        train=tokenize(tokenizer, train, cfg.max_length),
        eval=tokenize(tokenizer, held, cfg.max_length),
    )

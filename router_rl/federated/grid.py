"""An in-process Flower ``Grid``: the real ServerApp logic and ClientApp over function calls, no Ray.

Every message is deep-copied on the way out and back (what a wire does: neither side can mutate
the other's objects), a client exception becomes an error reply (as Flower's runtimes do), each
node keeps its own ``Context`` (SecAgg+ stores its keys there between stages), and every reply is
kept in :attr:`LocalGrid.received` with the serialised size of every message, so tests can check
what the server-side code was handed and measure bytes per client per round.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid


def message_nbytes(msg: Message) -> int:
    """Serialised size of ``msg``: the sum of its deflated objects (Flower sends each once)."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return int(sum(len(o.deflate()) for o in get_all_nested_objects(msg).values()))


@dataclass(frozen=True)
class Exchange:
    """One request/reply pair as the server saw it."""

    node_id: int
    partition_id: int
    group_id: str  # the round: the message's group id, else its config's ``server-round``
    message_type: str
    sent_bytes: int  # server -> client
    received_bytes: int  # client -> server (0 when the client failed)
    reply: Message


def _round_of(msg: Message) -> str:
    if msg.metadata.group_id:
        return msg.metadata.group_id
    conf = msg.content.config_records.get("config") if msg.has_content() else None
    return str(conf["server-round"]) if conf is not None and "server-round" in conf else ""


class LocalGrid(Grid):
    """A Grid delivering messages to ``client_app`` for ``num_nodes`` nodes in this process.

    Args:
        client_app: The ClientApp every node runs.
        num_nodes: Nodes; node ``i`` gets ``node_config = {"partition-id": i}``.
        run_config: ``context.run_config`` of every node.
        node_id_base: First node id (ids are ``base + i``).
    """

    def __init__(self, client_app: ClientApp, num_nodes: int, *, run_config: dict | None = None,
                 node_id_base: int = 1001) -> None:
        from flwr.supercore.run import Run

        self.client_app = client_app
        self.node_ids = [node_id_base + i for i in range(num_nodes)]
        self.contexts = {
            nid: Context(run_id=1, node_id=nid, node_config={"partition-id": i}, state=RecordDict(),
                         run_config=dict(run_config or {}))
            for i, nid in enumerate(self.node_ids)
        }
        from flwr.common.constant import SUPERLINK_NODE_ID
        from flwr.supercore.task_identity import TaskIdentity

        self._run = Run.create_empty(1)
        # what Flower's ServerApp runtimes set for the server process (Message() needs it)
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = 1
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        self._inbox: dict[str, Message] = {}
        self.received: list[Exchange] = []

    def set_run(self, run_id: int) -> None:  # type: ignore[override]
        """Not used: the run is fixed."""

    @property
    def run(self) -> Any:
        """The (empty) run this grid belongs to."""
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        """``Message(content, dst_node_id, message_type, group_id=group_id)``."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """The node ids, ascending."""
        return list(self.node_ids)

    def _deliver(self, msg: Message) -> Message:
        nid = msg.metadata.dst_node_id
        if nid not in self.contexts:
            raise ValueError(f"LocalGrid: no node {nid}")
        out = copy.deepcopy(msg)
        out.metadata.__dict__["_message_id"] = uuid.uuid4().hex
        out.metadata.created_at = time.time()
        sent = message_nbytes(out)
        try:
            reply = self.client_app(out, self.contexts[nid])
            reply = copy.deepcopy(reply)
            got = message_nbytes(reply)
        except Exception as exc:
            reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=out)
            got = 0
        pid = int(self.contexts[nid].node_config["partition-id"])
        self.received.append(Exchange(nid, pid, _round_of(out), out.metadata.message_type, sent, got, reply))
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message now; its reply waits under the returned id."""
        ids = []
        for m in messages:
            mid = uuid.uuid4().hex
            self._inbox[mid] = self._deliver(m)
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies of pushed messages (each once)."""
        return [self._inbox.pop(i) for i in message_ids if i in self._inbox]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Deliver ``messages`` in order and return their replies."""
        return [self._deliver(m) for m in messages]

    def exchanges(self, *, message_type: str | None = None) -> Sequence[Exchange]:
        """All recorded exchanges (optionally of one message type)."""
        return [e for e in self.received if message_type is None or e.message_type == message_type]

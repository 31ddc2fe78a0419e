"""Federated LoRA fine-tuning of the local base model with Flower.

Each QE agent type fine-tunes a LoRA adapter of the shared local base model on its own prompts, or
on the accepted (prompt -> response) trajectories of its own node (``data_source="trajectories"``);
only adapter tensors travel to the server, which aggregates them with example-weighted FedAvg.

Nothing heavy is imported here: ``flwr``, ``torch``, ``transformers`` and ``peft`` are imported by
the sub-modules that need them (``lora``, ``train``, ``client``, ``client_app``, ``server_app``,
``runner``, ``tiny``, ``personal``, ``export``). :mod:`router_rl.federated.config` and
:mod:`router_rl.federated.aggregate` need only pydantic / numpy; ``trajectories`` and ``schedule``
(the nodes' trajectory stores and the round scheduler) need polars.
"""

from router_rl.federated.config import FederatedConfig

__all__ = ["FederatedConfig"]

"""Load the LOCAL base model and wrap it with a LoRA adapter; move adapter tensors in and out.

Only LoRA tensors (``lora_A`` / ``lora_B``) ever leave a client: :func:`get_adapter_arrays` returns
exactly those, and :func:`set_adapter_arrays` refuses anything else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.federated.aggregate import is_adapter_key
from router_rl.federated.config import FederatedConfig

if TYPE_CHECKING:
    from peft import PeftModel


class BaseModelNotFoundError(FileNotFoundError):
    """The base model folder is missing or incomplete (there is no hub fallback)."""


def _require_local(path: Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise BaseModelNotFoundError(
            f"base model folder {str(p)!r} does not exist; router_rl.federated only loads LOCAL models "
            "(no hub download). Create one with router_rl.federated.tiny.build_tiny_base_model or point "
            "base_model_path at a saved transformers model."
        )
    missing = [n for n in ("config.json",) if not (p / n).is_file()]
    if not any((p / n).is_file() for n in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
        missing.append("model.safetensors")
    if not any((p / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        missing.append("tokenizer.json")
    if missing:
        raise BaseModelNotFoundError(f"base model folder {str(p)!r} is incomplete: missing {missing}")
    return p


def load_tokenizer(path: str | Path) -> Any:
    """Load the tokenizer saved next to the base model (offline); ensures a pad token.

    A folder with a SentencePiece ``tokenizer.model`` and no ``tokenizer.json`` is read with
    :class:`router_rl.federated.spm.SentencePieceTokenizer` (the ids llama.cpp uses).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    folder = _require_local(Path(path))
    if not (folder / "tokenizer.json").is_file() and (folder / "tokenizer.model").is_file():
        # a SentencePiece-only folder (the llama.cpp engine's tiny model): read it with sentencepiece
        from router_rl.federated.spm import SentencePieceTokenizer

        return SentencePieceTokenizer(folder / "tokenizer.model")
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base_model(path: str | Path) -> Any:
    """Load the base causal LM from a LOCAL folder (float32, eval mode, offline)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(_require_local(Path(path)), local_files_only=True,
                                                 dtype=torch.float32)
    model.eval()
    return model


def lora_config(cfg: FederatedConfig) -> Any:
    """The peft ``LoraConfig`` of ``cfg``."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft annotates int, accepts float
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
    )


def build_lora_model(cfg: FederatedConfig, *, base: Any | None = None) -> PeftModel:
    """Load the base model (unless given) and wrap it with a freshly initialised LoRA adapter.

    The LoRA initialisation is seeded by ``cfg.seed`` so every party starts from the same adapter.
    """
    import torch
    from peft import get_peft_model

    model = base if base is not None else load_base_model(cfg.base_model_path)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in cfg.target_modules if m not in present]
    if missing:
        raise ValueError(f"target_modules: {missing} not found in base model {cfg.base_model_path}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        peft_model = get_peft_model(model, lora_config(cfg))
    return peft_model


def get_adapter_arrays(model: PeftModel) -> dict[str, np.ndarray]:
    """The adapter's LoRA tensors as numpy arrays (keys as in peft's saved adapter files)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    out = {k: v.detach().cpu().numpy().copy() for k, v in state.items()}
    bad = [k for k in out if not is_adapter_key(k)]
    if bad:
        raise ValueError(f"adapter state holds non-LoRA tensors {bad[:3]}; only lora_A/lora_B may be exchanged")
    return out


def set_adapter_arrays(model: PeftModel, arrays: Mapping[str, np.ndarray]) -> None:
    """Load LoRA tensors into ``model``'s adapter; every adapter key must be present, nothing else."""
    import torch
    from peft import set_peft_model_state_dict

    expected = set(get_adapter_arrays(model))
    got = set(arrays)
    if got != expected:
        raise ValueError(
            f"adapter arrays do not match the model: missing {sorted(expected - got)[:3]}, "
            f"unexpected {sorted(got - expected)[:3]}"
        )
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()}
    result = set_peft_model_state_dict(model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"peft rejected adapter keys {unexpected[:3]}")


def count_parameters(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return int(trainable), int(total)


def load_saved_adapter(cfg: FederatedConfig, adapter_dir: str | Path) -> PeftModel:
    """Load a saved global adapter (peft ``save_pretrained`` format) onto the LOCAL base model."""
    from peft import PeftModel

    d = Path(adapter_dir)
    if not (d / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{d}: not a peft adapter folder (adapter_config.json missing)")
    model = PeftModel.from_pretrained(load_base_model(cfg.base_model_path), d)
    model.eval()
    return model

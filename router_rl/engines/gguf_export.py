"""Hugging Face Llama weights and PEFT LoRA adapters to GGUF, the files llama.cpp loads.

This follows what llama.cpp's own converters (``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py``)
do for the Llama architecture, written against the ``gguf`` package so that no llama.cpp source tree
is needed at run time:

* tensor names through ``gguf``'s Llama name map (``model.layers.0.self_attn.q_proj.weight`` ->
  ``blk.0.attn_q.weight``);
* the query and key projections permuted from Hugging Face's rotate-half layout of rotary
  embeddings to GGML's interleaved one (``_permute``; for a LoRA pair only ``B``, the output side,
  is permuted: ``(P B) A = P (B A)``);
* a SentencePiece tokenizer (``tokenizer.model``) as ``tokenizer.ggml.model = "llama"`` with its
  pieces, scores and token types (normal, unknown, control, byte);
* LoRA adapters as ``general.type = "adapter"``, ``adapter.type = "lora"``, ``adapter.lora.alpha``,
  tensors ``<base tensor>.lora_a`` ``(r, in)`` and ``.lora_b`` ``(out, r)``.

Only what a float32/float16 Llama needs is supported; anything else is refused with the name of what
is missing, never silently skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from router_rl.core.errors import RouterRLError

#: A chat template for models without one (role: content lines, then ``assistant:``).
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


class GGUFExportError(RouterRLError):
    """A model or adapter folder cannot be written as GGUF (names the file and what is wrong)."""


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rotate-half (Hugging Face) -> interleaved (GGML) row order of a query/key projection."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise GGUFExportError(f"{path}: missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GGUFExportError(f"{path}: not JSON ({e})") from e
    if not isinstance(data, dict):
        raise GGUFExportError(f"{path}: expected a JSON object")
    return data


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise GGUFExportError(f"{path}: missing (save the model with safe_serialization=True)")
    from safetensors.numpy import load_file

    return dict(load_file(str(path)))


class _LlamaShape:
    """The hyper-parameters of a Llama ``config.json`` the GGUF header needs."""

    def __init__(self, cfg: dict[str, Any], where: Path) -> None:
        arch = cfg.get("architectures") or []
        if cfg.get("model_type") != "llama" and "LlamaForCausalLM" not in arch:
            raise GGUFExportError(f"{where}: model_type {cfg.get('model_type')!r}, only 'llama' is supported")
        try:
            self.vocab_size = int(cfg["vocab_size"])
            self.hidden = int(cfg["hidden_size"])
            self.ffn = int(cfg["intermediate_size"])
            self.n_layers = int(cfg["num_hidden_layers"])
            self.n_head = int(cfg["num_attention_heads"])
            self.n_head_kv = int(cfg.get("num_key_value_heads") or self.n_head)
            self.context = int(cfg.get("max_position_embeddings", 2048))
            self.eps = float(cfg.get("rms_norm_eps", 1e-6))
            rope = cfg.get("rope_parameters") or {}
            self.rope_theta = float(cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0)
        except (KeyError, TypeError, ValueError) as e:
            raise GGUFExportError(f"{where}: missing or bad Llama hyper-parameter ({e})") from e

    def permute_for(self, hf_name: str, w: np.ndarray) -> np.ndarray:
        if hf_name.endswith("q_proj.weight"):
            return _permute(w, self.n_head)
        if hf_name.endswith("k_proj.weight"):
            return _permute(w, self.n_head_kv)
        return w


def _tokenizer_vocab(path: Path) -> tuple[list[bytes], list[float], list[int], dict[str, int]]:
    import gguf
    import sentencepiece as spm

    if not path.is_file():
        raise GGUFExportError(f"{path}: missing SentencePiece model (only SentencePiece tokenizers are supported)")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    tokens: list[bytes] = []
    scores: list[float] = []
    types: list[int] = []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(int(gguf.TokenType.UNKNOWN))
        elif sp.is_control(i):
            types.append(int(gguf.TokenType.CONTROL))
        elif sp.is_byte(i):
            types.append(int(gguf.TokenType.BYTE))
        elif sp.is_unused(i):
            types.append(int(gguf.TokenType.UNUSED))
        else:
            types.append(int(gguf.TokenType.NORMAL))
    special = {"unk": sp.unk_id(), "bos": sp.bos_id(), "eos": sp.eos_id(), "pad": sp.pad_id()}
    return tokens, scores, types, special


def llama_to_gguf(
    hf_dir: str | Path,
    out_path: str | Path,
    *,
    dtype: str = "f32",
    chat_template: str | None = None,
    name: str = "router-rl-tiny",
) -> Path:
    """Write a Hugging Face Llama folder (``config.json``, ``model.safetensors``, ``tokenizer.model``) as GGUF.

    Args:
        hf_dir: The model folder (``save_pretrained`` output plus the SentencePiece ``tokenizer.model``).
        out_path: The ``.gguf`` file to write.
        dtype: ``f32`` or ``f16`` for the 2-D weights (norms stay float32, as llama.cpp expects).
        chat_template: Jinja chat template stored in the file (default: the folder's
            ``tokenizer_config.json`` template, else :data:`PLAIN_CHAT_TEMPLATE`).
        name: ``general.name``.

    Returns:
        ``out_path``.

    Raises:
        GGUFExportError: not a Llama model, a missing file, or a tensor without a GGUF name.
    """
    import gguf

    src = Path(hf_dir)
    if dtype not in ("f32", "f16"):
        raise GGUFExportError(f"dtype: expected 'f32' or 'f16', got {dtype!r}")
    shape = _LlamaShape(_read_json(src / "config.json"), src / "config.json")
    weights = _read_safetensors(src / "model.safetensors")
    tokens, scores, types, special = _tokenizer_vocab(src / "tokenizer.model")
    if len(tokens) != shape.vocab_size:
        raise GGUFExportError(
            f"{src / 'tokenizer.model'}: {len(tokens)} pieces, config.json says vocab_size={shape.vocab_size}"
        )
    if chat_template is None:
        tcfg = src / "tokenizer_config.json"
        chat_template = (_read_json(tcfg).get("chat_template") if tcfg.is_file() else None) or PLAIN_CHAT_TEMPLATE

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.n_layers)
    w = gguf.GGUFWriter(str(out), arch="llama")
    w.add_name(name)
    w.add_context_length(shape.context)
    w.add_embedding_length(shape.hidden)
    w.add_block_count(shape.n_layers)
    w.add_feed_forward_length(shape.ffn)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.hidden // shape.n_head)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_layer_norm_rms_eps(shape.eps)
    w.add_vocab_size(shape.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    for kind, tid in special.items():
        if tid >= 0:
            getattr(w, f"add_{kind}_token_id")(tid)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(chat_template)
    for hf_name in sorted(weights, key=_tensor_order):
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by llama.cpp from rope_freq_base
        gg_name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gg_name is None:
            raise GGUFExportError(f"{src / 'model.safetensors'}: tensor {hf_name!r} has no GGUF name")
        arr = shape.permute_for(hf_name, np.asarray(weights[hf_name], dtype=np.float32))
        if dtype == "f16" and arr.ndim == 2:
            arr = arr.astype(np.float16)
        w.add_tensor(gg_name, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def _tensor_order(name: str) -> tuple[int, str]:
    """Embeddings first, then layers in numeric order, then the rest (as llama.cpp's converter)."""
    parts = name.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        return (1 + int(parts[i + 1]), name)
    return (0 if "embed" in name else 10**6, name)


def lora_to_gguf(adapter_dir: str | Path, base_hf_dir: str | Path, out_path: str | Path) -> Path:
    """Write a PEFT LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``) as a GGUF LoRA.

    Args:
        adapter_dir: PEFT ``save_pretrained`` folder of an adapter of the model in ``base_hf_dir``.
        base_hf_dir: The base model's Hugging Face folder (its ``config.json`` gives the head counts
            that the query/key permutation needs).
        out_path: The ``.gguf`` adapter file to write (llama.cpp: ``--lora FILE``).

    Returns:
        ``out_path``.

    Raises:
        GGUFExportError: a missing file, an adapter that is not plain LoRA (DoRA, biases, embedding
            adapters) or a tensor without a GGUF name.
    """
    import gguf

    adir, bdir = Path(adapter_dir), Path(base_hf_dir)
    acfg = _read_json(adir / "adapter_config.json")
    shape = _LlamaShape(_read_json(bdir / "config.json"), bdir / "config.json")
    if str(acfg.get("peft_type", "LORA")).upper() != "LORA" or acfg.get("use_dora"):
        raise GGUFExportError(f"{adir / 'adapter_config.json'}: only plain LoRA adapters are supported")
    try:
        alpha = float(acfg["lora_alpha"])
    except (KeyError, TypeError, ValueError) as e:
        raise GGUFExportError(f"{adir / 'adapter_config.json'}: missing or bad lora_alpha") from e
    tensors = _read_safetensors(adir / "adapter_model.safetensors")
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in tensors.items():
        for side in ("lora_A", "lora_B"):
            tag = f".{side}.weight"
            if key.endswith(tag):
                base = key[: -len(tag)].removeprefix("base_model.model.") + ".weight"
                pairs.setdefault(base, {})[side] = np.asarray(arr, dtype=np.float32)
                break
        else:
            raise GGUFExportError(f"{adir / 'adapter_model.safetensors'}: unsupported adapter tensor {key!r}")
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.n_layers)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out), arch="llama")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for base in sorted(pairs, key=_tensor_order):
        ab = pairs[base]
        if set(ab) != {"lora_A", "lora_B"}:
            raise GGUFExportError(f"{adir / 'adapter_model.safetensors'}: {base} lacks one of lora_A / lora_B")
        gg_name = tmap.get_name(base, try_suffixes=(".weight",))
        if gg_name is None:
            raise GGUFExportError(f"{adir / 'adapter_model.safetensors'}: {base!r} has no GGUF name")
        w.add_tensor(f"{gg_name}.lora_a", np.ascontiguousarray(ab["lora_A"]))
        w.add_tensor(f"{gg_name}.lora_b", np.ascontiguousarray(shape.permute_for(base, ab["lora_B"])))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out

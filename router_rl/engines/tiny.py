"""A tiny Llama-architecture model that a real llama.cpp server runs, made offline and reproducibly.

The weights are random (seeded) and the text it writes is gibberish, but the engine, the protocol,
streaming, token counts, context limits and failures are real. What is built:

* ``tokenizer.model``: a SentencePiece BPE tokenizer (byte fallback, so any text encodes) trained on
  the prompts of a simulated QE fleet (:func:`router_rl.traces.simulate_fleet`);
* ``hf/``: a Hugging Face ``LlamaForCausalLM`` folder (``config.json``, ``model.safetensors``, the
  tokenizer) that PEFT can fine-tune;
* ``tiny.gguf``: the same weights as GGUF (:func:`router_rl.engines.gguf_export.llama_to_gguf`);
* optionally a LoRA adapter fine-tuned to answer a fixed phrase (:func:`build_tiny_lora`), as PEFT
  and as GGUF LoRA, so that tests can see that serving ``base+adapter`` changes the output.

Same arguments, same bytes: the builder is deterministic on one machine (tested by hashing).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from router_rl.engines.gguf_export import llama_to_gguf, lora_to_gguf

#: The phrase :func:`build_tiny_lora` trains the adapter towards (a tiny model learns it only in part).
LORA_PHRASE = "PASS all tests"


@dataclass(frozen=True)
class TinyEngineModel:
    """Paths of a built tiny model.

    Attributes:
        root: The output folder.
        hf_dir: Hugging Face folder (``config.json``, ``model.safetensors``, ``tokenizer.model``).
        gguf: The GGUF file llama.cpp serves.
        context_length: The model's context window in tokens.
    """

    root: Path
    hf_dir: Path
    gguf: Path
    context_length: int

    def sha256(self) -> str:
        """Hex digest of the GGUF file (what "deterministic" is checked on)."""
        return hashlib.sha256(self.gguf.read_bytes()).hexdigest()


def _simulated_prompts(n_tasks: int, seed: int) -> list[str]:
    from router_rl.traces.simulate import simulate_fleet

    ts = simulate_fleet(n_tasks, seed=seed)
    prompts = ts.outcomes.select("task_id", "prompt").unique("task_id", maintain_order=True)["prompt"]
    return [str(p) for p in prompts.to_list()]


def train_sentencepiece(texts: Sequence[str], vocab_size: int) -> bytes:
    """A SentencePiece BPE model (serialized) with ``<unk>``=0, ``<s>``=1, ``</s>``=2 and byte fallback.

    Args:
        texts: Training sentences (non-empty).
        vocab_size: Pieces including the 3 specials and the 256 byte pieces (>= 300).
    """
    import sentencepiece as spm

    if vocab_size < 300:
        raise ValueError(f"train_sentencepiece: vocab_size must be >= 300 (256 bytes + specials), got {vocab_size}")
    if not texts:
        raise ValueError("train_sentencepiece: no training text")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return buf.getvalue()


def build_tiny_engine_model(
    out_dir: str | Path,
    seed: int = 0,
    *,
    vocab_size: int = 600,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    context_length: int = 256,
    corpus_tasks: int = 300,
    dtype: str = "f32",
) -> TinyEngineModel:
    """Build the tiny model (see the module docstring) into ``out_dir``.

    Args:
        out_dir: Output folder (created; files in it are overwritten).
        seed: Seed of the weights and of the simulated prompts the tokenizer is trained on.
        vocab_size: SentencePiece vocabulary size.
        hidden_size: Model width (a multiple of ``2 * num_heads``).
        num_layers: Decoder layers.
        num_heads: Attention heads.
        context_length: Context window in tokens (``max_position_embeddings``).
        corpus_tasks: Simulated tasks whose prompts train the tokenizer.
        dtype: GGUF weight type, ``f32`` or ``f16``.

    Returns:
        The paths of what was built.
    """
    if hidden_size % (2 * num_heads):
        raise ValueError(f"build_tiny_engine_model: hidden_size {hidden_size} must be a multiple of 2 x {num_heads}")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    root = Path(out_dir)
    hf = root / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    sp_model = train_sentencepiece(_simulated_prompts(corpus_tasks, seed), vocab_size)
    (hf / "tokenizer.model").write_bytes(sp_model)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=context_length,
        rms_norm_eps=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
        # a wider spread than the 0.02 default, so that greedy decoding does not repeat one token
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, 0.5)
    model.save_pretrained(hf, safe_serialization=True)
    (hf / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    )
    gguf = llama_to_gguf(hf, root / "tiny.gguf", dtype=dtype, name=f"router-rl-tiny-s{seed}")
    return TinyEngineModel(root=root, hf_dir=hf, gguf=gguf, context_length=context_length)


def build_tiny_lora(
    model: TinyEngineModel,
    out_dir: str | Path,
    seed: int = 0,
    *,
    phrase: str = LORA_PHRASE,
    steps: int = 60,
    rank: int = 8,
    lr: float = 0.05,
    n_prompts: int = 8,
) -> tuple[Path, Path]:
    """Fine-tune a LoRA adapter of ``model`` towards answering ``phrase``; write it as PEFT and GGUF LoRA.

    The training text is ``"user: <prompt>\\nassistant: <phrase></s>"`` (the plain chat template of
    :data:`router_rl.engines.gguf_export.PLAIN_CHAT_TEMPLATE`) over simulated prompts, with the loss
    on the answer only (a fixture, not a recipe).

    Args:
        model: The base model (:func:`build_tiny_engine_model`).
        out_dir: Output folder: ``peft/`` and ``adapter.gguf``.
        seed: Seed of the adapter's initialisation and the prompt sample.
        phrase: What the adapter learns to answer.
        steps: Adam steps.
        rank: LoRA rank (``lora_alpha = 2 * rank``, on every attention and MLP projection).
        lr: Learning rate.
        n_prompts: Simulated prompts in the (single, full) training batch.

    Returns:
        ``(peft_dir, gguf_path)``.
    """
    import sentencepiece as spm
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=str(model.hf_dir / "tokenizer.model"))
    prompts = _simulated_prompts(n_prompts, seed + 1)[:n_prompts]
    heads = [[sp.bos_id(), *sp.encode(f"user: {p[:80]}\nassistant:")] for p in prompts]
    answer = [*sp.encode(f" {phrase}"), sp.eos_id()]
    width = max(len(h) for h in heads) + len(answer)
    ids = torch.full((len(heads), width), sp.eos_id(), dtype=torch.long)
    mask = torch.zeros((len(heads), width), dtype=torch.long)
    labels = torch.full((len(heads), width), -100, dtype=torch.long)  # the loss is on the answer only
    for i, h in enumerate(heads):
        seq = h + answer
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(h) : len(seq)] = torch.tensor(answer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = LlamaForCausalLM.from_pretrained(model.hf_dir)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets,
                         init_lora_weights="gaussian")
        peft_model = get_peft_model(base, cfg)
        params = [p for p in peft_model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        peft_model.train()
        for _ in range(steps):
            loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    peft_dir = out / "peft"
    peft_model.save_pretrained(str(peft_dir), safe_serialization=True)
    gguf = lora_to_gguf(peft_dir, model.hf_dir, out / "adapter.gguf")
    return peft_dir, gguf

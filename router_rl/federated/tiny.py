"""A tiny random-init causal LM plus a locally trained tokenizer (tests and demos; no model hub)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<s>", "</s>", "<unk>")


def _corpus(n_tasks: int, seed: int) -> list[str]:
    from router_rl.traces.simulate import simulate_fleet

    ts = simulate_fleet(n_tasks, seed=seed)
    return ts.outcomes.select("task_id", "prompt").unique("task_id", maintain_order=True)["prompt"].to_list()


def build_tiny_base_model(
    path: str | Path,
    seed: int = 0,
    *,
    vocab_size: int = 512,
    hidden_size: int = 48,
    num_layers: int = 2,
    num_heads: int = 4,
    corpus: Sequence[str] | None = None,
    corpus_tasks: int = 300,
) -> Path:
    """Create a tiny Llama-architecture causal LM and a BPE tokenizer trained on simulated prompts.

    The tokenizer is trained locally with the ``tokenizers`` library; the model weights are random
    (seeded). Both are written with ``save_pretrained`` so :func:`router_rl.federated.lora.load_base_model`
    can load them offline. With the defaults the model has about 100k parameters.

    Args:
        path: Output folder (created; existing files are overwritten).
        seed: Seed of the weights and of the simulated training corpus.
        vocab_size: BPE vocabulary size (>= 64).
        hidden_size: Model width (multiple of ``num_heads``).
        num_layers: Decoder layers.
        num_heads: Attention heads.
        corpus: Texts to train the tokenizer on (default: prompts of a simulated fleet).
        corpus_tasks: Simulated tasks used when ``corpus`` is ``None``.

    Returns:
        The output folder.
    """
    if vocab_size < 64:
        raise ValueError(f"build_tiny_base_model: vocab_size must be >= 64, got {vocab_size}")
    if hidden_size % num_heads:
        raise ValueError(f"build_tiny_base_model: hidden_size {hidden_size} not divisible by num_heads {num_heads}")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    texts = list(corpus) if corpus is not None else _corpus(corpus_tasks, seed)
    if not texts:
        raise ValueError("build_tiny_base_model: corpus is empty")

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    hf_tok.save_pretrained(out)

    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=512,
        pad_token_id=hf_tok.pad_token_id,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        tie_word_embeddings=True,
    )
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    return out

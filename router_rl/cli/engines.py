"""``router-rl engines ...``: build the tiny offline model a real llama.cpp server runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

engines_app = typer.Typer(help="Local inference engines: the tiny offline GGUF model for llama.cpp.",
                          no_args_is_help=True)


@engines_app.command("build-tiny")
def build_tiny_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder (hf/, tiny.gguf[, lora/]).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the weights and the tokenizer corpus.")] = 0,
    context_length: Annotated[int, typer.Option("--context-length", help="Context window in tokens.")] = 256,
    lora: Annotated[bool, typer.Option("--lora/--no-lora", help="Also fine-tune a LoRA adapter (PEFT + GGUF).")]
    = False,
) -> None:
    """Make a tiny random Llama (SentencePiece tokenizer trained on simulated prompts) as HF and GGUF."""
    from router_rl.cli.console import make_console
    from router_rl.engines.tiny import build_tiny_engine_model, build_tiny_lora

    if context_length < 32:
        raise typer.BadParameter(f"expected >= 32 tokens, got {context_length}", param_hint="--context-length")
    console = make_console()
    model = build_tiny_engine_model(out, seed, context_length=context_length)
    console.print(f"wrote {model.gguf} (sha256 {model.sha256()[:16]}…, context {model.context_length}) "
                  f"and {model.hf_dir}")
    if lora:
        peft_dir, gguf = build_tiny_lora(model, out / "lora", seed)
        console.print(f"wrote the LoRA adapter {peft_dir} and {gguf}")
    console.print(f"serve it: python -m llama_cpp.server --model {model.gguf} --host 127.0.0.1 "
                  f"--n_ctx {model.context_length}")


def register(app: typer.Typer) -> None:
    """Add the ``engines`` command group to the root app."""
    app.add_typer(engines_app, name="engines")

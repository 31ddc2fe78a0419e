"""The tiny offline model: deterministic build, GGUF layout, LoRA export, CLI, and the engine process."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.engines.gguf_export import GGUFExportError, _permute, llama_to_gguf, lora_to_gguf
from router_rl.engines.llamacpp import EngineModel, EngineStartError, LlamaCppServer
from router_rl.engines.tiny import TinyEngineModel, build_tiny_engine_model


def test_build_is_deterministic_and_gguf_has_the_llama_layout(tiny_model: TinyEngineModel, tmp_path: Path) -> None:
    import gguf

    again = build_tiny_engine_model(tmp_path / "again", seed=0)
    assert again.sha256() == tiny_model.sha256()
    other = build_tiny_engine_model(tmp_path / "other", seed=1)
    assert other.sha256() != tiny_model.sha256()
    r = gguf.GGUFReader(str(tiny_model.gguf))
    names = {t.name for t in r.tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight"} <= names
    assert {f"blk.{i}.{k}.weight" for i in range(2) for k in ("attn_q", "attn_k", "attn_v", "attn_output",
                                                              "ffn_gate", "ffn_up", "ffn_down")} <= names
    field = r.fields["tokenizer.ggml.model"]
    assert bytes(field.parts[field.data[0]]).decode() == "llama"
    assert int(r.fields["llama.context_length"].parts[-1][0]) == tiny_model.context_length


def test_query_key_permutation_matches_llama_cpp_and_round_trips() -> None:
    # llama.cpp's converter: rows of each head go from [first half | second half] to interleaved pairs
    w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)  # 2 heads x head_dim 4
    p = _permute(w, 2)
    np.testing.assert_array_equal(p[:, 0], [0, 6, 3, 9, 12, 18, 15, 21])
    assert sorted(p[:, 0].tolist()) == sorted(w[:, 0].tolist())


def test_export_refuses_what_it_cannot_convert(tiny_model: TinyEngineModel, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(GGUFExportError, match="only 'llama'"):
        llama_to_gguf(bad, tmp_path / "x.gguf")
    with pytest.raises(GGUFExportError, match=r"adapter_config\.json: missing"):
        lora_to_gguf(tmp_path, tiny_model.hf_dir, tmp_path / "a.gguf")


def test_lora_gguf_has_a_and_b_per_target(tiny_lora: Path) -> None:
    import gguf

    r = gguf.GGUFReader(str(tiny_lora))
    names = {t.name for t in r.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.attn_v.weight.lora_b" in names
    assert bytes(r.fields["general.type"].parts[-1]).decode() == "adapter"
    assert float(r.fields["adapter.lora.alpha"].parts[-1][0]) == 16.0


def test_cli_build_tiny(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["engines", "build-tiny", "-o", str(tmp_path / "m"), "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "tiny.gguf").is_file() and "python -m llama_cpp.server" in res.output
    res = CliRunner().invoke(app, ["engines", "build-tiny", "-o", str(tmp_path / "m"), "--context-length", "8"])
    assert res.exit_code == 2 and "--context-length" in res.output and "Traceback" not in res.output


def test_engine_process_lists_its_models_and_stops_by_pid(tiny_model: TinyEngineModel) -> None:
    srv = LlamaCppServer([EngineModel("tiny", tiny_model.gguf, n_ctx=tiny_model.context_length)])
    with srv:
        pid = srv.pid
        assert pid is not None
        ids = [m["id"] for m in httpx.get(f"{srv.base_url}/models").json()["data"]]
        assert ids == ["tiny"]
    assert srv.pid is None
    with pytest.raises(ProcessLookupError):
        __import__("os").kill(pid, 0)


def test_engine_refuses_a_non_loopback_bind_and_reports_a_dead_start(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"GGUF but not really")
    with pytest.raises(ValueError, match="loopback"):
        LlamaCppServer([EngineModel("x", bogus)], host="0.0.0.0")
    with pytest.raises(EngineStartError, match="exited"):
        LlamaCppServer([EngineModel("x", bogus)], startup_timeout_s=60).start()


def test_engine_runs_the_weights_exactly_as_transformers_and_peft_do(tiny_model: TinyEngineModel,
                                                                     tiny_lora: Path) -> None:
    """The GGUF conversion is checked on numbers: next-token log-probabilities of the engine equal those
    of the Hugging Face model (base) and of the PEFT model (base+adapter) to 1e-2 (ggml sums in its own
    order and precision: up to ~2e-3 measured here; a wrong q/k permutation is off by far more)."""
    import sentencepiece as spm
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    text = "user: Generate unit tests for the cart module assistant:"
    sp = spm.SentencePieceProcessor(model_file=str(tiny_model.hf_dir / "tokenizer.model"))
    ids = torch.tensor([[sp.bos_id(), *sp.encode(text)]])
    with torch.no_grad():
        base = LlamaForCausalLM.from_pretrained(tiny_model.hf_dir).eval()
        ref = {"tiny": torch.log_softmax(base(ids).logits[0, -1], -1)}
        peft = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_model.hf_dir),
                                         str(tiny_lora.parent / "peft")).eval()
        ref["tiny+qe"] = torch.log_softmax(peft(ids).logits[0, -1], -1)
    models = [EngineModel("tiny", tiny_model.gguf, n_ctx=256),
              EngineModel("tiny+qe", tiny_model.gguf, lora=tiny_lora, n_ctx=256)]
    with LlamaCppServer(models) as srv:
        for alias, lp in ref.items():
            r = httpx.post(f"{srv.base_url}/completions", timeout=60,
                           json={"model": alias, "prompt": text, "max_tokens": 1, "temperature": 0, "logprobs": 5})
            top = r.json()["choices"][0]["logprobs"]["top_logprobs"][0]
            v, i = lp.topk(5)
            expected = {sp.id_to_piece(int(k)).replace("▁", " "): float(x) for x, k in zip(v, i, strict=True)}
            for piece, value in top.items():
                if piece in expected:
                    assert value == pytest.approx(expected[piece], abs=1e-2), (alias, piece)
            assert len(set(top) & set(expected)) >= 3, (alias, top, expected)
    assert not torch.allclose(ref["tiny"], ref["tiny+qe"])

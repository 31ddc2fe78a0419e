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

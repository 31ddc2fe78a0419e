"""Serving the federated result on the real llama.cpp engine: export, route, hot-swap.

The global and per-agent adapters of a federated SFT run on RouterBench trajectories are written as
PEFT folders (vLLM's LoRA modules) and as GGUF LoRA by llama.cpp's own ``convert_lora_to_gguf.py``
(from the llama-cpp-python 0.3.36 sdist), served by the real engine as ``tiny+<adapter>`` aliases,
checked on numbers against PEFT, routed to by the router's catalog, and a new version is swapped in
without restarting the engine. Without llama-cpp-python or the converter the tests skip locally and
fail under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router_rl.federated.config import FederatedConfig

pytestmark = [pytest.mark.slow, pytest.mark.federated]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CATS = ("arc", "mbpp", "winogrande")
# Prompts in the engine's chat layout. The engine reports no log-probabilities for a completion that
# stops at once (top token </s>) or whose first token is held back (an incomplete UTF-8 byte), so the
# checks use the first of these prompts where it reports them, and compare on that prompt.
PROMPTS = (
    "user: Write a python function to remove the given elements from a list.\nassistant:",
    "user: Which option is correct? Answer with the letter.\nassistant:",
    "user: Fill in the blank.\nassistant: The answer is",
)
TOKEN = "tok-fed-serve-91c2"


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def converter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from router_rl.federated.export import CONVERTER_ENV, extract_converter, find_converter

    if importlib.util.find_spec("llama_cpp") is None:
        _missing("llama-cpp-python is not installed (the local-engine extra)")
    if os.environ.get(CONVERTER_ENV):
        return find_converter()
    d = tmp_path_factory.mktemp("sdist")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "llama-cpp-python==0.3.36", "-d", str(d)], capture_output=True, text=True, check=False)
    tars = sorted(d.glob("llama_cpp_python-0.3.36.tar.gz"))
    if r.returncode != 0 or not tars:
        _missing(f"the llama-cpp-python 0.3.36 sdist (llama.cpp's converter) is not obtainable: {r.stderr[-300:]}")
    return extract_converter(tars[0], d / "llama.cpp")


@pytest.fixture(scope="module")
def run(converter: Path, datasets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from router_rl.engines.tiny import build_tiny_engine_model
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.export import export_adapters
    from router_rl.federated.personal import personalise
    from router_rl.federated.runner import run_inprocess
    from router_rl.federated.trajectories import write_routerbench_store

    root = tmp_path_factory.mktemp("fed-serve")
    tiny = build_tiny_engine_model(root / "tiny", seed=0)
    for c in CATS:
        write_routerbench_store(root / "stores" / c, c, max_prompts=20, seed=1,
                                dataset_dir=datasets_root / "routerbench-subset-via-routerdc")
    cfg = FederatedConfig.create(
        base_model_path=tiny.hf_dir, agent_types=CATS, data_source="trajectories",
        trajectory_dirs=tuple(str(root / "stores" / c) for c in CATS), num_rounds=1, max_local_steps=6,
        lr=3e-2, max_length=80, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
        max_eval_examples_per_client=8, seed=0,
    )
    clear_client_cache()
    res = run_inprocess(cfg, root / "fed")
    personal = personalise(cfg, res.arrays, steps=4)
    v2 = personalise(cfg, personal[1], steps=6)[1]  # a newer version of the mbpp adapter
    adapters = {"global": res.arrays, **{c: personal[i] for i, c in enumerate(CATS)}}
    exported = export_adapters(cfg, adapters, root / "export", base_name="tiny", converter=converter)
    (v2_exp,) = export_adapters(cfg, {"mbpp": v2}, root / "export-v2", base_name="tiny", converter=converter)
    return {"tiny": tiny, "cfg": cfg, "exported": exported, "v2": v2_exp, "root": root}


def _peft_logprobs(tiny: Any, peft_dir: Path | None, text: str) -> dict[str, float]:
    import sentencepiece as spm
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    from router_rl.federated.lora import load_tokenizer

    sp = spm.SentencePieceProcessor(model_file=str(tiny.hf_dir / "tokenizer.model"))
    ids = torch.tensor([load_tokenizer(tiny.hf_dir)(text, add_special_tokens=True)["input_ids"]])
    model: Any = LlamaForCausalLM.from_pretrained(tiny.hf_dir)
    if peft_dir is not None:
        model = PeftModel.from_pretrained(model, str(peft_dir))
    with torch.no_grad():
        lp = torch.log_softmax(model.eval()(ids).logits[0, -1], -1)
    v, i = lp.topk(5)
    return {sp.id_to_piece(int(k)).replace("▁", " "): float(x) for x, k in zip(v, i, strict=True)}


def _engine_logprobs(base_url: str, alias: str, text: str) -> dict[str, float]:
    r = httpx.post(f"{base_url}/completions", timeout=60,
                   json={"model": alias, "prompt": text, "max_tokens": 1, "temperature": 0, "logprobs": 5})
    r.raise_for_status()
    top = r.json()["choices"][0]["logprobs"]["top_logprobs"]
    return dict(top[0]) if top else {}


def _served(base_url: str, aliases: tuple[str, ...]) -> tuple[str, dict[str, dict[str, float]]]:
    """The first prompt for which the engine reports log-probabilities for every alias, and those."""
    for text in PROMPTS:
        got = {a: _engine_logprobs(base_url, a, text) for a in aliases}
        if all(got.values()):
            return text, got
    raise AssertionError(f"{aliases}: no prompt gave log-probabilities for every alias")


def _same(engine: dict[str, float], ref: dict[str, float]) -> bool:
    """Top-5 log-probabilities agree to 1e-2 on the pieces both name (the engine names byte pieces ``''``)."""
    common = (set(engine) & set(ref)) - {""}
    return len(common) >= 2 and all(abs(engine[p] - ref[p]) < 1e-2 for p in common)


def test_training_token_ids_are_the_engines_token_ids(run: dict[str, Any]) -> None:
    """SFT tokenises as llama.cpp does (sentencepiece's own encode turns a newline into a space)."""
    import llama_cpp

    from router_rl.federated.lora import load_tokenizer
    from router_rl.federated.trajectories import TrajectoryStore

    tok = load_tokenizer(run["tiny"].hf_dir)
    vocab = llama_cpp.Llama(str(run["tiny"].gguf), vocab_only=True, verbose=False)
    texts = ["user: hi\nassistant:  B", "ünïcode ✓ 日本  x"]
    for d in run["cfg"].trajectory_dirs:
        texts += [f"user: {t.prompt}\nassistant: {t.response}" for t in TrajectoryStore(d).read(1.0)[0][:25]]
    for t in texts:
        assert tok(t, add_special_tokens=False)["input_ids"] == vocab.tokenize(t.encode(), add_bos=False), t[:60]
    assert tok.decode(tok("a\nb", add_special_tokens=False)["input_ids"]) == "a\nb"


def test_exports_are_peft_and_gguf_lora_of_each_adapter(run: dict[str, Any]) -> None:
    import json

    import gguf

    from router_rl.federated.export import vllm_lora_modules

    ex = run["exported"]
    assert [e.alias for e in ex] == ["tiny+global", "tiny+arc", "tiny+mbpp", "tiny+winogrande"]
    for e in ex:
        acfg = json.loads((e.peft_dir / "adapter_config.json").read_text())
        assert acfg["peft_type"] == "LORA" and set(acfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
        r = gguf.GGUFReader(str(e.gguf))
        assert bytes(r.fields["general.type"].parts[-1]).decode() == "adapter"
        assert len(r.tensors) == 2 * 4 * 2  # layers x projections x (A, B)
    assert vllm_lora_modules(ex)[1] == f"tiny+arc={ex[1].peft_dir}"


@pytest.fixture(scope="module")
def engine(run: dict[str, Any]) -> Iterator[Any]:
    from router_rl.engines.llamacpp import LlamaCppServer
    from router_rl.federated.export import engine_models, publish_gguf

    ex = run["exported"]
    served = publish_gguf(ex[2].gguf, run["root"] / "served" / "tiny+mbpp.gguf")
    models = engine_models(ex, run["tiny"].gguf, base_alias="tiny", n_ctx=256)
    assert models[3].alias == "tiny+mbpp"
    models[3] = type(models[3])(models[3].alias, models[3].gguf, lora=served, n_ctx=256)  # from the served path
    with LlamaCppServer(models) as srv:
        yield srv


def test_engine_serves_each_adapter_as_peft_computes_it(run: dict[str, Any], engine: Any) -> None:
    ex = run["exported"]
    for e in (ex[0], ex[2]):  # tiny+global, tiny+mbpp
        text, got = _served(engine.base_url, ("tiny", e.alias))
        assert _same(got["tiny"], _peft_logprobs(run["tiny"], None, text))
        assert _same(got[e.alias], _peft_logprobs(run["tiny"], e.peft_dir, text)), e.alias
        assert not _same(got[e.alias], got["tiny"]), e.alias


def test_router_catalog_routes_to_base_plus_adapter(run: dict[str, Any], engine: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    from router_rl.federated.export import router_models
    from router_rl.router.config import parse_config
    from router_rl.router.engine import HybridRouter
    from router_rl.router.server import RouterServer, build_server_app
    from router_rl.traces.decision_log import read_decision_log

    monkeypatch.setenv("ROUTER_RL_API_TOKENS", TOKEN)
    monkeypatch.setenv("ROUTER_RL_ADMIN_TOKENS", TOKEN + "-admin")
    models = [{"model": "tiny", "context_window": 256}, *router_models(run["exported"], context_window=256)]
    cfg = {
        "providers": [{"name": "llamacpp", "kind": "openai_compatible", "base_url": engine.base_url,
                       "location": "local", "gpu_usd_per_hour": 1.0, "max_retries": 0, "timeout_s": 30.0,
                       "models": models}],
        "tiers": {"simple": "tiny", "moderate": "tiny+global", "complex": "tiny+arc", "very_complex": "tiny+arc"},
        "fallback": {"emergency_cloud": False, "latency_threshold_s": 30.0},
        "logging": {"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 0.05},
    }
    router = HybridRouter.from_config(parse_config(cfg))
    with RouterServer(build_server_app(router)) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key=TOKEN, max_retries=0, timeout=60)
        listed = {m.id for m in client.models.list().data}
        assert {"tiny+global", "tiny+arc", "tiny+mbpp", "tiny+winogrande"} <= listed
        msg = [{"role": "user", "content": "Which option is correct?"}]
        out = {m: client.chat.completions.create(model=m, messages=msg, max_tokens=8, temperature=0.0)  # type: ignore[arg-type]
               for m in ("tiny", "tiny+arc")}
        assert out["tiny+arc"].model == "tiny+arc" and out["tiny"].model == "tiny"
    import time

    time.sleep(0.3)
    rows = read_decision_log(tmp_path / "log")
    assert set(rows["served_model"]) == {"tiny", "tiny+arc"}


def test_new_adapter_version_hot_swaps_without_restarting_the_engine(run: dict[str, Any], engine: Any) -> None:
    from router_rl.federated.export import AdapterExportError, hot_swap_llamacpp, publish_gguf

    pid = engine.pid
    text, v1 = _served(engine.base_url, ("tiny+mbpp",))
    assert _same(v1["tiny+mbpp"], _peft_logprobs(run["tiny"], run["exported"][2].peft_dir, text))
    publish_gguf(run["v2"].gguf, run["root"] / "served" / "tiny+mbpp.gguf")
    hot_swap_llamacpp(engine.base_url, "tiny+mbpp", other_alias="tiny")
    v2 = _engine_logprobs(engine.base_url, "tiny+mbpp", text)
    assert v2, "the new version stops at once on the prompt the old one answered"
    assert _same(v2, _peft_logprobs(run["tiny"], run["v2"].peft_dir, text))
    assert not _same(v2, v1["tiny+mbpp"])
    assert engine.pid == pid and engine.proc.poll() is None
    with pytest.raises(AdapterExportError, match=r"does not serve \['tiny\+nope'\]"):
        hot_swap_llamacpp(engine.base_url, "tiny+nope", other_alias="tiny")

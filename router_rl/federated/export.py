"""Serve the federated result: adapters as PEFT (vLLM) and GGUF LoRA (llama.cpp), routable, hot-swappable.

* :func:`save_peft_adapter`: an adapter's tensors as a PEFT ``save_pretrained`` folder
  (``adapter_config.json`` + ``adapter_model.safetensors``): what vLLM's ``--lora-modules NAME=PATH``
  and ``POST /v1/load_lora_adapter`` load, and what ``PeftModel.from_pretrained`` loads.
* :func:`peft_to_gguf_lora`: that folder as a GGUF LoRA through **llama.cpp's own converter**
  (``convert_lora_to_gguf.py`` of the llama.cpp tree that llama-cpp-python vendors), run as a
  subprocess of this interpreter. Where it is: ``converter=`` or ``$LLAMA_CPP_CONVERTER`` (the
  script, or the ``vendor/llama.cpp`` folder of the llama-cpp-python sdist:
  ``pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36``). No fallback to another
  converter: a missing script is an error that says how to get it.
* :func:`export_adapters`: the global and per-agent adapters, each as PEFT and GGUF, named
  ``<base>+<adapter>`` (the alias the engine serves and the router's catalog lists);
  :func:`router_models` / :func:`engine_models` / :func:`vllm_lora_modules` are the catalog entries,
  the llama.cpp engine's model list and vLLM's flags.
* :func:`publish_gguf` + :func:`hot_swap_llamacpp`: a new adapter version without restarting the
  engine. llama-cpp-python's server (0.3.36) has no adapter-loading endpoint; it (re)loads a model
  from its settings when a request names another alias than the loaded one. So the new file is
  atomically renamed onto the alias's ``lora_path`` and one 1-token request to another alias makes
  the engine drop the old weights; the next request for the adapter alias loads the new version in
  the same process. vLLM loads a new version at run time with ``POST /v1/load_lora_adapter``
  (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=1``), see :func:`vllm_load_lora_request`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_rl.core.errors import RouterRLError
from router_rl.federated.config import FederatedConfig

CONVERTER_ENV = "LLAMA_CPP_CONVERTER"
CONVERTER_SCRIPT = "convert_lora_to_gguf.py"


class AdapterExportError(RouterRLError):
    """An adapter cannot be exported or swapped (names the file / alias and what is wrong)."""


@dataclass(frozen=True)
class ExportedAdapter:
    """One adapter ready to serve.

    Attributes:
        name: The adapter's name (``global`` or an agent type).
        alias: ``<base>+<name>``: the model id the engine serves and the router routes to.
        peft_dir: PEFT folder (vLLM, PEFT).
        gguf: GGUF LoRA file (llama.cpp).
    """

    name: str
    alias: str
    peft_dir: Path
    gguf: Path


def save_peft_adapter(cfg: FederatedConfig, arrays: Mapping[str, np.ndarray], out_dir: str | Path) -> Path:
    """Write ``arrays`` (LoRA tensors of ``cfg``'s adapter) as a PEFT folder; returns it."""
    from router_rl.federated.lora import build_lora_model, set_adapter_arrays

    model = build_lora_model(cfg)
    set_adapter_arrays(model, arrays)
    out = Path(out_dir)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def find_converter(converter: str | Path | None = None) -> Path:
    """The path of llama.cpp's ``convert_lora_to_gguf.py`` (argument, else ``$LLAMA_CPP_CONVERTER``).

    Raises:
        AdapterExportError: neither names an existing script (or a folder holding it).
    """
    raw = converter if converter is not None else os.environ.get(CONVERTER_ENV)
    if not raw:
        raise AdapterExportError(
            f"llama.cpp's {CONVERTER_SCRIPT} not given: pass converter= or set ${CONVERTER_ENV} to the script or "
            "to vendor/llama.cpp of the llama-cpp-python sdist (pip download --no-deps --no-binary :all: "
            "llama-cpp-python==0.3.36)"
        )
    p = Path(raw).expanduser()
    if p.is_dir():
        p = p / CONVERTER_SCRIPT
    if not p.is_file():
        raise AdapterExportError(f"{p}: llama.cpp's {CONVERTER_SCRIPT} not found")
    for need in ("conversion", "gguf-py"):
        if not (p.parent / need).is_dir():
            raise AdapterExportError(f"{p.parent}: lacks llama.cpp's {need}/ next to {CONVERTER_SCRIPT}")
    return p


def peft_to_gguf_lora(peft_dir: str | Path, base_hf_dir: str | Path, out_path: str | Path, *,
                      converter: str | Path | None = None, outtype: str = "f32", timeout_s: float = 600) -> Path:
    """Convert a PEFT LoRA folder to a GGUF LoRA with llama.cpp's ``convert_lora_to_gguf.py``.

    Args:
        peft_dir: The adapter (``adapter_config.json``, ``adapter_model.safetensors``).
        base_hf_dir: The base model's Hugging Face folder (the converter reads its config only).
        out_path: The ``.gguf`` to write.
        converter: The script or its folder (default ``$LLAMA_CPP_CONVERTER``).
        outtype: ``f32``, ``f16``, ``bf16`` or ``q8_0``.
        timeout_s: Limit of the conversion.

    Raises:
        AdapterExportError: no converter, or the converter failed (with its log tail).
    """
    script = find_converter(converter)
    peft, base, out = Path(peft_dir), Path(base_hf_dir), Path(out_path)
    for f in (peft / "adapter_config.json", base / "config.json"):
        if not f.is_file():
            raise AdapterExportError(f"{f}: missing")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, str(script), "--base", str(base), "--outfile", str(out), "--outtype", outtype, str(peft)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise AdapterExportError(f"{script}: no result within {timeout_s:.0f} s for {peft}") from e
    if r.returncode != 0 or not out.is_file():
        raise AdapterExportError(f"{script} failed ({r.returncode}) for {peft}:\n{(r.stdout + r.stderr)[-2000:]}")
    return out


def export_adapters(
    cfg: FederatedConfig,
    adapters: Mapping[str, Mapping[str, np.ndarray]],
    out_dir: str | Path,
    *,
    base_name: str,
    converter: str | Path | None = None,
) -> list[ExportedAdapter]:
    """Export each adapter (name -> LoRA tensors) as ``out_dir/<name>/peft`` and ``out_dir/<name>/adapter.gguf``.

    Args:
        cfg: The run config (its ``base_model_path`` is the base the converter reads).
        adapters: E.g. ``{"global": global_arrays, "arc": personal_arrays[0], ...}``.
        out_dir: Output folder.
        base_name: The base model's alias; each adapter is served as ``<base_name>+<name>``.
        converter: llama.cpp's converter (see :func:`find_converter`).
    """
    if not adapters:
        raise AdapterExportError("export_adapters: no adapters given")
    bad = [n for n in adapters if not n or "+" in n or "/" in n]
    if bad:
        raise AdapterExportError(f"export_adapters: adapter names must be non-empty, without '+' or '/': {bad}")
    find_converter(converter)
    out = Path(out_dir)
    res = []
    for name, arrays in adapters.items():
        peft = save_peft_adapter(cfg, arrays, out / name / "peft")
        gguf = peft_to_gguf_lora(peft, cfg.base_model_path, out / name / "adapter.gguf", converter=converter)
        res.append(ExportedAdapter(name=name, alias=f"{base_name}+{name}", peft_dir=peft, gguf=gguf))
    return res


def router_models(exported: Sequence[ExportedAdapter], *, context_window: int,
                  tokens_per_s: float | None = None) -> list[dict[str, Any]]:
    """The ``models`` entries of the router's local provider: one routable model per adapter alias."""
    out: list[dict[str, Any]] = []
    for e in exported:
        m: dict[str, Any] = {"model": e.alias, "context_window": context_window, "open_weight": True}
        if tokens_per_s is not None:
            m["tokens_per_s"] = tokens_per_s
        out.append(m)
    return out


def engine_models(exported: Sequence[ExportedAdapter], base_gguf: str | Path, *, base_alias: str,
                  n_ctx: int) -> list[Any]:
    """The llama.cpp engine's model list: the base, then ``base+adapter`` per adapter."""
    from router_rl.engines.llamacpp import EngineModel

    models = [EngineModel(base_alias, Path(base_gguf), n_ctx=n_ctx)]
    models += [EngineModel(e.alias, Path(base_gguf), lora=e.gguf, n_ctx=n_ctx) for e in exported]
    return models


def vllm_lora_modules(exported: Sequence[ExportedAdapter]) -> list[str]:
    """vLLM's ``--lora-modules`` values, ``ALIAS=PEFT_DIR`` (the names the router's catalog lists)."""
    return [f"{e.alias}={e.peft_dir}" for e in exported]


def vllm_load_lora_request(alias: str, peft_dir: str | Path) -> dict[str, str]:
    """The JSON body of vLLM's ``POST /v1/load_lora_adapter`` (a new version at run time)."""
    return {"lora_name": alias, "lora_path": str(peft_dir)}


def publish_gguf(new_gguf: str | Path, served_path: str | Path) -> Path:
    """Atomically put ``new_gguf`` at ``served_path`` (copy to a temporary file beside it, then rename).

    A process that has the old file open (memory-mapped) keeps reading the old version; the next
    load reads the new one.
    """
    src, dst = Path(new_gguf), Path(served_path)
    if not src.is_file():
        raise AdapterExportError(f"{src}: new adapter version not found")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dst.name + ".", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def hot_swap_llamacpp(base_url: str, alias: str, *, other_alias: str, timeout_s: float = 120.0) -> None:
    """Make a running llama-cpp-python server load ``alias`` afresh (its new ``lora_path`` content).

    The server keeps one model loaded and reloads on a request for another alias: a 1-token
    completion for ``other_alias`` unloads ``alias``; the next request for ``alias`` (sent here
    too, so the swap is done when this returns) loads the published version. Same engine process.

    Raises:
        AdapterExportError: the engine does not list both aliases or a request failed.
    """
    import httpx

    if alias == other_alias:
        raise AdapterExportError("hot_swap_llamacpp: other_alias must differ from alias")
    r = httpx.get(f"{base_url}/models", timeout=timeout_s)
    served = {m["id"] for m in r.json().get("data", [])}
    missing = [a for a in (alias, other_alias) if a not in served]
    if missing:
        raise AdapterExportError(
            f"hot_swap_llamacpp: engine at {base_url} does not serve {missing} (serves {sorted(served)})"
        )
    for a in (other_alias, alias):
        resp = httpx.post(f"{base_url}/completions", timeout=timeout_s,
                          json={"model": a, "prompt": "x", "max_tokens": 1, "temperature": 0})
        if resp.status_code != 200:
            raise AdapterExportError(
                f"hot_swap_llamacpp: request for {a!r} answered {resp.status_code}: {resp.text[:300]}"
            )


def extract_converter(sdist: str | Path, dest: str | Path) -> Path:
    """Extract llama.cpp's LoRA converter (script, ``conversion/``, ``gguf-py/``) from a llama-cpp-python sdist.

    Args:
        sdist: ``llama_cpp_python-<version>.tar.gz`` (``pip download --no-deps --no-binary :all:
            llama-cpp-python==0.3.36``).
        dest: Folder to extract into.

    Returns:
        The path of ``convert_lora_to_gguf.py`` (for ``converter=`` / ``$LLAMA_CPP_CONVERTER``).
    """
    import tarfile

    src, out = Path(sdist), Path(dest)
    if not src.is_file():
        raise AdapterExportError(f"{src}: sdist not found")
    keep = (CONVERTER_SCRIPT, "convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
    found: Path | None = None
    with tarfile.open(src, "r:gz") as tar:
        for m in tar:
            parts = m.name.split("/vendor/llama.cpp/", 1)
            if len(parts) != 2 or not (m.isfile() or m.isdir()):
                continue
            rel = parts[1]
            if not any(rel == k or (k.endswith("/") and rel.startswith(k)) for k in keep):
                continue
            target = out / rel
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = tar.extractfile(m)
            if fh is None:
                continue
            target.write_bytes(fh.read())
            if rel == CONVERTER_SCRIPT:
                found = target
    if found is None:
        raise AdapterExportError(f"{src}: no vendor/llama.cpp/{CONVERTER_SCRIPT} in the sdist")
    return found

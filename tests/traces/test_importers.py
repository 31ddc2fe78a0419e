"""Every importer on the real datasets, with exact counts from each SOURCE.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router_rl.traces import TraceValidationError, load_traces
from router_rl.traces.importers import DATASET_FOLDERS, IMPORTERS, import_traces
from router_rl.traces.importers.llmperf import fit_provider_latency, load_provider_latency

pytestmark = pytest.mark.data


def _task_splits(ts) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict(ts.outcomes.unique("task_id").group_by("split").len().iter_rows())


def test_registry() -> None:
    assert set(IMPORTERS) == {"long", "routerbench", "llmrouter", "routerdc", "bfcl"}
    with pytest.raises(KeyError, match="unknown importer 'nope'"):
        IMPORTERS["nope"]


def test_routerbench_default_refuses_nan_and_drop_invalid_reports(datasets_root: Path) -> None:
    path = datasets_root / DATASET_FOLDERS["routerbench"]
    with pytest.raises(TraceValidationError, match=r"column 'quality'.*\[quality_missing\]") as ei:
        import_traces("routerbench", path)
    assert ei.value.n_rows == 92 + 62  # NaN score cells per SOURCE.md
    ts = import_traces("routerbench", path, drop_invalid=True, seed=0)
    rep = ts.report
    assert rep.n_rows_in == 3178 * 11
    # 14 sample_ids occur twice (8 within a file, 6 across train/test) with two different
    # prompts; every NaN cell is in those rows, so exactly those 14 tasks go.
    assert rep.dropped_rows == {"quality_missing": 154, "task_column_inconsistent": 154}
    assert rep.dropped_tasks == 14
    assert ts.n_tasks == 3150 and rep.n_rows_out == 3150 * 11
    m = ts.matrix()
    assert m.n_models == 11 and sorted(ts.catalog.cloud_models()) == [
        "claude-instant-v1", "claude-v1", "claude-v2", "gpt-3.5-turbo-1106", "gpt-4-1106-preview"]
    assert set(np.unique(m.quality)) <= {0.0, 1.0}
    assert (m.cost > 0).all() and not m.has_latency
    splits = _task_splits(ts)
    # the 28 rows of the 14 dropped ids: 20 in train files, 8 in test files
    assert splits["test"] == 445 + 128 + 380 - 8
    assert splits["val"] == round((1039 + 299 + 887 - 20) * 0.1)
    assert splits["train"] + splits["val"] == 1039 + 299 + 887 - 20
    mbpp = m.tasks["category"] == "mbpp"
    gpt4 = m.model_index("gpt-4-1106-preview")
    assert m.quality[mbpp.to_numpy(), gpt4].mean() == pytest.approx(0.686, abs=0.002)
    assert m.cost[mbpp.to_numpy(), gpt4].mean() == pytest.approx(9.4e-3, rel=0.02)
    assert not m.tasks["prompt"].str.starts_with("['").any()


def test_llmrouter(datasets_root: Path) -> None:
    ts = import_traces("llmrouter", datasets_root / DATASET_FOLDERS["llmrouter"], seed=0)
    assert ts.report.clean and ts.outcomes.height == 54_972
    m = ts.matrix()
    assert (m.n_tasks, m.n_models) == (6108, 9)
    assert ts.catalog.cloud_models() == []
    counts = dict(m.tasks["category"].value_counts().iter_rows())
    assert counts["mbpp"] == 548 and counts["human_eval"] == 214 and len(counts) == 14
    assert _task_splits(ts)["test"] == 500
    assert m.tasks["prompt"].null_count() == 0
    j = m.model_index("gemma-2-9b-it")
    expect = (m.input_tokens[:, j] * 0.10 + m.output_tokens[:, j] * 0.10) / 1e6
    np.testing.assert_allclose(m.cost[:, j], expect)


def test_routerdc(datasets_root: Path) -> None:
    ts = import_traces("routerdc", datasets_root / DATASET_FOLDERS["routerdc"], seed=0)
    m = ts.matrix()
    assert (m.n_tasks, m.n_models) == (20_600, 7) and ts.report.clean
    counts = dict(m.tasks["category"].value_counts().iter_rows())
    assert counts["humaneval"] == 115 + 49 and counts["mbpp"] == 500 and counts["javascript"] == 164
    assert counts["mmlu"] == 2000 + 4213
    assert ts.catalog.local_models() == list(m.models)
    assert (m.cost > 0).all() and ((m.quality >= 0) & (m.quality <= 1)).all()
    assert _task_splits(ts)["test"] >= 49 + 352 + 713 + 3475 + 1319 + 4213


def test_bfcl(datasets_root: Path) -> None:
    ts = import_traces("bfcl", datasets_root / DATASET_FOLDERS["bfcl"], seed=0)
    m = ts.matrix()
    assert (m.n_tasks, m.n_models) == (1700, 71) and ts.outcomes.height == 120_700
    basis = ts.meta["cost_basis"]
    assert sum(v == "api_token_price" for v in basis.values()) == 49
    assert sum(v == "oss_gpu_time" for v in basis.values()) == 11
    no_latency = [mm for j, mm in enumerate(m.models) if not np.isfinite(m.latency[:, j]).any()]
    assert len(no_latency) == 13
    counts = dict(m.tasks["category"].value_counts().iter_rows())
    assert counts["simple"] == 400 and counts["relevance"] == 240 and counts["javascript"] == 50
    assert "gpt-4o-2024-05-13" in ts.catalog.cloud_models()
    assert "meta-llama_Meta-Llama-3-70B-Instruct" in ts.catalog.local_models()
    j = m.model_index("claude-3-5-sonnet-20240620")
    np.testing.assert_allclose(m.cost[:, j], (m.input_tokens[:, j] * 3 + m.output_tokens[:, j] * 15) / 1e6)
    assert (m.cost >= 0).all()


def test_llmperf(datasets_root: Path) -> None:
    df = load_provider_latency(datasets_root / DATASET_FOLDERS["llmperf"])
    assert df.height == 2845
    assert df.columns == ["provider", "model_size", "request_idx", "error", "ttft_s", "latency_s",
                          "inter_token_latency_s", "input_tokens", "output_tokens"]
    errs = dict(df.filter(pl.col("error").is_not_null()).group_by("provider").len().iter_rows())
    assert errs == {"lepton": 390, "bedrock": 146, "perplexity": 2, "together": 1}
    assert df.filter(pl.col("error").is_not_null())["latency_s"].null_count() == 539
    fit = fit_provider_latency(df)
    assert fit.height == 19
    lep = fit.filter((pl.col("provider") == "lepton") & (pl.col("model_size") == "7b"))
    assert lep["error_rate"].item() == pytest.approx(130 / 150)
    groq = fit.filter(pl.col("provider") == "groq")
    assert groq.height == 1 and groq["latency_p50_s"].item() < 1.5


def test_saved_import_roundtrips(datasets_root: Path, tmp_path: Path) -> None:
    ts = import_traces("llmrouter", datasets_root / DATASET_FOLDERS["llmrouter"], seed=3)
    back = load_traces(ts.save(tmp_path / "l.parquet"))
    assert back.outcomes.equals(ts.outcomes) and back.catalog == ts.catalog and back.meta == ts.meta

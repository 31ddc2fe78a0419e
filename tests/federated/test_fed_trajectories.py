"""Trajectories, not prompts: SFT on accepted RouterBench responses read from each node's own store.

Real files throughout: RouterBench CSVs written as real decision-log and feedback part files (the
router's own writers), the tiny Llama the llama.cpp engine serves as the base model, real peft
training. Also the round scheduler over those stores and the personalised adapters.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router_rl.federated.config import FederatedConfig
from router_rl.federated.trajectories import TrajectoryStore, write_routerbench_store

pytestmark = [pytest.mark.slow, pytest.mark.federated]

CATS = ("arc", "mbpp", "winogrande")


@pytest.fixture(scope="module")
def base_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from router_rl.engines.tiny import build_tiny_engine_model

    return build_tiny_engine_model(tmp_path_factory.mktemp("tiny-engine-fed"), seed=0).hf_dir


@pytest.fixture(scope="module")
def stores(datasets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stores")
    out = {}
    for c in CATS:
        rep = write_routerbench_store(root / c, c, max_prompts=40, seed=0,
                                      dataset_dir=datasets_root / "routerbench-subset-via-routerdc")
        assert rep.prompts >= 40 and rep.rows_written >= 40 * 11 - rep.skipped_no_score - rep.skipped_empty_response
        _, read = TrajectoryStore(root / c).read(1.0)
        assert read.rows == rep.rows_written and read.accepted == rep.correct  # one request per written row
        out[c] = root / c
    return out


def _cfg(base_hf: Path, stores: dict[str, Path], **kw: object) -> FederatedConfig:
    values: dict[str, object] = dict(
        base_model_path=base_hf, agent_types=CATS, data_source="trajectories",
        trajectory_dirs=tuple(str(stores[c]) for c in CATS), num_rounds=2, max_local_steps=8, lr=2e-2,
        max_length=96, batch_size=8, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
        max_eval_examples_per_client=32, seed=3,
    )
    values.update(kw)
    return FederatedConfig.create(**values)  # type: ignore[arg-type]


def test_store_counts_every_row_and_accepts_only_correct_answers(stores: dict[str, Path]) -> None:
    trajs, rep = TrajectoryStore(stores["mbpp"]).read(1.0)
    assert rep.rows == rep.accepted + rep.below_threshold + rep.unlabeled + rep.no_prompt_text + rep.no_response_text
    assert rep.accepted == len(trajs) > 50 and rep.below_threshold > 20
    assert all(t.quality == 1.0 and t.response for t in trajs)
    assert rep.join["labeled"] == rep.rows and rep.join["sources"] == {"routerbench": rep.rows}
    # a lower threshold accepts more (0/1 labels: everything)
    assert TrajectoryStore(stores["mbpp"]).read(0.0)[1].accepted == rep.rows


def test_rows_without_opted_in_text_or_label_are_counted_not_used(tmp_path: Path) -> None:
    from router_rl.traces.decision_log import DecisionLogWriter

    base = {"ts": datetime(2026, 12, 1, tzinfo=UTC), "policy_version": "p", "action_models": ["m"],
            "action_probs": [1.0], "chosen_model": "m", "propensity": 1.0, "outcome_model": "m"}
    with DecisionLogWriter(tmp_path / "s" / "decisions", flush_interval_s=None, log_prompts=True,
                           log_responses=False) as w:  # responses not opted in
        w.append({**base, "request_id": "a", "prompt": "p1", "response": "r1", "quality": 1.0})
    with DecisionLogWriter(tmp_path / "s" / "decisions", flush_interval_s=None, log_prompts=True,
                           log_responses=True) as w:
        w.append({**base, "request_id": "b", "prompt": "p2", "response": "r2", "quality": None})
        w.append({**base, "request_id": "c", "prompt": "p3", "response": "r3", "quality": 0.4})
        w.append({**base, "request_id": "d", "prompt": "p4", "response": "r4", "quality": 0.9})
    trajs, rep = TrajectoryStore(tmp_path / "s").read(0.8)
    assert [t.request_id for t in trajs] == ["d"]
    assert (rep.rows, rep.no_response_text, rep.unlabeled, rep.below_threshold, rep.accepted) == (4, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"no decisions/ folder"):
        TrajectoryStore(tmp_path / "nothing").read(0.5)


def test_heldout_split_is_by_prompt_and_loss_is_on_response_tokens_only(
    base_hf: Path, stores: dict[str, Path]
) -> None:
    import torch

    from router_rl.federated.data import MaskedSequence, build_partition
    from router_rl.federated.lora import load_tokenizer
    from router_rl.federated.train import IGNORE_INDEX, _batch
    from router_rl.federated.trajectories import split_heldout

    trajs, _ = TrajectoryStore(stores["arc"]).read(1.0)
    train, held = split_heldout(trajs, 0.25, seed=3)
    assert train and held
    assert not {t.prompt_sha256 for t in train} & {t.prompt_sha256 for t in held}
    cfg = _cfg(base_hf, stores)
    part = build_partition(cfg, 0, load_tokenizer(base_hf))
    assert part.report["accepted"] == part.report["train_accepted"] + part.report["heldout_accepted"]
    s = part.train[0]
    assert isinstance(s, MaskedSequence) and 0 < s.n_masked < len(s)
    ids, _mask, labels = _batch([s, part.train[1]], 0)
    assert torch.all(labels[0, : s.n_masked] == IGNORE_INDEX)
    assert torch.equal(labels[0, s.n_masked : len(s)], ids[0, s.n_masked : len(s)])


@pytest.fixture(scope="module")
def sft_run(base_hf: Path, stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.runner import run_inprocess

    clear_client_cache()
    cfg = _cfg(base_hf, stores)
    return cfg, run_inprocess(cfg, tmp_path_factory.mktemp("fed-sft"))


def test_heldout_loss_on_correct_responses_drops_for_every_client(sft_run, stores: dict[str, Path]) -> None:
    cfg, res = sft_run
    h = res.history
    for pid in ("0", "1", "2"):
        before = h.rounds[0]["evaluate"][pid]["eval-loss"]
        after = h.rounds[2]["evaluate"][pid]["eval-loss"]
        assert after < 0.8 * before, (cfg.agent_types[int(pid)], before, after)
    assert h.eval_loss(2) < h.eval_loss(1) < h.eval_loss(0)
    # only tensors travelled: no response text in what the server kept
    text = res.metrics_path.read_text()
    resp = TrajectoryStore(stores["mbpp"]).read(1.0)[0][0].response
    assert resp[:40] not in text and "def " not in text
    assert json.loads(text)["config"]["data_source"] == "trajectories"


def test_config_needs_one_store_per_client(base_hf: Path) -> None:
    from router_rl.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trajectory_dirs.*one store per agent type \(3\), got 1"):
        FederatedConfig.create(base_model_path=base_hf, agent_types=CATS, data_source="trajectories",
                               trajectory_dirs=("x",))
    with pytest.raises(ConfigError, match=r"only used with data_source 'trajectories'"):
        FederatedConfig.create(base_model_path=base_hf, trajectory_dirs=("x",))
    cfg = FederatedConfig.create(base_model_path=base_hf, agent_types=CATS, data_source="trajectories",
                                 trajectory_dirs=("a", "b", "c"))
    assert FederatedConfig.from_run_config(cfg.to_run_config()) == cfg


def test_personalised_adapters_beat_global_and_local_only_on_their_own_heldout(
    base_hf: Path, stores: dict[str, Path], tmp_path: Path
) -> None:
    from router_rl.federated.client import clear_client_cache
    from router_rl.federated.personal import compare_personalisation

    clear_client_cache()
    cfg = _cfg(base_hf, stores, num_rounds=2, max_local_steps=6)
    res = compare_personalisation(cfg, tmp_path / "p", personal_steps=6)
    assert res.steps == {"rounds": 2, "local_steps_per_round": 6, "personal_steps": 6, "local_only_steps": 18}
    assert [r["agent_type"] for r in res.rows] == list(CATS)
    for r in res.rows:
        assert r["personalised"] < r["global"] < r["initial"], r
        assert r["local_only"] < r["initial"], r
    # the personal adapters differ from the global one and from each other
    g = res.global_arrays
    k = sorted(g)[1]
    assert all(abs(res.personal_arrays[i][k] - g[k]).max() > 0 for i in range(3))

"""BudgetedRouting: budget and outage dynamics on hand-made traces, vec equality, experiments."""

from __future__ import annotations

import numpy as np
import pytest
from envs_helpers import checks_clean, hand_matrix, lockstep, rollout

from router_rl.envs import (
    BudgetedRouting,
    BudgetedRoutingVec,
    BudgetSpec,
    FallbackSpec,
    OutageSpec,
    ProviderRates,
    RewardSpec,
    build_tables,
)
from router_rl.envs.budgeted import N_STATE
from router_rl.envs.experiments import outage_riding, pacing_vs_greedy
from router_rl.envs.outage import OutageModel
from router_rl.traces.matrix import OutcomeMatrix


def _tables(n: int = 6, cloud_cost: float = 1.0, **reward: float):
    q = np.tile([0.5, 0.7, 1.0], (n, 1))
    cost = np.tile([0.0, 0.25, cloud_cost], (n, 1))
    lat = np.tile([1.0, 2.0, 3.0], (n, 1))
    m = hand_matrix(q, cost, lat)
    X = np.column_stack([np.arange(n, dtype=np.float32), np.ones(n, dtype=np.float32)])
    return build_tables(m, X, RewardSpec(cost_ref_usd=1.0, **reward), obs_clip=100.0)


def test_forced_cheapest_when_budget_runs_out() -> None:
    env = BudgetedRouting(_tables(), BudgetSpec(usd=2.5), horizon=None, episode="sequential", obs_clip=100.0)
    obs, info = env.reset(seed=0)
    d = env.feature_dim
    assert obs[d] == 1.0 and obs[d + 1] == 0.0 and info["budget"] == 2.5
    served, forced, spent, rem = [], [], [], []
    done = False
    while not done:
        obs, r, term, trunc, info = env.step(2)  # always ask for the $1 cloud model
        served.append(info["served_action"])
        forced.append(info["forced_cheapest"])
        spent.append(info["spent"])
        rem.append(float(obs[d]))
        done = term or trunc
        assert r == pytest.approx(1.0 if not info["forced_cheapest"] else 0.5)
    assert served == [2, 2, 0, 0, 0, 0]
    assert forced == [False, False, True, True, True, True]
    assert spent == [1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert rem[:2] == pytest.approx([1.5 / 2.5, 0.5 / 2.5])
    assert term is False and trunc is True  # trace exhaustion is truncation


def test_terminate_on_exceed() -> None:
    env = BudgetedRouting(
        _tables(exceed_penalty=3.0), BudgetSpec(usd=1.5, on_exceed="terminate"), horizon=None, episode="sequential"
    )
    env.reset(seed=0)
    _, r1, t1, tr1, _ = env.step(2)
    assert (r1, t1, tr1) == (1.0, False, False)
    _, r2, t2, tr2, info = env.step(2)
    assert r2 == -3.0 and t2 is True and tr2 is False
    assert info["served_action"] == -1 and info["budget_exceeded"] and info["cost"] == 0.0
    with pytest.raises(RuntimeError):
        env.step(0)


def test_local_share_and_elapsed_in_observation() -> None:
    env = BudgetedRouting(_tables(), BudgetSpec(usd=100.0), horizon=None, episode="sequential", obs_clip=100.0)
    env.reset(seed=0)
    d = env.feature_dim
    obs, *_ = env.step(0)  # local
    assert obs[d + 1] == pytest.approx(1 / 6) and obs[d + 2] == 1.0
    obs, *_ = env.step(2)  # cloud
    assert obs[d + 2] == 0.5
    assert obs.shape == (d + N_STATE,)  # no outage process -> no health part


def test_outage_process_and_breaker_states() -> None:
    tb = _tables(n=200)
    om = OutageModel.from_spec(
        OutageSpec(enabled=True, default=ProviderRates(p_fail=0.1, p_recover=0.3)), tb
    )
    assert om.providers == ("cloudco",)  # local providers are not subject to outages by default
    assert om.model_provider.tolist() == [-1, -1, 0]
    rng = np.random.default_rng(5)
    up, mult, health = om.draw(rng, 200)
    assert mult is None
    u = np.random.default_rng(5).random((200, 1))
    state, expect = True, []
    for t in range(200):
        state = bool(u[t, 0] >= 0.1) if state else bool(u[t, 0] < 0.3)
        expect.append(state)
    assert up[:, 0].tolist() == expect
    assert 0 < (~up).sum() < 200
    prev1 = np.r_[True, up[:-1, 0]]
    prev2 = np.r_[True, True, up[:-2, 0]]
    np.testing.assert_array_equal(health[:, 0], np.where(~prev1, 1.0, np.where(~prev2, 0.5, 0.0)))


def test_down_provider_fails_or_falls_back() -> None:
    tb = _tables(n=300, failure_penalty=2.0)
    outage = OutageSpec(enabled=True, default=ProviderRates(p_fail=0.2, p_recover=0.2))
    kw = dict(outage=outage, horizon=None, episode="sequential", obs_clip=100.0)
    no_fb = BudgetedRouting(tb, BudgetSpec(usd=1e9), fallback=FallbackSpec(enabled=False), **kw)
    fb = BudgetedRouting(tb, BudgetSpec(usd=1e9), fallback=FallbackSpec(enabled=True), **kw)
    a = rollout(no_fb, 9, lambda t, o: 2)
    b = rollout(fb, 9, lambda t, o: 2)
    n_down = 0
    for (_, r1, _, _, i1), (_, r2, _, _, i2) in zip(a[1:], b[1:], strict=True):
        assert i1["provider_down"] == i2["provider_down"]  # same seed -> same outage path
        if i1["provider_down"]:
            n_down += 1
            assert i1["failed"] and r1 == -2.0 and i1["cost"] == 0.0 and i1["served_action"] == -1
            assert i2["fallback_used"] and i2["served_action"] == 0 and r2 == pytest.approx(0.5)  # cheapest local
        else:
            assert not i1["failed"] and r1 == pytest.approx(1.0)  # quality only (cost_weight 0)
    assert 20 < n_down < 280


def test_breaker_aware_policy_avoids_all_but_first_failure() -> None:
    tb = _tables(n=300)
    env = BudgetedRouting(
        tb, BudgetSpec(usd=1e9), outage=OutageSpec(enabled=True, default=ProviderRates(p_fail=0.1, p_recover=0.3)),
        horizon=None, episode="sequential", obs_clip=100.0,
    )
    h = env.feature_dim + N_STATE
    steps = rollout(env, 1, lambda t, o: 0 if o[h] == 1.0 else 2)
    up = env._up[:, 0]
    starts = int((~up & np.r_[True, up[:-1]]).sum())  # outages that begin at a step
    failures = sum(s[4]["failed"] for s in steps[1:])
    assert failures == starts > 0


def test_vec_matches_single_exactly_with_outages_budget_and_jitter() -> None:
    tb = _tables(n=40, latency_weight=0.1, privacy_penalty=1.0)
    outage = OutageSpec(enabled=True, default=ProviderRates(p_fail=0.15, p_recover=0.3, latency_sigma=0.4),
                        affects_local=True)
    for on_exceed in ("forced_cheapest", "terminate"):
        env = BudgetedRouting(tb, BudgetSpec(usd=6.0, on_exceed=on_exceed), outage=outage,
                              fallback=FallbackSpec(enabled=True, model="local-b"), horizon=25, episode="sample",
                              obs_clip=100.0)
        B, seed = 5, 100
        policy = lambda t, o: int(o[0] + t) % 3  # noqa: E731
        singles = [rollout(env, seed + b, policy) for b in range(B)]
        vec = BudgetedRoutingVec(env, B)
        for _t, b, info, r, single in lockstep(vec, singles, policy, seed):
            if single is None:
                assert not info["active"][b] and r[b] == 0.0
                continue
            for k, v in single[4].items():
                if k in ("task_id",):
                    continue
                if v is None:
                    assert np.isnan(info[k][b]), k
                else:
                    assert info[k][b] == v, (k, on_exceed)
        if on_exceed == "terminate":
            assert any(s[-1][2] for s in singles)  # some episode actually terminated


def test_checkers_have_zero_warnings() -> None:
    tb = _tables(n=30)
    env = BudgetedRouting(
        tb, BudgetSpec(per_task_usd=0.3), outage=OutageSpec(enabled=True), fallback=FallbackSpec(enabled=True),
        horizon=10, obs_clip=100.0,
    )
    assert checks_clean(env) == []
    assert env.observation_space.shape == (tb.dim + N_STATE + 1,)


def test_bad_fallback_and_outage_provider_fail_at_construction() -> None:
    tb = _tables()
    with pytest.raises(ValueError, match=r"fallback.model.*'nope' is not one of the models"):
        BudgetedRouting(tb, BudgetSpec(usd=1.0), fallback=FallbackSpec(enabled=True, model="nope"))
    with pytest.raises(ValueError, match=r"outage.providers.*'ghost'"):
        BudgetedRouting(tb, BudgetSpec(usd=1.0), outage=OutageSpec(enabled=True, providers={"ghost": ProviderRates()}))


def test_pacing_provably_beats_greedy() -> None:
    res = pacing_vs_greedy(n=20, episodes=2)
    # greedy: 20 easy tasks at 1.0 then 20 hard tasks forced local at 0.1; pacing: 0.9*20 + 1.0*20
    assert res.greedy.tolist() == pytest.approx([22.0, 22.0])
    assert res.sequential.tolist() == pytest.approx([38.0, 38.0])
    assert res.sequential_quality == pytest.approx(0.95) and res.greedy_quality == pytest.approx(0.55)


def test_riding_out_outages_beats_greedy() -> None:
    res = outage_riding(n=400, episodes=3, seed=0)
    assert (res.sequential > res.greedy).all()
    assert res.advantage > 20.0


def test_llmperf_rates_from_a_small_file(tmp_path) -> None:
    from router_rl.envs import fit_llmperf_rates

    rows = ["provider,model_size,request_idx,error_code,ttft_s,end_to_end_latency_s,inter_token_latency_s,"
            "input_tokens,output_tokens"]
    errs = ["", "", "429", "429", "", "", "", "429"]  # up->down 2 of 5 ups, down->up 1 of 2 downs
    for k, e in enumerate(errs):
        rows.append(f"p1,7b,{k},{e},0.1,{1.0 if not e else 0.0},0.01,550,150")
    (tmp_path / "requests_long.csv").write_text("\n".join(rows) + "\n")
    rates = fit_llmperf_rates(tmp_path)
    # transitions over pairs (0..6)->(1..7): ups at 0,1,4,5,6 (5), up->down at 1->2, 6->7 (2);
    # downs at 2,3 (2), down->up 3->4 (1)
    assert rates["p1"].p_fail == pytest.approx((2 + 1) / (5 + 2))
    assert rates["p1"].p_recover == pytest.approx((1 + 1) / (2 + 2))
    assert rates["p1"].latency_sigma == pytest.approx(0.0)


def test_hand_matrix_is_real_outcome_matrix() -> None:
    m = hand_matrix(np.ones((2, 3)), np.zeros((2, 3)))
    assert isinstance(m, OutcomeMatrix) and m.is_local().tolist() == [True, True, False]


def test_reset_can_start_with_part_of_the_budget_spent() -> None:
    env = BudgetedRouting(_tables(), BudgetSpec(usd=2.0), horizon=None, episode="sequential", obs_clip=100.0)
    d = env.feature_dim
    fresh, _ = env.reset(seed=0)
    obs, _ = env.reset(seed=0, options={"spent_frac": 0.75})
    np.testing.assert_array_equal(obs[:d], fresh[:d])  # same task stream: no extra draw
    assert obs[d] == pytest.approx(0.25) and obs[d + 1] == 0.0
    # only 0.5 USD left: the cloud model (1.0) no longer fits, the request is forced to the cheapest
    _, _, _, _, info = env.step(2)
    assert info["forced_cheapest"] and info["served_action"] == 0
    with pytest.raises(ValueError, match="spent_frac"):
        env.reset(seed=0, options={"spent_frac": 1.0})


def _day_mix(n: int, groups: list[str], concentration: float):
    import polars as pl

    from router_rl.envs import DayMix

    return DayMix.from_tasks(pl.DataFrame({"category": [groups[i % len(groups)] for i in range(n)]}),
                             "category", concentration, source="test")


def test_day_mix_draws_different_days_around_the_split_mix() -> None:
    tb = _tables(n=60)
    shares = {}
    for conc in (0.5, 1000.0):
        mix = _day_mix(60, ["a", "a", "b"], conc)  # split mix: 2/3 a, 1/3 b
        env = BudgetedRouting(tb, BudgetSpec(per_task_usd=1.0), horizon=50, episode="sample", day_mix=mix)
        days = []
        for s in range(200):
            env.reset(seed=s)
            days.append((mix.groups[env._order] == 0).mean())
        shares[conc] = np.array(days)
        assert shares[conc].mean() == pytest.approx(2 / 3, abs=0.05)  # on average, the split's mix
    assert shares[1000.0].std() < 0.1  # ~ binomial noise of 50 draws (0.067)
    assert shares[0.5].std() > 0.3  # days dominated by one group
    env.reset(seed=3)
    first = env._order.copy()
    env.reset(seed=3)
    np.testing.assert_array_equal(env._order, first)


def test_day_mix_vec_matches_single() -> None:
    tb = _tables(n=40)
    env = BudgetedRouting(tb, BudgetSpec(per_task_usd=0.5), horizon=20, episode="sample",
                          day_mix=_day_mix(40, ["a", "b", "c", "d"], 1.0))
    singles = [rollout(env, 7 + b, lambda t, o: t % 3) for b in range(4)]
    vec = BudgetedRoutingVec(env, 4)
    obs, _ = vec.reset(seed=7)
    for b in range(4):
        np.testing.assert_array_equal(obs[b], singles[b][0][0])
    np.testing.assert_array_equal(vec._order[2], [singles[2][t][4]["task_index"] for t in range(1, 21)])


def test_day_mix_bad_settings_are_named() -> None:
    from router_rl.core.errors import ConfigError
    from router_rl.envs import DayMix, load_spec

    tb = _tables(n=10)
    with pytest.raises(ValueError, match="day_mix: needs episode 'sample'"):
        BudgetedRouting(tb, BudgetSpec(usd=1.0), episode="sequential", day_mix=_day_mix(10, ["a"], 1.0))
    with pytest.raises(ValueError, match="day_mix: 9 task groups for 10 tasks"):
        BudgetedRouting(tb, BudgetSpec(usd=1.0), episode="sample", day_mix=_day_mix(9, ["a"], 1.0))
    import polars as pl

    with pytest.raises(ConfigError, match=r"day_mix.column.*'agent'.*\['category'\]"):
        DayMix.from_tasks(pl.DataFrame({"category": ["a"]}), "agent", 1.0, source="test")
    spec = load_spec("sim-budgeted")
    with pytest.raises(ConfigError, match=r"day_mix\.concentration: expected a finite number > 0"):
        spec.with_overrides(episode="sample", day_mix={"concentration": 0.0})
    with pytest.raises(ConfigError, match="day_mix: needs kind 'budgeted' and episode 'sample'"):
        spec.with_overrides(day_mix={"concentration": 1.0})  # sim-budgeted replays the trace sequentially
    with pytest.raises(ConfigError, match=r"day_mix.column.*'nope'"):
        from router_rl.envs import make_from_spec

        make_from_spec(spec.with_overrides(episode="sample", day_mix={"column": "nope"}, data={"n_tasks": 300}))


def test_shipped_daymix_env_passes_the_checkers() -> None:
    from router_rl.envs import load_spec, make_from_spec

    spec = load_spec("sim-daymix").with_overrides(data={"n_tasks": 400}, horizon=20)
    env = make_from_spec(spec)
    assert env.day_mix is not None and len(env.day_mix.names) >= 4
    assert checks_clean(env) == []

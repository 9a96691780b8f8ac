"""Matched DiD event study (impact.estimate.matched_did): arithmetic, censoring, inference."""

from __future__ import annotations

import math
import warnings
from datetime import date

import numpy as np
import polars as pl
import pytest

from impact.estimate.matched_did import (
    matched_att,
    matched_event_studies,
    matched_event_study,
    stack_tables,
)
from impact.outcomes import build_trajectories
from impact.twins.features import CATEGORIES, SERIES, PanelArrays

T = 72
M0 = date(2020, 1, 1)


def month(i: int) -> date:
    return date(M0.year + (M0.month - 1 + i) // 12, (M0.month - 1 + i) % 12 + 1, 1)


# --------------------------------------------------------------------------------------
# the core on hand-made change scores


def hand_example(d_b: float = 7.0, b_twins=(4.0, np.nan)):
    """Treated A (D=10) with twins a1 (2), a2 (4); treated B (D=7) with a2 (4), b1 (censored).

    Twin a2 serves both treated persons (reuse)."""
    d_t = np.array([[10.0], [d_b]])
    d_p = np.array([[2.0], [4.0], [b_twins[0]], [b_twins[1]]])
    pair_treated = np.array([0, 0, 1, 1])
    weight = np.full(4, 0.5)
    twin_id = np.array([11, 12, 12, 13])
    return d_t, d_p, pair_treated, weight, twin_id


def test_att_and_weight_renormalisation_by_hand() -> None:
    r = matched_att(*hand_example())
    # tau_A = 10 - (2 + 4) / 2 = 7; tau_B = 7 - 4 (b1 censored: a2 gets weight 1) = 3
    assert r.unit_effect[:, 0].tolist() == [7.0, 3.0]
    assert r.att[0] == 5.0
    assert r.n_treated[0] == 2 and r.n_twins[0] == 2 and r.n_lost[0] == 0
    # W: a1 .5, a2 .5 + 1 = 1.5 -> Kish ESS = 2^2 / (.25 + 2.25)
    assert r.twin_ess[0] == pytest.approx(1.6)


def test_analytic_se_equals_the_abadie_imbens_formula_by_hand() -> None:
    r = matched_att(*hand_example())
    # treated sets: c = (tau - att) / n = +1, -1
    assert r.contrib_treated[:, 0].tolist() == [1.0, -1.0]
    # a2: W = 1.5, Q = .25 + 1 -> W^2 - Q = 1; residual within A's set:
    # (4 - 2) * sqrt(1/2) = sqrt(2) (B's set has one observed twin: no residual) -> c = sqrt(2)/2
    c = dict(zip(r.twin_ids.tolist(), r.contrib_twins[:, 0].tolist(), strict=True))
    assert c[11] == 0.0 and c[13] == 0.0
    assert c[12] == pytest.approx(math.sqrt(2) / 2)
    assert r.se_analytic[0] == pytest.approx(math.sqrt(1 + 1 + 0.5))
    tc = matched_att(*hand_example(), variance="treated_clusters")
    assert tc.se_analytic[0] == pytest.approx(math.sqrt(2.0))
    # the influence rows follow the convention of impact.estimate.inference
    from impact.estimate.inference import analytic_se

    assert analytic_se(r.influence())[0] == pytest.approx(r.se_analytic[0])


def test_without_reuse_the_se_is_the_paired_formula() -> None:
    rng = np.random.default_rng(3)
    n, k = 7, 3
    d_t = rng.normal(5, 2, size=(n, 1))
    d_p = rng.normal(0, 2, size=(n * k, 1))
    pt = np.repeat(np.arange(n), k)
    r = matched_att(d_t, d_p, pt, np.full(n * k, 1 / k), np.arange(n * k))
    tau = d_t[:, 0] - d_p[:, 0].reshape(n, k).mean(axis=1)
    assert r.att[0] == pytest.approx(tau.mean())
    assert r.se_analytic[0] == pytest.approx(np.sqrt(((tau - tau.mean()) ** 2).sum()) / n)
    assert not r.contrib_twins.any()


def test_a_treated_person_without_observed_twins_is_lost() -> None:
    r = matched_att(*hand_example(b_twins=(np.nan, np.nan)))
    assert r.att[0] == 7.0 and r.n_treated[0] == 1 and r.n_lost[0] == 1
    assert np.isnan(r.unit_effect[1, 0])
    r = matched_att(*hand_example(d_b=np.nan))  # B itself not observed: not lost, not counted
    assert r.n_treated[0] == 1 and r.n_lost[0] == 0


def test_abadie_imbens_term_restores_coverage_under_heavy_reuse() -> None:
    """Random twins from a small pool (each twin used about five times): the treated-cluster
    variance ignores the reuse and under-covers; the reuse term restores ~95 %."""
    rng = np.random.default_rng(7)
    n_t, n_c, k, tau, reps = 100, 60, 3, 1.0, 400
    hit = {"abadie_imbens": 0, "treated_clusters": 0}
    for _ in range(reps):
        d_t = rng.normal(tau, 1.0, size=(n_t, 1))
        d_c = rng.normal(0.0, 1.0, size=n_c)
        twins = np.concatenate([rng.choice(n_c, size=k, replace=False) for _ in range(n_t)])
        pt = np.repeat(np.arange(n_t), k)
        for v in hit:
            r = matched_att(d_t, d_c[twins, None], pt, np.full(n_t * k, 1 / k), twins, variance=v)
            hit[v] += abs(r.att[0] - tau) <= 1.959964 * r.se_analytic[0]
    cover = {v: h / reps for v, h in hit.items()}
    assert 0.92 <= cover["abadie_imbens"] <= 0.985, cover
    assert cover["treated_clusters"] < 0.90, cover


# --------------------------------------------------------------------------------------
# the full chain on a hand-made panel with a planted effect


def planted(
    n_treated: int = 40,
    n_controls: int = 120,
    k: int = 3,
    delta: float = 100.0,
    noise: float = 0.0,
    seed: int = 0,
    cohort: int = 48,
    late_start: int | None = None,
) -> tuple[PanelArrays, pl.DataFrame, pl.DataFrame]:
    """One cohort; earnings = level + slope * t (+ noise) + delta from the start on.

    Treated persons and the first half of the controls have slope 30, the other controls 10;
    twins are drawn among the slope-30 controls (a perfect match), so a naive comparison with
    all controls is biased by 20 per month since the baseline. Training lasts 3 months.
    ``late_start``: the first twin of treated person 0 starts ILA in that month."""
    rng = np.random.default_rng(seed)
    n = n_treated + n_controls
    months = [month(i) for i in range(T)]
    t = np.arange(T)[None, :]
    slope = np.r_[
        np.full(n_treated, 30.0),
        np.full(n_controls // 2, 30.0),
        np.full(n_controls - n_controls // 2, 10.0),
    ]
    level = rng.uniform(500, 1500, size=n)
    y = level[:, None] + slope[:, None] * t + noise * rng.standard_normal((n, T))
    y[:n_treated, cohort:] += delta
    series = {c: np.zeros((n, T), dtype=d) for c, d in SERIES.items()}
    series["earnings_real"][:] = y
    for c, v in (("days_worked", 20), ("employed", 1), ("eligible", 1), ("age", 40)):
        series[c][:] = v
    series["daily_wage_real"][:] = y / 20
    codes = {c: np.full((n, T), -1, dtype=np.int16) for c in CATEGORIES}
    fs = np.full(n, -1, dtype=np.int32)
    fs[:n_treated] = cohort
    pool = np.arange(n_treated, n_treated + n_controls // 2)
    twins = np.concatenate([rng.choice(pool, size=k, replace=False) for _ in range(n_treated)])
    if late_start is not None:
        fs[twins[0]] = late_start
    arrays = PanelArrays(
        person_code=np.array([f"P{i:04d}" for i in range(n)], dtype=object),
        sex=np.array(["F"] * n, dtype=object),
        first_start=fs,
        months=months,
        series=series,
        codes=codes,
        levels={c: [] for c in CATEGORIES},
    )
    pairs = pl.DataFrame(
        {
            "cohort": [month(cohort)] * (n_treated * k),
            "treated_pid": np.repeat(np.arange(n_treated), k).astype(np.int32),
            "twin_pid": twins.astype(np.int32),
            "weight": np.full(n_treated * k, 1 / k),
        }
    )
    tr = pl.DataFrame(
        {
            "person_code": arrays.person_code[:n_treated].astype(str),
            "end_month": [month(cohort + 3)] * n_treated,
        }
    )
    return arrays, pairs, tr


def test_a_planted_effect_is_recovered_exactly_and_the_naive_is_biased() -> None:
    arrays, pairs, tr = planted()
    traj = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real"])
    res = matched_event_study(traj, "earnings_real", "start", arrays=arrays, reps=99)
    tab = res.table()
    pre = tab.filter(pl.col("event_time") < 0)
    post = tab.filter(pl.col("event_time") >= 0)
    assert np.allclose(pre["att"], 0.0, atol=1e-3)  # placebos (float32 panel)
    assert np.allclose(post["att"], 100.0, atol=1e-3)
    # naive: all controls (mean slope 20) -> extra 10 per month since the baseline midpoint
    e = post["event_time"].to_numpy()
    assert np.allclose(post["att_naive"], 100.0 + 10.0 * (e + 6.5), atol=1e-3)
    assert post["n_treated"].to_list() == [40] * post.height
    end = matched_event_study(traj, "earnings_real", "end", reps=99)
    assert end.at(6)["att"] == pytest.approx(100.0)
    assert end.at(-5)["att"] == pytest.approx(0.0, abs=1e-3)  # 2 months before the start
    # placebo test over e = -36..-13; no noise -> singular variance -> no Wald test
    assert res.pretest_event_time.tolist() == list(range(-36, -12)) and res.pretest is None
    assert end.pretest is None and end.pretest_event_time.size == 0


def test_a_twin_starting_later_is_censored_and_its_set_renormalised() -> None:
    # the first twin of treated 0 starts ILA in month 54 (e = 6) and "gains" 5000 from then
    # on: censored from e = 6, its treated persons keep their other twins (weights rescaled)
    arrays, pairs, tr = planted(late_start=54)
    j = int(pairs["twin_pid"][0])
    arrays.series["earnings_real"][j, 54:] += 5000.0  # what it would add if not censored
    traj = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real"])
    res = matched_event_study(traj, "earnings_real", "start", reps=99)
    assert np.allclose(res.params[res.event_time >= 0], 100.0, atol=1e-3)
    i = res._col(6)
    assert res.unit_effect[0, i] == pytest.approx(100.0)
    assert res.n_twins[i] == res.n_twins[res._col(5)] - 1
    assert res.nobs[i] == 40 and res.n_lost[i] == 0


def test_noisy_planted_effect_inference_and_row_order() -> None:
    arrays, pairs, tr = planted(n_treated=150, n_controls=300, noise=80.0, seed=2)
    traj = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real"])
    res = matched_event_study(traj, "earnings_real", "start", reps=499, seed=1)
    post = res.event_time >= 0
    z = (res.params - np.where(post, 100.0, 0.0)) / res.bse
    assert np.mean(np.abs(z) < 1.96) > 0.8
    assert np.abs(z).max() < res.crit_uniform + 1.0
    assert res.crit_uniform > 1.96
    assert np.allclose(res.bse, res.bse_analytic, rtol=0.15)
    band, ci = res.conf_int_uniform(), res.conf_int()
    assert (band[:, 1] - band[:, 0] > ci[:, 1] - ci[:, 0]).all()
    assert res.pretest is not None and res.pretest.df == (res.event_time < -12).sum()
    assert res.pretest.pvalue > 0.001
    # shuffled pair rows give the same numbers, bootstrap included
    shuffled = pairs.sample(fraction=1.0, shuffle=True, seed=5)
    traj2 = build_trajectories(arrays, shuffled, tr.reverse(), outcomes=["earnings_real"])
    res2 = matched_event_study(traj2, "earnings_real", "start", reps=499, seed=1)
    assert np.array_equal(res.params, res2.params)
    assert np.array_equal(res.bse, res2.bse)


def test_event_time_subset_api_and_errors() -> None:
    arrays, pairs, tr = planted()
    traj = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real", "employed"])
    res = matched_event_study(traj, "earnings_real", "end", event_times=[6, 12, 18], reps=99)
    assert res.event_time.tolist() == [6, 12, 18]
    h = res.horizons()  # 24 months after leaving is beyond this panel: left out
    assert h["event_time"].to_list() == [6, 12]
    assert {"att", "se", "ci_low", "ci_high", "pvalue", "n_treated", "n_twins", "twin_ess"} <= set(
        h.columns
    )
    assert "ATT" in res.summary()
    many = matched_event_studies(traj, clocks=("start", "end"), reps=99)
    assert set(many) == {
        ("earnings_real", "start"),
        ("earnings_real", "end"),
        ("employed", "start"),
        ("employed", "end"),
    }
    assert stack_tables(many).height == sum(r.event_time.size for r in many.values())
    with pytest.raises(KeyError):
        matched_event_study(traj, "daily_wage_real")
    with pytest.raises(KeyError):
        matched_event_study(traj, "earnings_real", "end", event_times=[500])


# --------------------------------------------------------------------------------------
# the synthetic evaluation


def test_on_the_synthetic_evaluation(research) -> None:
    from impact.pseudonym import PseudonymKey, pseudonymise
    from impact.twins.riskset import TwinSettings, match_cohorts

    arrays = PanelArrays.load(research.root / "panel", date(2021, 1, 1), date(2028, 6, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tw = match_cohorts(arrays, TwinSettings(gate_min_treated=10))
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    traj = build_trajectories(arrays, tw.pairs, tr, outcomes=["earnings_real", "employed"])
    res = matched_event_study(traj, "earnings_real", "end", arrays=arrays, reps=199)
    row = res.at(6)
    assert 0 < row["n_treated"] <= traj.n_treated and row["n_twins"] > row["n_treated"]
    assert np.isfinite(row["att"]) and row["se"] > 0 and np.isfinite(row["att_naive"])
    # truth over the same treated persons (the generator's potential outcomes)
    p = pl.read_parquet(research.root / "truth" / "paths.parquet").filter(pl.col("event_end") == 6)
    p = p.with_columns(pseudonymise(p["person_code"], PseudonymKey.demo(), "person").alias("pc"))
    used = traj.treated_code[np.isfinite(res.unit_effect[:, res._col(6)])]
    truth = (
        p.filter(pl.col("pc").is_in(used.tolist()))
        .select((pl.col("earnings_real_1") - pl.col("earnings_real_0")).mean())
        .item()
    )
    assert abs(row["att"] - truth) < 4 * row["se"]
    start = matched_event_study(traj, "earnings_real", "start", reps=199)
    assert start.pretest is not None and start.pretest.pvalue > 0.001  # F-corrected


@pytest.mark.slow
def test_truth_recovery_on_20k_persons(tmp_path) -> None:
    """The whole chain on 20,000 synthetic persons (seed 1): earnings 6, 12 and 24 months
    after leaving within 2 SE of the true ATT of the same matched treated persons."""
    from impact import panel
    from impact.ingest import IngestSettings, deliveries_in, ingest
    from impact.pseudonym import PseudonymKey, pseudonymise
    from impact.synth import SynthConfig, generate
    from impact.twins.riskset import TwinSettings, match_cohorts

    key = PseudonymKey.demo()
    generate(SynthConfig(persons=20_000, seed=1), tmp_path)
    ingest(deliveries_in(tmp_path / "landing"), IngestSettings(out=tmp_path, key=key, gx_sample=0))
    panel.build(tmp_path / "sources", tmp_path / "panel")
    panel.build_episodes(tmp_path / "sources", tmp_path / "research")
    arrays = PanelArrays.load(tmp_path / "panel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tw = match_cohorts(arrays, TwinSettings())
    tr = pl.read_parquet(tmp_path / "research" / "treatment.parquet")
    traj = build_trajectories(arrays, tw.pairs, tr, outcomes=["earnings_real"])
    res = matched_event_study(traj, "earnings_real", "end", event_times=[6, 12, 24])
    paths = pl.read_parquet(tmp_path / "truth" / "paths.parquet")
    paths = paths.with_columns(pseudonymise(paths["person_code"], key, "person").alias("pc"))
    for h in (6, 12, 24):
        used = traj.treated_code[np.isfinite(res.unit_effect[:, res._col(h)])]
        truth = paths.filter((pl.col("event_end") == h) & pl.col("pc").is_in(used.tolist()))
        att = truth.select((pl.col("earnings_real_1") - pl.col("earnings_real_0")).mean()).item()
        r = res.at(h)
        assert abs(r["att"] - att) <= 2 * r["se"], (h, r, att)

"""Impact indicators: rules on hand-made persons, the estimator, and the whole table."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from impact import evaluate
from impact.estimate.matched_did import matched_att
from impact.indicators import IndicatorSettings, compute_indicators, read_pairs
from impact.indicators.breakdowns import breakdown_keys
from impact.indicators.curves import weighted_km
from impact.indicators.estimate import estimate_cells
from impact.indicators.rules import Context, compute_values
from impact.indicators.sample import NO_MONTH, Arm, MatchedSample
from impact.indicators.subpanel import NUMERIC, TEXT, SubPanel
from impact.twins.riskset import TwinSettings

N_MONTHS = 40
ENTRY, LEAVE = 20, 22  # entry and leaving month of every participant below


def _sub(n: int) -> SubPanel:
    months = pl.date_range(date(2024, 1, 1), date(2027, 4, 1), "1mo", eager=True).to_list()
    assert len(months) == N_MONTHS
    num = {c: np.zeros((n, N_MONTHS)) for c in NUMERIC}
    codes = {c: np.full((n, N_MONTHS), -1, dtype=np.int32) for c in TEXT}
    levels = {c: [] for c in TEXT}
    levels["contract_type"] = ["FIXED", "PERMANENT"]
    levels["occupation_code"] = ["2511", "4110", "9112"]
    levels["nace_section"] = ["C", "J"]
    levels["employer_id"] = ["E1", "E2"]
    levels["sex"] = ["F", "M"]
    return SubPanel(pid=np.arange(n), months=months, numeric=num, codes=codes, levels=levels,
                    in_panel=np.ones((n, N_MONTHS), dtype=bool),
                    first_start=np.full(n, -1))


def _job(sub: SubPanel, i: int, months: slice, wage: float, occ: int = 1,
         contract: int = 1, part: float = 0.0, employer: int = 0, section: int = 0) -> None:
    sub.numeric["employed"][i, months] = 1
    sub.numeric["days_worked"][i, months] = 20
    sub.numeric["daily_wage_real"][i, months] = wage
    sub.numeric["earnings_real"][i, months] = 20 * wage
    sub.numeric["part_time"][i, months] = part
    sub.codes["occupation_code"][i, months] = occ
    sub.codes["contract_type"][i, months] = contract
    sub.codes["employer_id"][i, months] = employer
    sub.codes["nace_section"][i, months] = section


def _ctx(sub: SubPanel, **kw) -> Context:
    return Context(settings=IndicatorSettings(**kw),
                   occ_rank=np.array([4.0, 2.0, 1.0]),  # 2511 > 4110 > 9112
                   sector_rank=np.array([0.9, 1.6]),  # C < J
                   sector_wage=np.full((2, N_MONTHS), 50.0),
                   field_match={"ICT": np.array([True, False, False])},
                   earnings_scale=1000.0,
                   days_in_month=np.full(N_MONTHS, 30.0))


def _arm(sub: SubPanel, rows, censor=None) -> Arm:
    rows = np.asarray(rows)
    n = rows.size
    return Arm(sub, rows, np.full(n, ENTRY), np.full(n, LEAVE),
               np.full(n, 10**9) if censor is None else np.asarray(censor))


def _values(sample: MatchedSample, ctx: Context) -> dict:
    return {v.spec.id: v for v in compute_values(sample, ctx)}


def _sample(sub: SubPanel, treated: list[int], twins: list[tuple[int, int]],
            censor: list[int] | None = None) -> MatchedSample:
    pt = np.array([t for t, _ in twins])
    rows = np.array([j for _, j in twins])
    return MatchedSample(
        treated=_arm(sub, treated), twins=Arm(sub, rows, np.full(rows.size, ENTRY),
                                              np.full(rows.size, LEAVE),
                                              np.full(rows.size, 10**9) if censor is None
                                              else np.array(censor)),
        pair_treated=pt, weight=np.ones(rows.size), twin_pid=rows,
        info=pl.DataFrame({"field": ["ICT"] * len(treated), "hours": [80] * len(treated),
                           "programme_type": ["STUDY_COURSE"] * len(treated),
                           "public_cost_eur": [500.0] * len(treated),
                           "co_payment_eur": [50.0] * len(treated)}))


def test_eecr06_criteria_on_hand_made_persons() -> None:
    sub = _sub(8)
    h = LEAVE + 6
    # 0: pay up 10 % (> 5 %), same job
    _job(sub, 0, slice(0, h), 50.0)
    _job(sub, 0, slice(h, N_MONTHS), 55.0)
    # 1: pay up only 4 %: not improved
    _job(sub, 1, slice(0, h), 50.0)
    _job(sub, 1, slice(h, N_MONTHS), 52.0)
    # 2: occupation upgrade 9112 -> 2511, same pay
    _job(sub, 2, slice(0, h), 50.0, occ=2)
    _job(sub, 2, slice(h, N_MONTHS), 50.0, occ=0)
    # 3: fixed-term to permanent and part-time to full-time
    _job(sub, 3, slice(0, h), 50.0, contract=0, part=1.0)
    _job(sub, 3, slice(h, N_MONTHS), 50.0, contract=1, part=0.0)
    # 4: not employed at entry: outside the reference population
    _job(sub, 4, slice(ENTRY + 1, N_MONTHS), 80.0)
    # 5: employed at entry, job lost by the horizon: in the population, not improved
    _job(sub, 5, slice(0, h), 50.0)
    # 6: emigrated before the horizon: unobservable, dropped
    _job(sub, 6, slice(0, N_MONTHS), 50.0)
    sub.in_panel[6, h - 1:] = False
    # 7: twin that starts ILA itself before the horizon (censored), otherwise improved
    _job(sub, 7, slice(0, h), 50.0)
    _job(sub, 7, slice(h, N_MONTHS), 70.0)
    arm = _arm(sub, np.arange(8), censor=[10**9] * 7 + [h])
    ctx = _ctx(sub)
    from impact.indicators.rules import _eecr06

    e = _eecr06(arm, ctx)
    nan = np.nan
    np.testing.assert_array_equal(e["pay_up"], [1, 0, 0, 0, nan, 0, nan, nan])
    np.testing.assert_array_equal(e["occupation_up"], [0, 0, 1, 0, nan, 0, nan, nan])
    np.testing.assert_array_equal(e["fixed_to_permanent"], [0, 0, 0, 1, nan, 0, nan, nan])
    np.testing.assert_array_equal(e["part_to_full_time"], [0, 0, 0, 1, nan, 0, nan, nan])
    np.testing.assert_array_equal(e["any"], [1, 0, 1, 1, nan, 0, nan, nan])
    # the sector's wage is flat: beating it means any pay rise
    np.testing.assert_array_equal(e["pay_up_vs_sector"], [1, 1, 0, 0, nan, 0, nan, nan])
    # a 4 % threshold makes person 1 improved, person 0 still
    e4 = _eecr06(arm, _ctx(sub, eecr06={"pay_threshold": 0.03}))
    np.testing.assert_array_equal(e4["pay_up"][:2], [1, 1])


def test_monthly_earnings_replace_daily_wage_where_days_are_missing() -> None:
    sub = _sub(1)
    h = LEAVE + 6
    _job(sub, 0, slice(0, N_MONTHS), 50.0)
    sub.numeric["daily_wage_real"][0, h] = np.nan  # days missing at the horizon
    sub.numeric["earnings_real"][0, h] = 20 * 50.0 * 1.2
    from impact.indicators.rules import _eecr06

    assert _eecr06(_arm(sub, [0]), _ctx(sub))["pay_up"][0] == 1


def test_net_is_participants_minus_weighted_twins_and_matches_matched_att() -> None:
    sub = _sub(6)
    h = LEAVE + 6
    for i in range(6):
        _job(sub, i, slice(0, N_MONTHS), 50.0)
    _job(sub, 0, slice(h, N_MONTHS), 60.0)  # participant 0 improves
    _job(sub, 2, slice(h, N_MONTHS), 60.0)  # one of participant 0's two twins improves
    _job(sub, 4, slice(h, N_MONTHS), 60.0)  # participant 1's only twin improves
    s = _sample(sub, [0, 1], [(0, 2), (0, 3), (1, 4)])
    ctx = _ctx(sub)
    vals = _values(s, ctx)
    v = vals["eecr06_any"]
    np.testing.assert_array_equal(v.post_t, [1, 0])
    np.testing.assert_array_equal(v.post_p, [1, 0, 1])
    groups = {"all": np.array(["all", "all"], dtype=object)}
    table, _ = estimate_cells([v], s.pair_treated, s.weight, s.twin_pid, groups)
    r = table.row(0, named=True)
    assert r["participants"] == pytest.approx(0.5)
    assert r["twins"] == pytest.approx((0.5 + 1.0) / 2)
    assert r["net"] == pytest.approx(0.5 - 0.75)
    ref = matched_att(v.post_t, v.post_p, s.pair_treated, s.weight, s.twin_pid)
    assert r["se"] == pytest.approx(float(ref.se_analytic[0]))
    assert r["n_participants"] == 2 and r["n_twins"] == 3


def test_did_indicators_subtract_the_pre_period() -> None:
    sub = _sub(2)
    _job(sub, 0, slice(0, N_MONTHS), 50.0)  # participant: employed throughout
    _job(sub, 1, slice(0, ENTRY), 50.0)  # twin: employed before, not after
    s = _sample(sub, [0], [(0, 1)])
    v = _values(s, _ctx(sub))["months_employed_h12"]
    assert v.post_t[0] == 12 and v.pre_t[0] == 12
    assert v.post_p[0] == 0 and v.pre_p[0] == 12
    table, _ = estimate_cells([v], s.pair_treated, s.weight, s.twin_pid,
                              {"all": np.array(["all"], dtype=object)})
    r = table.row(0, named=True)
    assert (r["participants"], r["twins"], r["net"]) == (12, 0, 12)
    assert (r["participants_pre"], r["twins_pre"]) == (12, 12)


def test_window_sums_need_every_month_and_no_leaving_month_means_missing() -> None:
    sub = _sub(2)
    _job(sub, 0, slice(0, N_MONTHS), 50.0)
    _job(sub, 1, slice(0, N_MONTHS), 50.0)
    sub.in_panel[0, LEAVE + 5] = False
    arm = Arm(sub, np.array([0, 1]), np.array([ENTRY, ENTRY]), np.array([LEAVE, NO_MONTH]),
              np.array([10**9, 10**9]))
    s = arm.window_sum("employed", arm.leave + 1, 12)
    assert np.isnan(s).all()
    assert arm.window_sum("employed", arm.entry - 12, 12)[1] == 12


def test_stay_mobility_and_mismatch_rules() -> None:
    sub = _sub(3)
    # 0: stays with E1 and moves to a higher-ranked occupation and sector at L+12
    _job(sub, 0, slice(0, LEAVE + 12), 50.0, occ=1, section=0)
    _job(sub, 0, slice(LEAVE + 12, N_MONTHS), 50.0, occ=0, section=1)
    # 1: changes employer at L+3
    _job(sub, 1, slice(0, LEAVE + 3), 50.0)
    _job(sub, 1, slice(LEAVE + 3, N_MONTHS), 50.0, employer=1)
    # 2: tertiary education in a skill-level-1 job: over-educated
    _job(sub, 2, slice(0, N_MONTHS), 50.0, occ=2)
    sub.numeric["isced_level"][:, :] = 3
    sub.numeric["isced_level"][2, :] = 6
    sub.numeric["skill_level"][:, :] = 2
    sub.numeric["skill_level"][2, :] = 1
    s = _sample(sub, [0, 1, 2], [(0, 1), (1, 2), (2, 0)])
    v = _values(s, _ctx(sub))
    np.testing.assert_array_equal(v["stay_employer_h6"].post_t, [1, 0, 1])
    np.testing.assert_array_equal(v["mobility_vertical_h12"].post_t, [1, 0, 0])
    np.testing.assert_array_equal(v["mobility_horizontal_h12"].post_t, [1, 0, 0])
    np.testing.assert_array_equal(v["overeducated_h12"].post_t, [0, 0, 1])
    # field mismatch: only 2511 is an ICT occupation; person 0 moved into it
    np.testing.assert_array_equal(v["field_mismatch_h12"].pre_t, [1, 1, 1])
    np.testing.assert_array_equal(v["field_mismatch_h12"].post_t, [0, 1, 1])


def test_weighted_km_unit_weights_match_statsmodels_and_scale_free() -> None:
    from statsmodels.duration.survfunc import SurvfuncRight

    rng = np.random.default_rng(0)
    d = rng.integers(1, 25, 500).astype(float)
    e = rng.random(500) < 0.6
    km = weighted_km(d, e, np.ones(500), 24)
    sf = SurvfuncRight(d, e.astype(float))
    idx = np.searchsorted(sf.surv_times, np.arange(1, 25), side="right") - 1
    np.testing.assert_allclose(km["survival"].to_numpy()[1:], sf.surv_prob[idx])
    half = (km["ci_high"] - km["survival"]).to_numpy()[1:6] / 1.959964
    np.testing.assert_allclose(half, sf.surv_prob_se[idx][:5], rtol=1e-5)
    w = rng.random(500) + 0.1
    np.testing.assert_allclose(weighted_km(d, e, w, 24)["survival"],
                               weighted_km(d, e, 7 * w, 24)["survival"])


# ------------------------------------------------------------------ on the synthetic data


@pytest.fixture(scope="module")
def indicators(research, tmp_path_factory):
    out = tmp_path_factory.mktemp("indicators")
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    arrays = evaluate.load_arrays(research.root / "panel", tr)
    tw = evaluate.run_twins(arrays, TwinSettings(gate_min_treated=10), out / "twins")
    est = evaluate.run_estimates(arrays, tw.pairs, tr, research.root / "sources",
                                 out / "estimates", reps=99, seed=1)
    pairs = read_pairs(out / "twins")
    res = compute_indicators(research.root / "panel", pairs, tr, research.root / "sources")
    return out, res, est


def test_every_indicator_has_participants_twins_and_net(indicators) -> None:
    _, res, _ = indicators
    head = res.table.filter(pl.col("dimension") == "all")
    assert set(head["indicator"]) == set(res.specs)
    for fam in ("eecr06", "labour", "income", "quality", "mobility", "skills_match",
                "resilience", "composite", "roi"):
        assert fam in set(head["family"])
    level = head.filter(pl.col("contrast") != "gross", pl.col("family") != "roi")
    assert level["participants"].null_count() == 0 and level["twins"].null_count() == 0
    assert head.filter(pl.col("contrast") != "gross")["net"].null_count() == 0
    assert (head["n_participants"] > 0).all()


def test_breakdown_groups_partition_each_indicator(indicators) -> None:
    _, res, _ = indicators
    t = res.table.filter(pl.col("family") != "roi")
    total = t.filter(pl.col("dimension") == "all").select("indicator", pl.col(
        "n_participants").alias("n_all"))
    sums = t.filter(pl.col("dimension") != "all").group_by("indicator", "dimension").agg(
        pl.col("n_participants").sum()).join(total, on="indicator")
    assert sums.height > 10 * len(res.specs) // 2
    assert (sums["n_participants"] == sums["n_all"]).all()
    dims = set(res.table["dimension"])
    assert {"sex", "age_band", "education", "region", "urbanisation", "occupation_group",
            "sector_at_entry", "public_private", "programme_type", "field", "hours_band",
            "cohort_quarter", "status_at_entry"} <= dims


def test_earnings_net_equals_the_event_study_after_leaving(indicators) -> None:
    out, res, est = indicators
    es = pl.read_parquet(out / "estimates" / "event_study.parquet").filter(
        (pl.col("outcome") == "earnings_real") & (pl.col("clock") == "end"))
    head = res.table.filter(pl.col("dimension") == "all")
    for h in (6, 12):
        a = es.filter(pl.col("event_time") == h)["att"][0]
        b = head.filter(pl.col("indicator") == f"earnings_real_h{h}")["net"][0]
        assert b == pytest.approx(a, rel=1e-5)  # the event study holds float32 outcomes


def test_roi_is_net_earnings_over_mean_cost(indicators, research) -> None:
    _, res, _ = indicators
    head = res.table.filter(pl.col("dimension") == "all")
    net = head.filter(pl.col("indicator") == "earnings_real_sum_h12")["net"][0]
    roi = head.filter(pl.col("indicator") == "roi_public_h12").row(0, named=True)
    assert roi["net"] == pytest.approx(net / roi["participants"], rel=1e-9)
    annual = head.filter(pl.col("indicator") == "roi_public_annual")["net"][0]
    h24 = head.filter(pl.col("indicator") == "roi_public_h24")["net"][0]
    assert annual == pytest.approx(h24 / 2)
    assert roi["se"] > 0 and roi["ci_low"] < roi["net"] < roi["ci_high"]


def test_adjusted_p_values_are_not_below_the_raw_ones(indicators) -> None:
    _, res, _ = indicators
    t = res.table.filter(pl.col("p_holm").is_not_null())
    assert t.height > 100
    assert (t["p_holm"] >= t["p_value"] - 1e-12).all()
    assert (t["p_bh"] >= t["p_value"] - 1e-12).all()
    assert (t["p_holm"] >= t["p_bh"] - 1e-12).all()
    assert res.table.filter(pl.col("dimension") == "all")["p_holm"].null_count() == \
        res.table.filter(pl.col("dimension") == "all").height


def test_breakdown_keys_partition_participants(indicators, research) -> None:
    out, res, _ = indicators
    from impact.indicators import prepare

    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    sample, _, _ = prepare(research.root / "panel", read_pairs(out / "twins"), tr,
                           research.root / "sources", IndicatorSettings())
    keys = breakdown_keys(sample)
    for dim, lab in keys.items():
        assert lab.shape == (sample.n_treated,), dim
        assert all(isinstance(x, str) and x for x in lab), dim
    assert set(keys["age_band"]) <= {"18-29", "30-39", "40-49", "50-64", "65+", "unknown",
                                     "<18"}


def test_curves_cover_both_arms(indicators) -> None:
    _, res, _ = indicators
    c = res.income_curves
    assert c["event_time"].min() == -36 and c["event_time"].max() == 36
    pre = c.filter(pl.col("event_time") < 0)
    assert pre["participants"].null_count() == 0 and pre["twins"].null_count() == 0
    km = res.career_step_km
    assert set(km["arm"]) == {"participants", "twins"}
    for _, g in km.group_by("arm"):
        s = g.sort("month")["survival"].to_numpy()
        assert s[0] == 1.0 and (np.diff(s) <= 1e-12).all()

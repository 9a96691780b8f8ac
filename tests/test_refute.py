"""Refutation of matched estimates (``impact.estimate.refute``).

Synthetic matched samples with a known effect: each treated person has ``k`` twins whose
features are close to its own (as after matching), twins weighted ``1/k``, so the matched
estimate is unbiased for ``tau`` unless a hidden confounder is planted.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
import statsmodels.api as sm

from impact.estimate.refute import (
    RefutationReport,
    placebo_in_time,
    refute_matched,
    weighted_att,
)

FEATURES = ["x1", "x2", "region"]
REGIONS = np.array(["riga", "kurzeme", "latgale"])
REGION_EFFECT = np.array([0.3, 0.0, -0.2])


def matched_sample(
    n_treated: int = 1500,
    k: int = 2,
    tau: float = 1.0,
    hidden: float = 0.0,
    seed: int = 0,
) -> pl.DataFrame:
    """Matched cross-section (one row per unit, no twin reuse, ``set_id`` = matched set).

    Change score ``dy = 0.5 x1 - 0.3 x2 + region + hidden * u + tau * T + e``; twins share
    the treated person's region and have ``x`` within N(0, 0.05) of it; the hidden ``u`` has
    mean 1 among the treated and 0 among twins (bias ``hidden`` when planted).
    """
    rng = np.random.default_rng(seed)
    n1, n0 = n_treated, n_treated * k
    x1, x2 = rng.normal(size=n1), rng.normal(size=n1)
    reg = rng.integers(0, 3, size=n1)
    xt1 = np.repeat(x1, k) + rng.normal(scale=0.05, size=n0)
    xt2 = np.repeat(x2, k) + rng.normal(scale=0.05, size=n0)
    regt = np.repeat(reg, k)
    u = np.r_[rng.normal(1.0, 1.0, size=n1), rng.normal(0.0, 1.0, size=n0)]
    t = np.r_[np.ones(n1, bool), np.zeros(n0, bool)]
    xa1, xa2, rega = np.r_[x1, xt1], np.r_[x2, xt2], np.r_[reg, regt]
    dy = (
        0.5 * xa1
        - 0.3 * xa2
        + REGION_EFFECT[rega]
        + hidden * u
        + tau * t
        + rng.normal(size=n1 + n0)
    )
    return pl.DataFrame(
        {
            "treated": t,
            "dy": dy,
            "x1": xa1,
            "x2": xa2,
            "region": REGIONS[rega],
            "w": np.r_[np.ones(n1), np.full(n0, 1.0 / k)],
            "set_id": np.r_[np.arange(n1), np.repeat(np.arange(n1), k)],
        }
    )


@pytest.fixture(scope="module")
def report() -> RefutationReport:
    """One refutation run (4,500 matched units), shared by the tests below."""
    df = matched_sample(n_treated=1500, k=2, tau=1.0, seed=3)
    return refute_matched(
        df,
        treatment="treated",
        outcome="dy",
        common_causes=FEATURES,
        weights="w",
        cluster="set_id",
        seed=11,
        placebo_reps=100,
        subset_reps=30,
        random_common_cause_reps=20,
    )


def test_estimate_recovers_the_known_effect(report: RefutationReport) -> None:
    assert report.n_treated == 1500 and report.n_controls == 3000 and report.n_clusters == 1500
    assert report.se_source == "influence_function_clustered"
    assert report.ci[0] < 1.0 < report.ci[1]
    assert abs(report.estimate - 1.0) < 3 * report.se


def test_placebo_is_near_zero_and_not_significant(report: RefutationReport) -> None:
    plc = report["placebo_treatment"]
    assert plc.reps == 100 and len(plc.draws) == 100
    assert plc.passed, plc.rule
    assert abs(plc.new_effect) < 0.5 * report.se
    assert plc.p_value is not None and plc.p_value > 0.05
    # the real effect is far in the tail of the placebo distribution
    assert plc.details["permutation_p_value_of_estimate"] < 0.05


def test_random_common_cause_barely_moves_the_estimate(report: RefutationReport) -> None:
    rcc = report["random_common_cause"]
    assert rcc.passed, rcc.rule
    # a pure-noise covariate moves a regression-adjusted estimate by O(SE / sqrt(n))
    assert max(abs(d - report.estimate) for d in rcc.draws) < 0.1 * report.se


def test_subsets_stay_within_the_ci(report: RefutationReport) -> None:
    sub = report["data_subset"]
    assert sub.passed, sub.rule
    assert report.ci[0] <= sub.new_effect <= report.ci[1]
    assert sub.details["share_in_ci"] == 1.0
    # 80 % subsets: SD of the re-estimates about sqrt(0.2 / 0.8) = 0.5 SE
    assert 0.2 * report.se < sub.new_effect_sd < 1.0 * report.se


def test_report_shapes_and_timings(report: RefutationReport) -> None:
    assert report.passed
    tab = report.table()
    assert tab["refuter"].to_list() == ["placebo_treatment", "random_common_cause", "data_subset"]
    d = report.to_dict()
    assert d["passed"] is True and len(d["refutations"]) == 3
    assert json.loads(json.dumps(d))["refutations"][0]["name"] == "placebo_treatment"
    assert all(r.seconds > 0 for r in report.refutations)
    assert report.seconds_total >= sum(r.seconds for r in report.refutations)


def test_rules_can_fail() -> None:
    """A (deliberately) tiny SE makes the placebo and subset rules fail; the RCC rule then
    rests on its percentage leg, and fails without it."""
    df = matched_sample(n_treated=300, seed=5)
    common = {
        "treatment": "treated",
        "outcome": "dy",
        "common_causes": FEATURES,
        "weights": "w",
        "seed": 1,
        "placebo_reps": 10,
        "subset_reps": 10,
        "random_common_cause_reps": 5,
        "se": 1e-6,
    }
    rep = refute_matched(df, **common)
    assert rep.se_source == "user"
    assert not rep["placebo_treatment"].passed
    assert not rep["data_subset"].passed
    assert rep["random_common_cause"].passed  # within 10 % of the estimate
    assert not rep.passed
    strict = refute_matched(df, **{**common, "rcc_tolerance": 0.0})
    assert not strict["random_common_cause"].passed


def test_deterministic_with_seed() -> None:
    df = matched_sample(n_treated=200, seed=2)
    kw = {
        "treatment": "treated",
        "outcome": "dy",
        "common_causes": FEATURES,
        "weights": "w",
        "placebo_reps": 8,
        "subset_reps": 6,
        "random_common_cause_reps": 4,
    }
    a = refute_matched(df, seed=7, **kw)
    b = refute_matched(df.to_pandas(), seed=7, **kw)  # pandas input, same answer
    c = refute_matched(df, seed=8, **kw)
    for ra, rb, rc in zip(a.refutations, b.refutations, c.refutations, strict=True):
        assert ra.draws == rb.draws
        assert ra.draws != rc.draws
        assert len(set(ra.draws)) == len(ra.draws)  # replications differ (e.g. subsets)
    assert a.estimate == b.estimate == c.estimate


def test_unadjusted_is_weighted_difference_and_rcc_is_vacuous() -> None:
    df = matched_sample(n_treated=300, seed=4)
    rep = refute_matched(
        df,
        treatment="treated",
        outcome="dy",
        common_causes=FEATURES,
        weights="w",
        adjust=False,
        placebo_reps=5,
        subset_reps=5,
        random_common_cause_reps=3,
    )
    t = df["treated"].to_numpy()
    y, w = df["dy"].to_numpy(), df["w"].to_numpy()
    by_hand = y[t].mean() - np.average(y[~t], weights=w[~t])
    assert rep.estimate == pytest.approx(by_hand, rel=1e-12)
    rcc = rep["random_common_cause"]
    assert all(d == pytest.approx(rep.estimate, rel=1e-12) for d in rcc.draws)
    assert "vacuous" in rcc.rule


def test_weighted_att_se_matches_statsmodels_cluster_wls() -> None:
    """Without covariates the estimator is the WLS slope of y on (1, T); its influence-function
    SE is statsmodels' cluster-robust SE without the (N-1)/(N-K) factor."""
    df = matched_sample(n_treated=800, k=3, seed=9).to_pandas()
    y, t, w, g = df.dy.to_numpy(), df.treated.to_numpy(), df.w.to_numpy(), df.set_id.to_numpy()
    res = weighted_att(y, t, w, cluster=g)
    fit = sm.WLS(y, sm.add_constant(t.astype(float)), weights=w).fit(
        cov_type="cluster", cov_kwds={"groups": g}
    )
    n, k = len(y), 2
    assert res.att == pytest.approx(fit.params[1], rel=1e-12)
    assert res.se == pytest.approx(fit.bse[1] / math.sqrt((n - 1) / (n - k)), rel=1e-10)


def test_regression_adjustment_removes_residual_imbalance() -> None:
    """Twins matched loosely on x1 (bias if unadjusted); the adjusted estimate recovers tau."""
    rng = np.random.default_rng(0)
    n1 = 3000
    x_t = rng.normal(0.5, 1, size=n1)
    x_c = x_t - 0.4 + rng.normal(0, 0.1, size=n1)  # systematic mismatch of 0.4
    x = np.r_[x_t, x_c]
    t = np.r_[np.ones(n1, bool), np.zeros(n1, bool)]
    y = 2.0 * x + 1.0 * t + rng.normal(size=2 * n1)
    w = np.ones(2 * n1)
    plain = weighted_att(y, t, w)
    adjusted = weighted_att(y, t, w, x[:, None])
    assert plain.att == pytest.approx(1.8, abs=0.1)
    assert abs(adjusted.att - 1.0) < 3 * adjusted.se


def test_input_validation() -> None:
    df = matched_sample(n_treated=50, seed=1)
    kw = {"outcome": "dy", "common_causes": FEATURES, "weights": "w"}
    with pytest.raises(ValueError, match="bool or 0/1"):
        refute_matched(df.with_columns(tt=pl.lit(2)), treatment="tt", **kw)
    with pytest.raises(KeyError, match="not in frame"):
        refute_matched(df, treatment="nope", **kw)
    with pytest.raises(ValueError, match="overlap"):
        refute_matched(df, treatment="treated", **{**kw, "common_causes": ["x1", "w"]})
    with pytest.raises(ValueError, match="missing"):
        refute_matched(
            df.with_columns(dy=pl.when(pl.col("x1") > 0).then(None).otherwise(pl.col("dy"))),
            treatment="treated",
            **kw,
        )


# --------------------------------------------------------------------------- placebo in time


def pre_period_sample(
    n_treated: int = 2000, k: int = 2, dip: float = 0.0, seed: int = 0
) -> pl.DataFrame:
    """Matched sample with monthly pre-period outcomes ``y_m24 .. y_m1`` (months -24..-1).

    ``Y_it = a_i + 0.02 t + e_it`` with twins' ``a`` close to their treated person's; a
    planted Ashenfelter dip lowers the treated's outcome by ``dip`` in months -6..-1.
    """
    rng = np.random.default_rng(seed)
    n0 = n_treated * k
    a1 = rng.normal(5, 1, size=n_treated)
    a = np.r_[a1, np.repeat(a1, k) + rng.normal(0, 0.05, size=n0)]
    t = np.r_[np.ones(n_treated, bool), np.zeros(n0, bool)]
    months = np.arange(-24, 0)
    y = a[:, None] + 0.02 * months[None, :] + rng.normal(0, 0.5, size=(a.size, months.size))
    y[np.ix_(t, months >= -6)] -= dip
    cols = {f"y_m{-m}": y[:, j] for j, m in enumerate(months)}
    return pl.DataFrame(
        {
            "treated": t,
            "w": np.r_[np.ones(n_treated), np.full(n0, 1.0 / k)],
            "set_id": np.r_[np.arange(n_treated), np.repeat(np.arange(n_treated), k)],
            **cols,
        }
    )


PRE = {m: f"y_m{-m}" for m in range(-24, 0)}


def test_placebo_in_time_zero_under_parallel_trends() -> None:
    df = pre_period_sample(seed=1)
    res = placebo_in_time(df, treatment="treated", pre_outcomes=PRE, weights="w", cluster="set_id")
    assert res.passed, res.rule
    assert res.p_value > 0.05
    assert res.ci[0] < 0 < res.ci[1]
    assert res.columns_post == "y_m1"
    assert res.columns_baseline == tuple(f"y_m{m}" for m in range(24, 12, -1))
    assert res.n_treated == 2000 and res.n_clusters == 2000
    # by hand: weighted difference of Y(-1) - mean(Y(-24..-13))
    pdf = df.to_pandas()
    dy = pdf["y_m1"] - pdf[[f"y_m{m}" for m in range(13, 25)]].mean(axis=1)
    t = pdf.treated.to_numpy()
    by_hand = dy[t].mean() - np.average(dy[~t], weights=pdf.w[~t])
    assert res.estimate == pytest.approx(by_hand, rel=1e-10)
    assert res.to_dict()["passed"] is True


def test_placebo_in_time_detects_a_pre_trend() -> None:
    df = pre_period_sample(dip=0.3, seed=1)
    res = placebo_in_time(df, treatment="treated", pre_outcomes=PRE, weights="w", cluster="set_id")
    assert not res.passed
    assert res.p_value < 1e-6
    assert res.estimate == pytest.approx(-0.3, abs=4 * res.se)


def test_placebo_in_time_arguments() -> None:
    df = pre_period_sample(n_treated=50, seed=2)
    kw = {"treatment": "treated", "weights": "w"}
    with pytest.raises(ValueError, match="horizon"):
        placebo_in_time(df, pre_outcomes=PRE, horizon=-13, **kw)
    with pytest.raises(KeyError, match="lacks months"):
        placebo_in_time(df, pre_outcomes={m: c for m, c in PRE.items() if m != -20}, **kw)
    # a shorter design: fake start 6 months early, 6-month baseline, post month -2
    res = placebo_in_time(df, pre_outcomes=PRE, shift=6, baseline_months=6, horizon=-2, **kw)
    assert res.columns_post == "y_m2"
    assert res.columns_baseline == tuple(f"y_m{m}" for m in range(12, 6, -1))
    assert res.n_clusters == 150  # no cluster id: rows


@pytest.mark.slow
def test_weighted_att_coverage_monte_carlo() -> None:
    """95 % CI coverage of the clustered influence-function SE (adjusted estimator)."""
    hits = []
    for s in range(200):
        df = matched_sample(n_treated=400, seed=1000 + s).to_pandas()
        x = pd.get_dummies(df[FEATURES], drop_first=True, dtype=float).to_numpy()
        r = weighted_att(df.dy, df.treated, df.w, x, cluster=df.set_id)
        hits.append(abs(r.att - 1.0) <= 1.96 * r.se)
    assert 0.91 <= np.mean(hits) <= 0.98

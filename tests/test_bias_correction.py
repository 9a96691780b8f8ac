"""Regression bias correction of matched twins (Abadie & Imbens 2011).

Checked against cases that could prove it wrong: a linear untreated outcome, where the
corrected estimate must equal the planted effect exactly while the plain one carries the
matching bias; no covariate gap, where it must change nothing; too few twins, where it must
leave the estimate alone and say so; and the researcher API and the event study on the
synthetic registers.
"""

from __future__ import annotations

import warnings
from datetime import date

import numpy as np
import polars as pl
import pytest

from impact.estimate.bias_correction import (
    MIN_ROWS_PER_COEF,
    bias_corrected_twin_changes,
    correction_features,
    with_covariates,
)
from impact.estimate.did import twins_did
from impact.estimate.matched_did import matched_att, matched_event_study


def linear_matches(n_t: int = 400, k: int = 3, seed: int = 0, tau: float = 2.0):
    """Matched sets whose twins sit off their treated person in ``x`` (a matching gap), with
    an untreated change exactly linear in ``x`` (two columns, a common slope)."""
    rng = np.random.default_rng(seed)
    beta = np.array([3.0, -1.5])
    x_t = rng.normal(size=(n_t, 2))
    pt = np.repeat(np.arange(n_t), k)
    x_p = x_t[pt] + rng.normal([0.3, -0.3], 0.4, size=(n_t * k, 2))  # twins systematically off
    intercept = 5.0
    d_t = (intercept + x_t @ beta + tau)[:, None]
    d_p = (intercept + x_p @ beta)[:, None]
    w = np.full(n_t * k, 1.0 / k)
    return d_t, d_p, x_t, x_p, pt, w, beta


def test_a_linear_untreated_outcome_is_corrected_exactly() -> None:
    d_t, d_p, x_t, x_p, pt, w, beta = linear_matches()
    plain = matched_att(d_t, d_p, pt, w, pt)
    bc = bias_corrected_twin_changes(d_t, d_p, x_t, x_p, pt, w)
    fixed = matched_att(d_t, bc.d_twins, pt, w, pt)
    gap = (x_t[pt] - x_p).mean(axis=0) @ beta  # the matching bias of the plain estimate
    assert plain.att[0] == pytest.approx(2.0 + gap, abs=1e-9)
    assert abs(gap) > 1.0
    assert fixed.att[0] == pytest.approx(2.0, abs=1e-8)
    assert bc.corrected.tolist() == [True]
    assert bc.coef[0, 1:] == pytest.approx(beta, abs=1e-8)
    assert bc.mean_correction[0] == pytest.approx(gap, abs=1e-8)
    # every unit effect is the planted one: no residual variance from the treated sets
    assert np.allclose(fixed.unit_effect[:, 0], 2.0)


def test_no_covariate_gap_changes_nothing_and_nan_twins_stay_censored() -> None:
    d_t, d_p, x_t, _, pt, w, _ = linear_matches(seed=1)
    rng = np.random.default_rng(2)
    d_p = d_p + rng.normal(size=d_p.shape)  # noise: the regression slope is not exact
    d_p[::7, 0] = np.nan
    bc = bias_corrected_twin_changes(d_t, d_p, x_t, x_t[pt], pt, w)
    assert np.array_equal(np.isnan(bc.d_twins), np.isnan(d_p))
    ok = np.isfinite(d_p)
    assert np.allclose(bc.d_twins[ok], d_p[ok])
    assert bc.mean_correction[0] == pytest.approx(0.0, abs=1e-12)


def test_too_few_twins_leave_a_column_uncorrected() -> None:
    d_t, d_p, x_t, x_p, pt, w, _ = linear_matches(n_t=400, k=3)
    d2 = np.column_stack([d_p[:, 0], d_p[:, 0]])
    # second column: only enough twins for fewer than 5 rows per coefficient
    need = MIN_ROWS_PER_COEF * (x_p.shape[1] + 1)
    d2[need - 1 :, 1] = np.nan
    dt2 = np.column_stack([d_t[:, 0], d_t[:, 0]])
    bc = bias_corrected_twin_changes(dt2, d2, x_t, x_p, pt, w)
    assert bc.corrected.tolist() == [True, False]
    assert np.array_equal(bc.d_twins[:, 1], d2[:, 1], equal_nan=True)
    assert np.isnan(bc.coef[1]).all() and bc.mean_correction[1] == 0.0


def test_shapes_and_values_are_checked() -> None:
    d_t, d_p, x_t, x_p, pt, w, _ = linear_matches(n_t=50)
    with pytest.raises(ValueError, match="x_treated must have shape"):
        bias_corrected_twin_changes(d_t, d_p, x_t[:, :1], x_p, pt, w)
    bad = x_p.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        bias_corrected_twin_changes(d_t, d_p, x_t, bad, pt, w)


def _gap_dgp(n: int, seed: int) -> pl.DataFrame:
    """Few controls where the treated are (selection on ``x``) and an untreated change
    strongly and linearly driven by ``x``: nearest twins lag behind their treated person."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    d = rng.random(n) < 1 / (1 + np.exp(-(-3.0 + 3.0 * x)))
    pre = rng.normal(size=n)
    post = pre + 4.0 * x + 1.0 * d + rng.normal(scale=0.3, size=n)
    return pl.DataFrame({"pid": np.arange(n), "d": d.astype(int), "x": x, "z": z,
                         "y_pre": pre, "y_post": post})


def test_twins_did_bias_correction_removes_the_matching_bias() -> None:
    df = _gap_dgp(3000, seed=5)
    kw = dict(treatment="d", outcome="y_post", pre_outcomes=["y_pre"], covariates=["x", "z"],
              id="pid", k=5, caliper=None)
    plain = twins_did(df, **kw)
    fixed = twins_did(df, **kw, bias_correction=True)
    assert plain.n_treated == fixed.n_treated and plain.n_controls == fixed.n_controls
    # with the caliper off and five twins each, the treated with the largest x get twins
    # further down in x
    assert plain.att - 1.0 > 3 * plain.se
    assert abs(fixed.att - 1.0) < 2 * fixed.se
    assert abs(fixed.att - 1.0) < 0.25 * abs(plain.att - 1.0)
    assert fixed.se < plain.se  # x explains most of the twins' changes


def test_twins_did_bias_correction_needs_enough_pairs() -> None:
    df = _gap_dgp(60, seed=1)
    with pytest.raises(ValueError, match="5 twin rows per regression coefficient"):
        twins_did(df, treatment="d", outcome="y_post", pre_outcomes=["y_pre"],
                  covariates=["x", "z"], id="pid", k=1, caliper=None, bias_correction=True)


def test_event_study_with_bias_correction_on_the_synthetic_registers(research) -> None:
    from impact.outcomes import build_trajectories
    from impact.twins.features import PanelArrays
    from impact.twins.riskset import TwinSettings, match_cohorts

    arrays = PanelArrays.load(research.root / "panel", date(2021, 1, 1), date(2028, 6, 1))
    settings = TwinSettings(gate_min_treated=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tw = match_cohorts(arrays, settings)
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    traj = build_trajectories(arrays, tw.pairs, tr, outcomes=["earnings_real"])
    with pytest.raises(ValueError, match="with_covariates"):
        matched_event_study(traj, "earnings_real", "end", reps=49, bias_correction=True)
    # the full feature set has more coefficients than 5 rows each of this sample's twins
    # allow; the exact strata sex (every pass), region and job recency (coarsened) and two
    # numeric features
    full = with_covariates(traj, arrays, correction_features(settings))
    assert not matched_event_study(full, "earnings_real", "end", event_times=[6], reps=49,
                                   bias_correction=True).bias_corrected.any()
    traj = with_covariates(traj, arrays, ("sex", "earn_l1", "days_12", "region_code",
                                          "job_recency"))
    cov = traj.covariates
    assert cov.treated.shape == (traj.n_treated, len(cov.names))
    assert cov.twins.shape == (traj.n_pairs, len(cov.names))
    # sex is exact in every pass: treated person and twins agree on it
    sex = [i for i, n in enumerate(cov.names) if n.startswith("sex=")]
    assert sex and np.array_equal(cov.treated[traj.pair_treated][:, sex], cov.twins[:, sex])
    plain = matched_event_study(traj, "earnings_real", "end", reps=49)
    fixed = matched_event_study(traj, "earnings_real", "end", reps=49, bias_correction=True)
    tab = fixed.table()
    assert "bias_corrected" in tab.columns and "bias_corrected" not in plain.table().columns
    assert fixed.bias_corrected[fixed._col(6)]
    i = fixed._col(6)
    assert fixed.nobs[i] == plain.nobs[i] and fixed.n_twins[i] == plain.n_twins[i]
    assert fixed.params[i] != plain.params[i]
    assert abs(fixed.params[i] - plain.params[i]) < 2 * plain.bse[i]
    # a subgroup carries its rows of the covariates; small ones are left uncorrected
    keep = np.zeros(traj.n_treated, bool)
    keep[:10] = True
    sub = traj.subset(keep)
    assert sub.covariates.treated.shape[0] == 10
    assert sub.covariates.twins.shape[0] == sub.n_pairs
    small = matched_event_study(sub, "earnings_real", "end", event_times=[6], reps=49,
                                bias_correction=True)
    base = matched_event_study(sub, "earnings_real", "end", event_times=[6], reps=49)
    assert small.bias_corrected.tolist() == [False]
    assert small.params[0] == base.params[0]
    assert "0 of 1 event times corrected" in small.summary([6])
    assert "regression bias correction" not in base.summary([6])


def test_columns_sharing_observed_twins_share_one_solve_and_the_cache() -> None:
    d_t, d_p, x_t, x_p, pt, w, _ = linear_matches(n_t=300, k=4, seed=3)
    rng = np.random.default_rng(4)
    d_p = d_p + rng.normal(size=(d_p.shape[0], 1)) * np.arange(1, 5)  # four columns
    d_t = np.repeat(d_t, 4, axis=1)
    d_p[:40, 2] = np.nan  # one column with its own pattern of observed twins
    cache: dict = {}
    together = bias_corrected_twin_changes(d_t, d_p, x_t, x_p, pt, w, cache=cache)
    assert len(cache) == 2  # two patterns of observed twins
    again = bias_corrected_twin_changes(d_t, d_p, x_t, x_p, pt, w, cache=cache)
    assert len(cache) == 2
    np.testing.assert_array_equal(again.d_twins, together.d_twins)
    for j in range(4):
        one = bias_corrected_twin_changes(d_t[:, j], d_p[:, j], x_t, x_p, pt, w)
        np.testing.assert_allclose(one.d_twins[:, 0], together.d_twins[:, j], rtol=1e-10,
                                   atol=1e-10, equal_nan=True)
        np.testing.assert_allclose(one.coef[0], together.coef[j], rtol=1e-8, atol=1e-10)


def test_pretrend_test_with_the_correction_uses_the_plain_placebos(research) -> None:
    """The corrected placebo months before the baseline are fitted by the regression (they
    are covariates); the joint test must still be computed, on the plain placebos."""
    from impact.outcomes import build_trajectories
    from impact.twins.features import PanelArrays
    from impact.twins.riskset import TwinSettings, match_cohorts

    arrays = PanelArrays.load(research.root / "panel", date(2021, 1, 1), date(2028, 6, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tw = match_cohorts(arrays, TwinSettings(gate_min_treated=10))
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    traj = build_trajectories(arrays, tw.pairs, tr, outcomes=["earnings_real"])
    traj = with_covariates(traj, arrays, ("sex", "earn_l1", "earn_m13_24", "days_12"))
    plain = matched_event_study(traj, "earnings_real", "start", reps=49)
    fixed = matched_event_study(traj, "earnings_real", "start", reps=49, bias_correction=True)
    assert fixed.bias_corrected.any()
    assert plain.pretest is not None and fixed.pretest is not None
    assert fixed.pretest.statistic == pytest.approx(plain.pretest.statistic, rel=1e-9)
    np.testing.assert_array_equal(fixed.pretest_event_time, plain.pretest_event_time)

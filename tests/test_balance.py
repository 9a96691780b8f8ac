"""Balance diagnostics (impact.balance): cobalt's ATT conventions, KS, love plot, the gate."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from impact.balance import (
    balance_gate,
    balance_parts,
    balance_table,
    balance_table_from_parts,
    ks_grid,
    love_plot_data,
    weighted_ks,
)
from impact.twins import MatchOptions, match

# Tiny example, computed by hand below (4 treated, 6 controls; the last treated unit is
# unmatched, controls serve with weights 0, .5, .5, 1, 1, 0).
TINY = pl.DataFrame(
    {
        "d": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        "x": [1.0, 2.0, 3.0, 6.0, 0.0, 1.0, 1.0, 2.0, 4.0, 4.0],
        "b": [1, 0, 1, 1, 0, 0, 1, 0, 1, 0],
        "c": ["a", "a", "b", "c", "a", "b", "b", "b", "c", "c"],
        "w": [1.0, 1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 0.0],
    }
)


def _row(table: pl.DataFrame, covariate: str) -> dict:
    return table.filter(pl.col("covariate") == covariate).row(0, named=True)


def test_smd_and_variance_ratio_by_hand() -> None:
    tab = balance_table(TINY, treatment="d", covariates=["x", "b", "c"], weights="w")
    assert tab["covariate"].to_list() == ["x", "b", "c=a", "c=b", "c=c"]
    x = _row(tab, "x")
    # treated SD of the unadjusted sample: sqrt(((1-3)^2 + (2-3)^2 + 0 + (6-3)^2) / 3)
    sd_t = math.sqrt(14 / 3)
    assert x["type"] == "continuous"
    assert x["sd_denom"] == pytest.approx(sd_t)
    assert x["smd_before"] == pytest.approx((3 - 2) / sd_t)  # means 12/4 and 12/6
    # after: treated (1+2+3)/3 = 2; controls (.5*1 + .5*1 + 1*2 + 1*4)/3 = 7/3
    assert x["smd_after"] == pytest.approx((2 - 7 / 3) / sd_t)
    # weighted variances (reliability weights): treated var(1,2,3) = 1; controls
    # sum w (x - 7/3)^2 = 42/9 over sum w - sum w^2 / sum w = 3 - 2.5/3
    assert x["vr_after"] == pytest.approx(1 / ((42 / 9) / (3 - 2.5 / 3)))
    assert x["vr_before"] == pytest.approx((14 / 3) / np.var([0, 1, 1, 2, 4, 4], ddof=1))
    b = _row(tab, "b")
    # binary: treated proportion .75 -> sd sqrt(.75 * .25); before controls 2/6
    assert b["type"] == "binary"
    assert b["smd_before"] == pytest.approx((0.75 - 2 / 6) / math.sqrt(0.75 * 0.25))
    assert b["smd_after"] == pytest.approx((2 / 3 - 0.5) / math.sqrt(0.75 * 0.25))
    assert b["vr_after"] is None
    ca = _row(tab, "c=a")
    # level a: treated 2/4 (sd .5), controls 1/6; after: treated 2/3, controls 0
    assert ca["smd_before"] == pytest.approx((0.5 - 1 / 6) / 0.5)
    assert ca["smd_after"] == pytest.approx((2 / 3 - 0) / 0.5)
    assert tab["n_treated_after"][0] == 3 and tab["n_control_after"][0] == 4
    assert tab["ess_control_after"][0] == pytest.approx(3**2 / 2.5)


def test_binary_raw_option_reports_differences_in_proportions() -> None:
    tab = balance_table(TINY, treatment="d", covariates=["b"], weights="w", binary="raw")
    assert _row(tab, "b")["smd_before"] == pytest.approx(0.75 - 2 / 6)


def test_zero_treated_sd_falls_back_to_pooled_sd() -> None:
    df = pl.DataFrame({"d": [1, 1, 0, 0, 0], "x": [2.0, 2.0, 1.0, 2.0, 3.0]})
    tab = balance_table(df, treatment="d", covariates=["x"])
    pooled = math.sqrt((0 + 1.0) / 2)
    assert _row(tab, "x")["smd_before"] == pytest.approx((2 - 2) / pooled)
    assert tab["smd_after"].null_count() == 1  # no weights: "after" left empty


def test_ks_equals_scipy_on_unweighted_data() -> None:
    rng = np.random.default_rng(0)
    xt = np.round(rng.normal(0.3, 1, 300), 1)  # rounded: ties inside and across groups
    xc = np.round(rng.normal(0.0, 1.3, 700), 1)
    df = pl.DataFrame({"d": np.r_[np.ones(300), np.zeros(700)].astype(int), "x": np.r_[xt, xc]})
    tab = balance_table(df, treatment="d", covariates=["x"], weights=np.ones(1000))
    expected = stats.ks_2samp(xt, xc).statistic
    assert _row(tab, "x")["ks_before"] == pytest.approx(expected, abs=1e-12)
    assert _row(tab, "x")["ks_after"] == pytest.approx(expected, abs=1e-12)


def test_weighted_ks_with_integer_weights_equals_replicated_data() -> None:
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=200), 1)
    d = rng.random(200) < 0.3
    w = rng.integers(0, 4, size=200).astype(float)
    rep = np.repeat(np.arange(200), w.astype(int))
    expected = stats.ks_2samp(x[rep][d[rep]], x[rep][~d[rep]]).statistic
    assert weighted_ks(x, w, d) == pytest.approx(expected, abs=1e-12)


def _confounded(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    income = rng.lognormal(6, 0.5, n)
    region = rng.choice(["riga", "kurzeme", "latgale", "vidzeme"], size=n, p=[0.4, 0.2, 0.2, 0.2])
    female = (rng.random(n) < 0.5).astype(int)
    lin = (
        -1.5 - 0.05 * (age - 40) + 0.002 * (income - 450) + 0.6 * (region == "riga") + 0.4 * female
    )
    d = rng.random(n) < 1 / (1 + np.exp(-lin))
    return pl.DataFrame(
        {
            "pid": np.arange(n),
            "d": d,
            "age": age,
            "income": income,
            "region": region,
            "female": female,
        }
    )


def test_balance_improves_after_matching_on_a_confounded_dgp() -> None:
    df = _confounded()
    covs = ["age", "income", "region", "female"]
    res = match(df, treatment="d", id="pid", features=covs, options=MatchOptions(ratio=3))
    tab = balance_table(res.attach_weights(df), treatment="d", covariates=covs, weights="weight")
    before = tab["smd_before"].abs().max()
    after = tab["smd_after"].abs().max()
    assert before > 0.3
    assert after < 0.1
    gate = balance_gate(tab, unmatched_share=res.unmatched_share)
    assert gate.passed and bool(gate) and gate.offending == ()
    # the same with a pandas frame and weights passed as an array
    tab_pd = balance_table(
        res.attach_weights(df).to_pandas(),
        treatment="d",
        covariates=covs,
        weights=res.attach_weights(df)["weight"].to_numpy(),
    )
    assert tab_pd.equals(tab)


def test_gate_names_offending_covariates() -> None:
    tab = balance_table(TINY, treatment="d", covariates=["x", "b", "c"], weights="w")
    gate = balance_gate(tab, max_abs_smd=0.1, unmatched_share=0.25, max_variance_ratio=2.0)
    assert not gate.passed
    # |SMD after|: x .154, b .385, c=a 1.33, c=b -.667/.5, c=c (0 - 1/3)/sqrt(.1875)
    assert set(gate.offending) == {"x", "b", "c=a", "c=b", "c=c"}
    assert gate.offending_variance == ("x",)  # vr_after .46 < 1/2
    assert any("c=a" in r for r in gate.reasons)
    assert any("without twins 0.250" in r for r in gate.reasons)
    assert gate.max_abs_smd == pytest.approx(abs(_row(tab, "c=a")["smd_after"]))
    loose = balance_gate(tab, max_abs_smd=2.0, unmatched_share=0.0)
    assert loose.passed and loose.reasons == ()
    only_share = balance_gate(tab, max_abs_smd=2.0, unmatched_share=0.2, max_unmatched_share=0.1)
    assert not only_share.passed and only_share.offending == ()


def test_gate_fails_when_smd_after_is_undefined() -> None:
    tab = balance_table(TINY, treatment="d", covariates=["x"])  # no weights -> no "after"
    gate = balance_gate(tab)
    assert not gate.passed and gate.offending == ("x",)


def test_love_plot_data_is_long_and_ordered() -> None:
    tab = balance_table(TINY, treatment="d", covariates=["x", "b", "c"], weights="w")
    lp = love_plot_data(tab)
    assert lp.columns == ["covariate", "stage", "smd", "abs_smd"]
    assert lp.height == 2 * tab.height
    assert lp["stage"].to_list()[:2] == ["before", "after"]
    firsts = lp.filter(pl.col("stage") == "before")["abs_smd"].to_list()
    assert firsts == sorted(firsts, reverse=True)


def _cohorts(seed: int) -> list[pl.DataFrame]:
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate((300, 40, 500)):
        d = rng.random(n) < 0.2
        out.append(
            pl.DataFrame(
                {
                    "d": d,
                    "x": np.round(rng.normal(size=n) + 0.4 * d, 1),  # ties within and across
                    "i": rng.integers(0, 4, n),
                    # level "z" only in the last sample, "a" rare
                    "c": rng.choice(["a", "b", "c", "z"][: 3 + (k == 2)], n),
                    "w": np.where(d, 1.0, rng.integers(0, 3, n) / 2),
                }
            )
        )
    return out


def test_merged_parts_equal_the_table_of_the_stacked_samples() -> None:
    """Balance over several samples from their parts (candidates as sufficient statistics on
    a shared KS grid) equals the plain table of the stacked frames."""
    frames = _cohorts(3)
    covs = ["x", "i", "c"]
    stacked = pl.concat(frames)
    grid = ks_grid(stacked.filter(pl.col("d")), ["x", "i"])
    parts = [
        balance_parts(f, treatment="d", covariates=covs, weights="w", grid=grid) for f in frames
    ]
    merged = balance_table_from_parts(parts)
    direct = balance_table(stacked, treatment="d", covariates=covs, weights="w")
    assert merged["covariate"].to_list() == direct["covariate"].to_list()
    for col in direct.columns:
        if direct[col].dtype.is_numeric():
            np.testing.assert_allclose(
                merged[col].to_numpy().astype(float),
                direct[col].to_numpy().astype(float),
                rtol=1e-10,
                atol=1e-12,
                err_msg=col,
            )
    # the KS statistic before matching is the two-sample statistic of the stacked data
    xt = stacked.filter(pl.col("d"))["x"].to_numpy()
    xc = stacked.filter(~pl.col("d"))["x"].to_numpy()
    assert _row(merged, "x")["ks_before"] == pytest.approx(stats.ks_2samp(xt, xc).statistic)
    # a grid without every treated value is refused
    with pytest.raises(ValueError, match="grid"):
        balance_table_from_parts(
            [
                balance_parts(
                    f,
                    treatment="d",
                    covariates=covs,
                    weights="w",
                    grid=ks_grid(frames[0], ["x", "i"]),
                )
                for f in frames
            ]
        )


def test_candidate_sample_only_changes_the_ks_before_matching() -> None:
    df = _confounded(4000, seed=4)
    res = match(df, treatment="d", id="pid", features=["age", "income"])
    df = res.attach_weights(df)
    covs = ["age", "income", "region", "female"]
    full = balance_table(df, treatment="d", covariates=covs, weights="weight")
    parts = balance_parts(df, treatment="d", covariates=covs, weights="weight", ks_sample=800)
    assert parts.candidates.sampled
    sampled = balance_table_from_parts([parts])
    for col in full.columns:
        if col != "ks_before" and full[col].dtype.is_numeric():
            np.testing.assert_allclose(
                sampled[col].to_numpy().astype(float),
                full[col].to_numpy().astype(float),
                rtol=1e-12,
                err_msg=col,
            )
    gap = (sampled["ks_before"] - full["ks_before"]).abs().max()
    assert 0 < gap < 0.06  # ~1/sqrt(800)

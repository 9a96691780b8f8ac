"""E-values and Rosenbaum bounds (``impact.estimate.sensitivity``).

References checked here:

* E-value: hand values (RR = 2 -> 2 + sqrt(2)); the worked example of VanderWeele & Ding
  (2017, Ann. Intern. Med. 167(4), 268-274): RR 3.9 (95 % CI 1.8-8.7) -> E-values 7.26 and
  3.0; and DoWhy 0.14's own E-value code (``EValueSensitivityAnalyzer``) as a peer for the
  standardised-mean-difference conversion.
* Rosenbaum bounds: at Gamma = 1 the normal approximation equals
  ``scipy.stats.wilcoxon(method="approx")`` (both zero methods, with and without continuity
  correction); the exact convolution equals ``scipy.stats.wilcoxon(method="exact")`` at
  Gamma = 1 and a brute-force enumeration of all 2^n sign patterns at Gamma > 1 (Rosenbaum
  2002, ch. 4: T is bounded by a sum of independent rank * Bernoulli(Gamma / (1 + Gamma))).
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from impact.estimate.sensitivity import (
    e_value,
    matched_differences,
    outcome_sd_among_twins,
    risk_ratio_from_att,
    rosenbaum_gamma,
    rosenbaum_p_values,
)

# --------------------------------------------------------------------------- E-values


def test_e_value_hand_values() -> None:
    assert e_value(2.0, kind="risk_ratio").e_value == pytest.approx(2 + math.sqrt(2))
    assert e_value(0.5, kind="risk_ratio").e_value == pytest.approx(2 + math.sqrt(2))
    assert e_value(1.0, kind="risk_ratio").e_value == pytest.approx(1.0)
    # continuous: d = 0.5 -> RR = exp(0.455)
    res = e_value(50.0, outcome_sd=100.0)
    rr = math.exp(0.91 * 0.5)
    assert res.d == pytest.approx(0.5)
    assert res.rr == pytest.approx(rr)
    assert res.e_value == pytest.approx(rr + math.sqrt(rr * (rr - 1)))
    assert res.e_value_ci is None


def test_e_value_published_example() -> None:
    """VanderWeele & Ding (2017): RR 3.9 (1.8, 8.7) -> E = 7.26 for the estimate, 3.0 for
    the lower limit."""
    res = e_value(3.9, (1.8, 8.7), kind="risk_ratio")
    assert res.e_value == pytest.approx(7.26, abs=0.005)
    assert res.e_value_ci == pytest.approx(3.0, abs=1e-9)  # 1.8 + sqrt(1.8 * 0.8) = 3.0
    assert res.to_dict()["rr_ci"] == [1.8, 8.7]


def test_e_value_ci_limit_closer_to_null() -> None:
    assert e_value(1.5, (0.9, 2.5), kind="risk_ratio").e_value_ci == 1.0  # CI includes 1
    protective = e_value(0.5, (0.3, 0.8), kind="risk_ratio")
    assert protective.e_value_ci == pytest.approx(1 / 0.8 + math.sqrt(1 / 0.8 * (1 / 0.8 - 1)))
    neg = e_value(-30.0, (-50.0, -10.0), outcome_sd=100.0)  # harmful continuous effect
    hi = math.exp(0.91 * -0.1)
    assert neg.rr < 1
    assert neg.e_value_ci == pytest.approx(1 / hi + math.sqrt(1 / hi * (1 / hi - 1)))


def test_e_value_matches_dowhy_smd_conversion() -> None:
    """DoWhy's ``_evalue_MD(est, se)`` uses exp(0.91 d -+ 1.78 se); same as converting the
    CI limits d -+ 1.96 se (1.78 = 0.91 * 1.96 up to rounding)."""
    from dowhy.causal_refuters.evalue_sensitivity_analyzer import EValueSensitivityAnalyzer

    peer = object.__new__(EValueSensitivityAnalyzer)  # only the pure helpers are used
    peer.logger = logging.getLogger("peer")
    d, se = 0.4, 0.1
    theirs = peer._evalue_MD(est=d, se=se)
    ours = e_value(d, (d - 1.956 * se, d + 1.956 * se), outcome_sd=1.0)  # 1.78 / 0.91
    assert ours.e_value == pytest.approx(theirs["evalue_estimate"], rel=1e-12)
    assert ours.e_value_ci == pytest.approx(theirs["evalue_lower_ci"], rel=1e-3)


def test_e_value_validation() -> None:
    with pytest.raises(ValueError, match="outcome_sd"):
        e_value(1.0)
    with pytest.raises(ValueError, match="contain"):
        e_value(2.0, (2.5, 3.0), kind="risk_ratio")
    with pytest.raises(ValueError, match="positive"):
        e_value(-1.0, kind="risk_ratio")


def test_risk_ratio_from_att() -> None:
    rr, ci = risk_ratio_from_att(0.1, 0.6, (0.05, 0.15))
    assert rr == pytest.approx(0.6 / 0.5)
    assert ci == pytest.approx((0.6 / 0.55, 0.6 / 0.45))
    res = e_value(rr, ci, kind="risk_ratio")
    assert res.e_value > res.e_value_ci > 1
    with pytest.raises(ValueError, match="counterfactual"):
        risk_ratio_from_att(0.7, 0.6)


def test_outcome_sd_among_twins() -> None:
    df = pl.DataFrame({"t": [1, 0, 0, 0], "y": [9.0, 1.0, 2.0, 4.0], "w": [1.0, 0.5, 0.25, 0.25]})
    mean = 0.5 * 1 + 0.25 * 2 + 0.25 * 4
    sd = math.sqrt(0.5 * (1 - mean) ** 2 + 0.25 * (2 - mean) ** 2 + 0.25 * (4 - mean) ** 2)
    assert outcome_sd_among_twins(df, treatment="t", outcome="y", weights="w") == pytest.approx(sd)
    assert outcome_sd_among_twins(df.to_pandas(), treatment="t", outcome="y") == pytest.approx(
        np.std([1.0, 2.0, 4.0])
    )


# --------------------------------------------------------------------------- Rosenbaum


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt"])
@pytest.mark.parametrize("continuity", [False, True])
def test_gamma_one_is_the_wilcoxon_normal_approximation(zero_method: str, continuity: bool) -> None:
    rng = np.random.default_rng(1)
    d = np.round(rng.normal(0.3, 1, size=80), 1)  # ties and zeros on purpose
    assert np.any(d == 0) and len(np.unique(np.abs(d))) < d.size
    p_up, p_lo, t = rosenbaum_p_values(d, [1.0], zero_method=zero_method, continuity=continuity)
    ref = stats.wilcoxon(
        d, alternative="greater", method="approx", zero_method=zero_method, correction=continuity
    )
    assert p_up[0] == pytest.approx(ref.pvalue, rel=1e-12)
    assert p_lo[0] == pytest.approx(ref.pvalue, rel=1e-12)
    assert t == ref.statistic


def test_exact_gamma_one_is_the_exact_wilcoxon() -> None:
    d = np.random.default_rng(2).normal(0.4, 1, size=30)
    p_up, _, _ = rosenbaum_p_values(d, [1.0], method="exact")
    assert p_up[0] == pytest.approx(
        stats.wilcoxon(d, alternative="greater", method="exact").pvalue, rel=1e-10
    )


def test_exact_matches_brute_force_enumeration() -> None:
    """P(T+ >= t) under Gamma by enumerating all 2^12 sign patterns (independent check of
    the convolution, ties included through average ranks)."""
    d = np.array([0.3, -1.2, 2.5, 0.8, -0.3, 1.9, 0.6, -0.6, 3.1, 1.1, -0.2, 0.3])
    ranks = stats.rankdata(np.abs(d))
    t_obs = ranks[d > 0].sum()
    gammas = [1.0, 1.5, 2.0, 3.0]
    p_up, p_lo, t = rosenbaum_p_values(d, gammas, method="exact")
    assert t == t_obs
    for j, g in enumerate(gammas):
        for p_sign, got in ((g / (1 + g), p_up[j]), (1 / (1 + g), p_lo[j])):
            brute = 0.0
            for signs in itertools.product((0, 1), repeat=d.size):
                s = np.array(signs)
                if ranks @ s >= t_obs - 1e-9:
                    brute += p_sign ** s.sum() * (1 - p_sign) ** (d.size - s.sum())
            assert got == pytest.approx(brute, rel=1e-10)


def test_normal_approximation_close_to_exact() -> None:
    d = np.random.default_rng(3).normal(0.35, 1, size=150)
    gammas = [1.0, 1.25, 1.5, 2.0]
    normal, _, _ = rosenbaum_p_values(d, gammas)
    exact, _, _ = rosenbaum_p_values(d, gammas, method="exact")
    assert np.allclose(normal, exact, atol=0.005)


def test_rosenbaum_table_and_critical_gamma() -> None:
    d = np.random.default_rng(4).normal(0.3, 1, size=300)  # critical Gamma about 1.97
    res = rosenbaum_gamma(d)
    tab = res.table
    assert tab.height == len(np.arange(1, 3.01, 0.05))
    p_up = np.array(res.p_upper)
    p_lo = np.array(res.p_lower)
    assert np.all(np.diff(p_up) > 0) and np.all(np.diff(p_lo) < 0)
    assert np.all(p_lo <= p_up)
    assert res.p_upper[0] == res.p_lower[0]
    crit = res.critical_gamma
    assert crit is not None and not res.beyond_grid
    sig = tab.filter(pl.col("significant"))["gamma"]
    assert sig.max() == pytest.approx(crit)
    assert crit <= res.gamma_at_alpha < crit + 0.05 + 1e-12
    p_at = rosenbaum_p_values(d, [res.gamma_at_alpha])[0][0]
    assert p_at == pytest.approx(0.05, abs=1e-8)
    # the opposite direction, by flipping signs
    flipped = rosenbaum_gamma(-d, alternative="less")
    assert flipped.p_upper == res.p_upper


def test_rosenbaum_no_effect_and_beyond_grid() -> None:
    rng = np.random.default_rng(5)
    none = rosenbaum_gamma(rng.normal(0, 1, size=200) - 0.2)
    assert none.critical_gamma is None and none.gamma_at_alpha is None
    huge = rosenbaum_gamma(rng.normal(3, 1, size=200))
    assert huge.beyond_grid and huge.critical_gamma == pytest.approx(3.0)
    assert huge.gamma_at_alpha > 3.0
    assert huge.to_dict()["n_used"] == 200


def test_matched_differences_long_layout() -> None:
    df = pl.DataFrame(
        {
            "set": [1, 1, 1, 2, 2, 3, 4, 4],
            "t": [True, False, False, True, False, True, False, False],
            "y": [10.0, 4.0, 6.0, 3.0, 5.0, 7.0, 1.0, 2.0],
            "w": [1.0, 0.25, 0.75, 1.0, 1.0, 1.0, 0.5, 0.5],
        }
    )
    eq = matched_differences(df, treatment="t", outcome="y", cluster="set")
    assert eq.tolist() == pytest.approx([10 - 5, 3 - 5])  # sets 3, 4 lack an arm
    wt = matched_differences(df.to_pandas(), treatment="t", outcome="y", cluster="set", weights="w")
    assert wt.tolist() == pytest.approx([10 - (0.25 * 4 + 0.75 * 6), -2.0])


# --------------------------------------------------------------------------- hidden confounder


def confounded_matched_sample(tau: float, hidden: float, n_sets: int, seed: int) -> pl.DataFrame:
    """1:2 matched sets (long layout) on an observed x; a hidden u (mean 1 among the treated,
    0 among twins) adds ``hidden * u`` to the change score: matching cannot remove it."""
    rng = np.random.default_rng(seed)
    k = 2
    x1 = rng.normal(size=n_sets)
    x = np.r_[x1, np.repeat(x1, k) + rng.normal(0, 0.05, size=n_sets * k)]
    t = np.r_[np.ones(n_sets, bool), np.zeros(n_sets * k, bool)]
    u = np.where(t, 1.0, 0.0) + rng.normal(size=t.size)
    y = 0.8 * x + tau * t + hidden * u + rng.normal(size=t.size)
    return pl.DataFrame(
        {
            "t": t,
            "y": y,
            "w": np.where(t, 1.0, 1.0 / k),
            "set": np.r_[np.arange(n_sets), np.repeat(np.arange(n_sets), k)],
        }
    )


def test_bigger_effect_bigger_e_value_and_gamma_under_hidden_confounding() -> None:
    hidden = 0.3
    e_vals, e_cis, gammas, ests = [], [], [], []
    for tau in (0.0, 0.2, 0.5, 1.0):
        df = confounded_matched_sample(tau, hidden, n_sets=600, seed=21)
        diffs = matched_differences(df, treatment="t", outcome="y", cluster="set", weights="w")
        att = float(diffs.mean())
        se = float(diffs.std(ddof=1) / math.sqrt(diffs.size))
        sd = outcome_sd_among_twins(df, treatment="t", outcome="y", weights="w")
        ev = e_value(att, (att - 1.96 * se, att + 1.96 * se), outcome_sd=sd)
        rb = rosenbaum_gamma(diffs, gammas=np.arange(1, 6.01, 0.05))
        ests.append(att)
        e_vals.append(ev.e_value)
        e_cis.append(ev.e_value_ci)
        gammas.append(rb.gamma_at_alpha)
    # the planted confounder biases the matched estimate by about `hidden`
    assert ests[0] == pytest.approx(hidden, abs=0.15)
    assert all(g is not None for g in gammas)
    assert np.all(np.diff(ests) > 0)
    assert np.all(np.diff(e_vals) > 0)
    assert np.all(np.diff(e_cis) > 0)
    assert np.all(np.diff(gammas) > 0)
    # a spurious effect (tau = 0) is explained away by a modest bias; a large one is not
    assert gammas[0] < 2.0 < gammas[-1]

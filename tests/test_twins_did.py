"""Matched DiD with statistical twins (impact.twins_did): recovery, overlap losses, variance.

DGP (selection on observables for changes): ``x1`` drives both the treatment and the
outcome trend, so the unmatched difference in changes is biased; a person effect ``u`` cancels
in the change. The post outcome is ``base + x1 + 0.5 x3 + tau_i d + noise`` with
``base = u + x1 + 0.5 x2`` in every period, so ``dY(0) = x1 + 0.5 x3 + noise``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import impact
from impact.estimate.did import twins_did

PRE = ["y_pre1", "y_pre2", "y_pre3"]
COVS = ["x1", "x2", "x3", "region"]


def dgp(n: int, seed: int, tau: float = 1.0, het: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    x3 = (rng.random(n) < 0.4).astype(int)
    region = rng.choice(["north", "south", "east"], size=n)
    u = rng.normal(size=n)
    lin = -1.3 + 0.9 * x1 - 0.5 * x2 + 0.6 * x3
    d = rng.random(n) < 1 / (1 + np.exp(-lin))
    base = u + x1 + 0.5 * x2
    pre = [base + rng.normal(scale=0.5, size=n) for _ in PRE]
    post = base + x1 + 0.5 * x3 + (tau + het * x3) * d + rng.normal(scale=0.5, size=n)
    return pl.DataFrame(
        {
            "pid": rng.permutation(n) + 1000,
            "d": d.astype(int),
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "region": region,
            **{name: v for name, v in zip(PRE, pre, strict=True)},
            "y_post": post,
        }
    )


def _fit(df, **kw):
    return twins_did(
        df, treatment="d", outcome="y_post", pre_outcomes=PRE, covariates=COVS, id="pid", **kw
    )


def test_recovers_a_known_att_where_the_naive_difference_is_biased() -> None:
    df = dgp(4000, seed=1, tau=1.0)
    res = _fit(df, k=3)
    assert abs(res.att - 1.0) < 3 * res.se
    assert abs(res.att_unmatched - 1.0) > 10 * res.se  # confounded: clearly biased
    post_naive = (
        df.filter(pl.col("d") == 1)["y_post"].mean() - df.filter(pl.col("d") == 0)["y_post"].mean()
    )
    assert abs(post_naive - 1.0) > 10 * res.se
    lo, hi = res.ci
    assert lo < res.att < hi and hi - lo == pytest.approx(2 * 1.959964 * res.se, rel=1e-6)
    assert res.n_treated + res.n_unmatched == res.n_treated_total == df["d"].sum()
    assert 0 < res.n_controls <= 3 * res.n_treated
    assert res.balance["smd_after"].abs().max() < 0.1
    assert set(res.balance["covariate"]) >= {"x1", "region=north", "y_pre1"}
    assert "ATT" in res.summary() and res.to_dict()["n_treated"] == res.n_treated


def test_root_export_and_pandas_input_give_the_same_result() -> None:
    df = dgp(1500, seed=2)
    a = impact.twins_did(
        df, treatment="d", outcome="y_post", pre_outcomes=PRE, covariates=COVS, id="pid"
    )
    b = impact.twins_did(
        df.to_pandas().sample(frac=1.0, random_state=3),
        treatment="d",
        outcome="y_post",
        pre_outcomes=PRE,
        covariates=COVS,
        id="pid",
    )
    assert a.att == pytest.approx(b.att, abs=1e-12)
    assert a.se == pytest.approx(b.se, abs=1e-12)


def test_treated_outside_the_caliper_are_dropped_and_reported() -> None:
    df = dgp(2000, seed=3)
    # five treated persons with covariates far outside the controls' support
    far = (
        df.filter(pl.col("d") == 1)
        .head(5)
        .with_columns(
            pl.col("pid") + 100_000,
            pl.lit(9.0).alias("x1"),
            pl.lit(-9.0).alias("x2"),
            pl.lit(1000.0).alias("y_post"),
        )
    )
    res = _fit(pl.concat([df, far]), k=1, caliper=0.1)
    unmatched = res.matches.unmatched
    assert set(far["pid"]) <= set(unmatched["treated_id"])
    assert set(unmatched["reason"]) == {"caliper"}
    assert res.n_unmatched == unmatched.height >= 5
    assert res.n_treated == res.n_treated_total - res.n_unmatched
    # the far treated units do not contaminate the estimate (their outcome is 1000)
    assert abs(res.att - 1.0) < 4 * res.se
    assert res.unmatched_share == pytest.approx(res.n_unmatched / res.n_treated_total)


def test_no_twin_at_all_raises_a_clear_error() -> None:
    df = dgp(300, seed=4)
    with pytest.raises(ValueError, match="no treated unit has a twin"):
        _fit(
            df.with_columns(
                pl.when(pl.col("d") == 1)
                .then(pl.lit("x"))
                .otherwise(pl.col("region"))
                .alias("region")
            ),
            exact=["region"],
        )


def test_variance_accounts_for_twin_reuse() -> None:
    df = dgp(3000, seed=5)
    ai = _fit(df, k=1, replace=True)
    clusters = _fit(df, k=1, replace=True, variance="treated_clusters")
    assert ai.att == clusters.att
    assert ai.se > 1.1 * clusters.se  # reused twins add variance the treated clusters miss
    infl = ai.influence
    assert infl["contribution"].pow(2).sum() == pytest.approx(ai.se**2)
    assert set(infl["role"]) == {"treated", "control"}
    # without replacement every twin serves once: both methods agree exactly
    a = _fit(df, k=1, replace=False)
    b = _fit(df, k=1, replace=False, variance="treated_clusters")
    assert a.se == pytest.approx(b.se, rel=1e-12)


def test_import_impact_stays_light() -> None:
    code = (
        "import sys, json, impact\n"
        "print(json.dumps([m for m in ('sklearn', 'polars', 'dagster', 'impact.estimate')"
        " if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
def test_monte_carlo_coverage_of_the_95_percent_interval() -> None:
    """200 replications, n = 2000, heterogeneous effects (tau = 1 + 0.5 x3), k = 1 with
    replacement. Target: the population ATT, 1 + 0.5 P(x3 = 1 | d = 1), from 2M draws."""
    big = dgp(2_000_000, seed=99)
    patt = 1 + 0.5 * big.filter(pl.col("d") == 1)["x3"].mean()
    reps = 200
    hits = {"abadie_imbens": 0, "treated_clusters": 0}
    est = []
    for r in range(reps):
        res = _fit(dgp(2000, seed=1000 + r, het=0.5), k=1)
        est.append(res.att)
        se_clusters = float(
            np.sqrt(res.influence.filter(pl.col("role") == "treated")["contribution"].pow(2).sum())
        )
        hits["abadie_imbens"] += abs(res.att - patt) <= 1.959964 * res.se
        hits["treated_clusters"] += abs(res.att - patt) <= 1.959964 * se_clusters
    coverage = {k: v / reps for k, v in hits.items()}
    bias = float(np.mean(est) - patt)
    print(f"coverage={coverage} bias={bias:.4f} sd={np.std(est):.4f}")
    assert 0.92 <= coverage["abadie_imbens"] <= 0.99
    assert abs(bias) < 0.02

"""The factored (no-covariate) path of the staggered ATT(g,t) equals the general path.

Without covariates every 2x2 estimator is a difference in weighted means, and ``att_gt``
keeps the influence functions in factored form (``_attgt.FactoredInfluence``) instead of
the dense cells x units matrix. These tests run the same data through both paths (the
general one forced with ``compute_cells(fast=False)``) and require the same point
estimates, standard errors, pre-test, aggregations, influence functions, failed cells and
bootstrap results, for every supported combination of options.
"""

from __future__ import annotations

import functools
import itertools
import warnings

import numpy as np
import polars as pl
import pytest

from impact.estimate import _attgt, staggered
from impact.estimate._staggered_data import prepare_panel
from impact.estimate.inference import multiplier_bootstrap, multiplier_bootstrap_product

KINDS = ("simple", "dynamic", "group", "calendar")
DYNAMIC_OPTIONS = ({}, {"balance_e": 1}, {"min_e": -2, "max_e": 2})
RTOL, ATOL = 1e-10, 1e-12


def _panel(
    seed: int = 0,
    n: int = 360,
    periods: int = 8,
    cohorts: tuple[int, ...] = (0, 1, 3, 4, 6, 8, 11),
    level: float = 0.0,
) -> pl.DataFrame:
    """Balanced panel, rows sorted by (id, t). Cohort 1 is treated in the first period
    (dropped), 11 after the window (never treated); heterogeneous effects, unit weights,
    clusters of about three units."""
    rng = np.random.default_rng(seed)
    g = rng.choice(np.array(cohorts), size=n)
    t = np.arange(1, periods + 1)
    unit = rng.normal(scale=2.0, size=n) + level
    effect = (g[:, None] > 0) & (t[None, :] >= g[:, None])
    y = (
        unit[:, None]
        + 0.2 * t[None, :]
        + 0.1 * (g[:, None] % 3) * t[None, :]  # cohort-specific trends: nonzero pre-tests
        + effect * (0.5 + 0.1 * (t[None, :] - g[:, None]))
        + rng.normal(size=(n, periods))
    )
    return pl.DataFrame(
        {
            "id": np.repeat(np.arange(n) * 3 + 10, periods),
            "t": np.tile(t, n),
            "g": np.repeat(g, periods),
            "y": y.ravel(),
            "w": np.repeat(rng.uniform(0.2, 2.0, size=n), periods),
            "cl": np.repeat(rng.integers(0, n // 3, size=n), periods),
        }
    )


def _fit(df: pl.DataFrame, *, fast: bool, monkeypatch: pytest.MonkeyPatch, **kw):
    with monkeypatch.context() as m:
        m.setattr(staggered, "compute_cells", functools.partial(_attgt.compute_cells, fast=fast))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = staggered.att_gt(df, y="y", t="t", g="g", id="id", **kw)
    kind = _attgt.FactoredInfluence if fast else _attgt.DenseInfluence
    assert isinstance(res._influence, kind)
    return res


def _close(a, b, *, rtol: float = RTOL, atol: float = ATOL, what: str = "") -> None:
    np.testing.assert_allclose(
        np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=atol,
        equal_nan=True, err_msg=what,
    )


def _assert_same_results(fast, slow, *, rtol: float = RTOL, boot: bool = False) -> None:
    """Everything ``att_gt`` and ``aggregate`` report. ``boot``: bootstrap quantities agree
    up to the single-precision rounding of the multiplier product (same multipliers)."""
    tol_se = 1e-5 if boot else rtol
    ft, st = fast.table, slow.table
    exact = ["group", "time", "base_period", "event_time", "post", "n", "n_treated", "n_control"]
    assert ft.select(exact).equals(st.select(exact))
    _close(ft["att"], st["att"], rtol=rtol, what="att")
    for col in ("se", "ci_low", "ci_high", "cband_low", "cband_high"):
        _close(ft[col], st[col], rtol=tol_se, atol=ATOL if not boot else 1e-7, what=col)
    assert fast.notes == slow.notes
    assert (fast.crit_uniform is None) == (slow.crit_uniform is None)
    if fast.crit_uniform is not None:
        _close(fast.crit_uniform, slow.crit_uniform, rtol=tol_se, what="crit")
    assert (fast.pretest is None) == (slow.pretest is None)
    if fast.pretest is not None:
        assert fast.pretest.df == slow.pretest.df
        _close(fast.pretest.statistic, slow.pretest.statistic, rtol=1e-9, what="pretest")
        _close(fast.pretest.pvalue, slow.pretest.pvalue, rtol=1e-9, atol=1e-14, what="pretest")
    scale = np.nanmax(np.abs(slow.influence))
    _close(fast.influence, slow.influence, rtol=0, atol=1e-12 * scale, what="influence")
    for kind in KINDS:
        for opts in DYNAMIC_OPTIONS if kind == "dynamic" else ({},):
            a = fast.aggregate(kind, na_rm=True, **opts)
            b = slow.aggregate(kind, na_rm=True, **opts)
            what = f"{kind} {opts}"
            _close(a.att, b.att, rtol=rtol, what=what)
            _close(a.se, b.se, rtol=tol_se, what=what)
            _close(a.influence, b.influence, rtol=0, atol=1e-12 * scale, what=what)
            assert (a.table is None) == (b.table is None)
            if a.table is not None:
                assert a.table.columns == b.table.columns
                assert a.table[:, 0].equals(b.table[:, 0]) and a.table["n_cells"].equals(
                    b.table["n_cells"]
                )
                _close(a.table["att"], b.table["att"], rtol=rtol, what=what)
                _close(a.table["se"], b.table["se"], rtol=tol_se, what=what)
                _close(
                    a.element_influence, b.element_influence, rtol=0, atol=1e-12 * scale,
                    what=what,
                )
                assert (a.crit_uniform is None) == (b.crit_uniform is None)
                if a.crit_uniform is not None:
                    _close(a.crit_uniform, b.crit_uniform, rtol=tol_se, what=what)


# ----------------------------------------------------------------------------- analytic


@pytest.mark.parametrize(
    ("control_group", "base_period", "anticipation"),
    list(itertools.product(["never_treated", "not_yet_treated"], ["varying", "universal"], [0, 1])),
)
@pytest.mark.parametrize("weights", [None, "w"])
def test_fast_path_equals_general_path(
    monkeypatch, control_group, base_period, anticipation, weights
) -> None:
    df = _panel(seed=anticipation + 2 * (weights is not None))
    kw = dict(
        control_group=control_group,
        base_period=base_period,
        anticipation=anticipation,
        weights=weights,
        est_method="reg",
        bootstrap=False,
        cband=False,
    )
    fast = _fit(df, fast=True, monkeypatch=monkeypatch, **kw)
    slow = _fit(df, fast=False, monkeypatch=monkeypatch, **kw)
    assert fast.pretest is not None  # the pre-test is exercised
    _assert_same_results(fast, slow)


@pytest.mark.parametrize("est_method", ["reg", "ipw", "dr", "dr_imp"])
def test_every_estimator_takes_the_fast_path_exactly(monkeypatch, est_method) -> None:
    df = _panel(seed=5)
    kw = dict(est_method=est_method, weights="w", control_group="not_yet_treated",
              bootstrap=False, cband=False)
    fast = _fit(df, fast=True, monkeypatch=monkeypatch, **kw)
    slow = _fit(df, fast=False, monkeypatch=monkeypatch, **kw)
    _assert_same_results(fast, slow, rtol=1e-9)


def test_cluster_robust_inference(monkeypatch) -> None:
    df = _panel(seed=7)
    for control_group in ("never_treated", "not_yet_treated"):
        kw = dict(est_method="reg", cluster="cl", control_group=control_group,
                  bootstrap=False, cband=False)
        fast = _fit(df, fast=True, monkeypatch=monkeypatch, **kw)
        slow = _fit(df, fast=False, monkeypatch=monkeypatch, **kw)
        assert fast.n_clusters == slow.n_clusters < fast.n_units
        _assert_same_results(fast, slow)


def test_large_outcome_levels_keep_precision(monkeypatch) -> None:
    # unit levels of 1e6 (think of register amounts) and changes of order one: the factored
    # path centres within unit first, so it loses no more digits than the general one
    df = _panel(seed=3, level=1e6)
    kw = dict(est_method="reg", bootstrap=False, cband=False, control_group="not_yet_treated")
    fast = _fit(df, fast=True, monkeypatch=monkeypatch, **kw)
    slow = _fit(df, fast=False, monkeypatch=monkeypatch, **kw)
    _close(fast.params, slow.params, rtol=0, atol=1e-8)
    _close(fast.bse, slow.bse, rtol=1e-8)
    shifted = _fit(_panel(seed=3), fast=True, monkeypatch=monkeypatch, **kw)
    _close(fast.params, shifted.params, rtol=0, atol=1e-8)


# ----------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize(
    ("control_group", "base_period", "multiplier", "cluster"),
    [
        ("never_treated", "varying", "rademacher", None),
        ("not_yet_treated", "universal", "mammen", None),
        ("not_yet_treated", "varying", "rademacher", "cl"),
    ],
)
def test_bootstrap_uses_the_same_multipliers(
    monkeypatch, control_group, base_period, multiplier, cluster
) -> None:
    df = _panel(seed=11)
    kw = dict(est_method="reg", control_group=control_group, base_period=base_period,
              multiplier=multiplier, cluster=cluster, biters=399, seed=42, anticipation=1)
    fast = _fit(df, fast=True, monkeypatch=monkeypatch, **kw)
    slow = _fit(df, fast=False, monkeypatch=monkeypatch, **kw)
    _assert_same_results(fast, slow, boot=True)
    other = _fit(df, fast=True, monkeypatch=monkeypatch, **(kw | {"seed": 43}))
    assert not np.allclose(other.bse, fast.bse, equal_nan=True)  # the seed matters


def test_bootstrap_product_form_reproduces_the_dense_draws() -> None:
    rng = np.random.default_rng(1)
    inf = rng.normal(size=(3000, 4))
    inf[:, 2] = np.nan
    dense = multiplier_bootstrap(inf, reps=300, seed=9, alpha=0.1)
    sums32 = np.where(np.isnan(inf), 0.0, inf).astype(np.float32)
    prod = multiplier_bootstrap_product(
        lambda v: v @ sums32, n_units=3000, n_clusters=3000, k=4,
        nan_cols=np.isnan(inf).any(axis=0), reps=300, seed=9, alpha=0.1,
    )
    np.testing.assert_array_equal(prod.se, dense.se)
    assert prod.crit_uniform == dense.crit_uniform


# ----------------------------------------------------------------------------- failures


def test_without_never_treated_units(monkeypatch) -> None:
    # R's rules: the last cohort becomes the never-treated group (never_treated) or serves
    # only as comparison (not_yet_treated), later periods dropped
    df = _panel(seed=2, cohorts=(3, 4, 6, 8))
    for control_group in ("never_treated", "not_yet_treated"):
        kw = dict(est_method="reg", control_group=control_group, bootstrap=False, cband=False)
        fast = _fit(df, fast=True, monkeypatch=monkeypatch, **kw)
        slow = _fit(df, fast=False, monkeypatch=monkeypatch, **kw)
        assert any("no never-treated units" in note for note in fast.notes)
        _assert_same_results(fast, slow)


@pytest.mark.parametrize("est_method", ["ipw", "dr", "dr_imp"])
def test_propensity_score_rules_at_the_boundary(monkeypatch, est_method) -> None:
    # a cohort of 99.75 % of its cells: ipw/dr trim every comparison unit (score >= 0.995,
    # the cell fails), dr_imp does not trim; the fast path defers to the estimator there
    rng = np.random.default_rng(4)
    g = np.r_[np.full(2000, 4), np.full(5, 0), np.full(40, 6)]
    n, periods = g.size, 7
    y = rng.normal(size=(n, periods)) + np.arange(periods)
    df = pl.DataFrame(
        {
            "id": np.repeat(np.arange(n), periods),
            "t": np.tile(np.arange(1, periods + 1), n),
            "g": np.repeat(g, periods),
            "y": y.ravel(),
        }
    )
    kw = dict(est_method=est_method, bootstrap=False, cband=False)
    fast = _fit(df, fast=True, monkeypatch=monkeypatch, **kw)
    slow = _fit(df, fast=False, monkeypatch=monkeypatch, **kw)
    _assert_same_results(fast, slow, rtol=1e-9)
    failed = fast.table.filter(pl.col("att").is_nan())
    if est_method == "dr_imp":
        assert failed.height == 0
    else:
        assert failed.height > 0 and set(failed["group"].to_list()) == {4}
        assert any("trimmed" in note for note in fast.notes)
        assert np.isnan(fast.influence[:, np.isnan(fast.params)]).all()
        with pytest.raises(ValueError, match="missing"):
            fast.aggregate("dynamic")


def test_cohort_without_weight_takes_the_general_path() -> None:
    df = _panel(seed=1).with_columns(
        pl.when(pl.col("g") == 4).then(0.0).otherwise(pl.col("w")).alias("w")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        panel = prepare_panel(df, y="y", t="t", g="g", id="id", x=(), weights="w",
                              cluster=None, anticipation=0, control_group="never_treated")
    assert not _attgt.fast_path_applies(panel)
    with pytest.raises(ValueError, match="factored path"):
        _attgt.compute_cells(panel, control_group="never_treated", est_method="reg",
                             anticipation=0, base_period="varying", fast=True)


def test_covariates_take_the_general_path() -> None:
    df = _panel(seed=1, cohorts=(0, 3, 6)).with_columns(pl.col("w").alias("x1"))
    res = staggered.att_gt(df, y="y", t="t", g="g", id="id", x=("x1",), est_method="reg",
                           bootstrap=False, cband=False)
    assert isinstance(res._influence, _attgt.DenseInfluence)


# ----------------------------------------------------------------------------- data layout


def _prepared(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_panel(data, y="y", t="t", g="g", id="id", x=(), weights="w",
                             cluster="cl", anticipation=0, control_group="never_treated", **kw)


@pytest.mark.parametrize("layout", ["shuffled", "time_major", "string_ids", "pandas"])
def test_row_layouts_give_identical_arrays(layout: str) -> None:
    df = _panel(seed=6)
    sorted_panel = _prepared(df)  # sorted by (id, t): the reshape branch
    if layout == "shuffled":
        other = df.sample(fraction=1.0, shuffle=True, seed=1)
    elif layout == "time_major":
        other = df.sort("t", "id")
    elif layout == "string_ids":
        other = df.with_columns(pl.format("u{}", pl.col("id").cast(pl.Int64) + 100_000))
    else:
        other = df.to_pandas()
    again = _prepared(other)
    for name in ("periods", "y_units", "g", "w", "cluster", "groups"):
        np.testing.assert_array_equal(getattr(again, name), getattr(sorted_panel, name))
    if layout != "string_ids":
        np.testing.assert_array_equal(again.ids, sorted_panel.ids)
    np.testing.assert_array_equal(again.y, sorted_panel.y_units.T)


def test_sorted_layout_still_checks_balance_duplicates_and_nan() -> None:
    df = _panel(seed=6, n=30)
    with pytest.raises(ValueError, match="balanced"):
        _prepared(df.filter(~((pl.col("id") == 13) & (pl.col("t") == 5))))
    dup = pl.concat([df, df.filter(pl.col("id") == 13)]).sort("id", "t")
    with pytest.raises(ValueError, match="unique"):
        _prepared(dup)
    nan = df.with_columns(
        pl.when((pl.col("id") == 16) & (pl.col("t") == 2)).then(float("nan"))
        .otherwise(pl.col("y")).alias("y")
    )
    with pytest.raises(ValueError, match=r"NaN values for id\(s\) 16"):
        _prepared(nan)
    varying = df.with_columns(
        pl.when((pl.col("id") == 19) & (pl.col("t") == 8)).then(0).otherwise(pl.col("g"))
        .alias("g")
    )
    with pytest.raises(ValueError, match=r"constant within unit.*19"):
        _prepared(varying)

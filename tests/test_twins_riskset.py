"""Risk-set twin matching on the panel: no look-ahead, risk sets, strata, caliper, determinism."""

from __future__ import annotations

import copy
import warnings
from datetime import date

import numpy as np
import polars as pl
import pytest

from impact.balance import balance_table
from impact.twins.features import (
    HISTORY,
    ISCED_FIELD_GROUPS,
    ISCO_GROUPS,
    JOB_RECENCY_BANDS,
    NACE_A10,
    PanelArrays,
    features_at,
)
from impact.twins.riskset import (
    DEFAULT_EXACT,
    STATUS_EXACT,
    TwinSettings,
    cohort_frame,
    cohort_groups,
    match_cohort,
    match_cohorts,
    pooled_balance,
    pre_trajectories,
    risk_set,
)

FIRST = date(2021, 1, 1)


@pytest.fixture(scope="module")
def arrays(research) -> PanelArrays:
    return PanelArrays.load(research.root / "panel", FIRST, date(2028, 6, 1))


@pytest.fixture(scope="module")
def twins(arrays):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return match_cohorts(arrays, TwinSettings(gate_min_treated=10))


def test_arrays_equal_the_panel(arrays, research) -> None:
    df = research.panel.filter(pl.col("month") >= FIRST).sample(2_000, seed=1)
    t = ((df["month"].dt.year() - 2021) * 12 + df["month"].dt.month() - 1).to_numpy()
    pid = df["pid"].to_numpy()
    got = arrays.series["earnings_real"][pid, t]
    assert np.allclose(got, df["earnings_real"].to_numpy(), rtol=1e-6, atol=0.01)
    assert (arrays.series["days_worked"][pid, t] == df["days_worked"].to_numpy()).all()
    assert (arrays.person_code[pid] == df["person_code"].to_numpy()).all()


def test_features_use_only_months_before_the_cohort(arrays) -> None:
    """Plant changes in month m and later: the features of cohort m do not move."""
    m = arrays.month_index(date(2025, 6, 1))
    pids = np.arange(arrays.n_persons)
    before = features_at(arrays, m, pids)
    planted = copy.copy(arrays)
    planted = PanelArrays(
        person_code=arrays.person_code, sex=arrays.sex, first_start=arrays.first_start,
        months=arrays.months,
        series={k: v.copy() for k, v in arrays.series.items()},
        codes={k: v.copy() for k, v in arrays.codes.items()}, levels=arrays.levels)
    for k, v in planted.series.items():
        if k != "age":  # age at m is known in advance (birth date)
            v[:, m:] = 99
    for v in planted.codes.values():
        v[:, m:] = 0
    after = features_at(planted, m, pids)
    assert before.equals(after)
    # ... while a change in m-1 does move them
    planted.series["earnings_real"][:, m - 1] += 1000
    assert not features_at(planted, m, pids)["earn_l1"].equals(before["earn_l1"])


def test_twins_have_not_started_by_the_cohort_month(twins, arrays) -> None:
    fs = arrays.first_start
    pairs = twins.pairs
    assert pairs.height > 0
    cohort_idx = np.array([arrays.month_index(d) for d in pairs["cohort"]])
    twin_fs = fs[pairs["twin_pid"].to_numpy()]
    assert ((twin_fs == -1) | (twin_fs > cohort_idx)).all()
    assert (fs[pairs["treated_pid"].to_numpy()] == cohort_idx).all()
    # later starters do serve as twins before their start (not_yet_treated pool) ...
    assert (twin_fs > cohort_idx).any()


def test_never_treated_pool_excludes_later_starters(arrays) -> None:
    m = arrays.month_index(date(2025, 6, 1))
    treated, cand, _ = risk_set(arrays, m, "never_treated")
    assert (arrays.first_start[cand] == -1).all()
    _, cand_nyt, _ = risk_set(arrays, m, "not_yet_treated")
    assert cand_nyt.size > cand.size
    assert (arrays.series["eligible"][np.r_[treated, cand], m] == 1).all()


def test_account_holder_pool_is_the_not_yet_treated_with_an_account(arrays, research) -> None:
    m = arrays.month_index(date(2025, 6, 1))
    _, cand, _ = risk_set(arrays, m, "account_holders")
    _, nyt, _ = risk_set(arrays, m, "not_yet_treated")
    assert 0 < cand.size < nyt.size
    holders = arrays.series["ila_account"][:, m - 1] == 1
    assert holders[cand].all()
    np.testing.assert_array_equal(cand, nyt[holders[nyt]])
    # the panel's account flag: an account created on or before the month's last day
    acc = research.panel.filter(pl.col("month") == arrays.months[m - 1],
                                pl.col("ila_account"))["pid"].to_numpy()
    assert set(cand) <= set(acc.tolist())


def test_account_stratum_takes_account_holders_twins_from_account_holders(arrays) -> None:
    from impact.config import TwinsSection

    m = arrays.month_index(date(2025, 6, 1))
    t, _, _ = risk_set(arrays, m, "not_yet_treated")
    f = features_at(arrays, m, t)
    np.testing.assert_array_equal(f["ila_account_l1"].to_numpy(),
                                  arrays.series["ila_account"][t, m - 1])
    s = TwinsSection(exact=[*DEFAULT_EXACT, "ila_account_l1"], gate_min_treated=10).settings()
    assert all("ila_account_l1" in level for level in s.exact_levels())  # kept in every pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match_cohorts(arrays, s)
    p = res.pairs.with_columns(
        pl.col("cohort").map_elements(arrays.month_index, return_dtype=pl.Int64).alias("m"))
    assert p.height > 0
    acc = arrays.series["ila_account"]
    m1 = p["m"].to_numpy() - 1
    np.testing.assert_array_equal(acc[p["treated_pid"].to_numpy(), m1],
                                  acc[p["twin_pid"].to_numpy(), m1])
    assert acc[p["treated_pid"].to_numpy(), m1].any()  # some twins are account holders
    with pytest.raises(ValueError, match="unknown matching features"):
        TwinsSection(exact=["ila_account"])


def test_months_since_job_and_its_bands(arrays) -> None:
    """``months_since_job`` counts back to the last month employed (person by person)."""
    m = arrays.month_index(date(2025, 6, 1))
    pids = np.arange(arrays.n_persons)
    f = features_at(arrays, m, pids)
    emp = arrays.series["employed"]
    want = np.full(pids.size, HISTORY)
    for p in pids:
        hit = np.flatnonzero(emp[p, m - HISTORY:m][::-1] > 0)  # 0: month m-1
        if hit.size:
            want[p] = hit[0]
    got = f["months_since_job"].to_numpy()
    np.testing.assert_array_equal(got, want)
    assert (got == 0).sum() == (f["employed_l1"] == 1).sum()
    for label, lo, hi in JOB_RECENCY_BANDS:  # every band is used, each holds its range
        inside = (f["job_recency"] == label).to_numpy()
        assert inside.any(), label
        assert ((got[inside] >= lo) & (got[inside] <= hi)).all(), label


def _pairs_with(c, cols: list[str]) -> pl.DataFrame:
    """The pairs of a cohort with ``cols`` of the treated person and (``_twin``) the twin."""
    f = c.frame.select("pid", *cols)
    return (c.result.pairs.join(f, left_on="treated_id", right_on="pid")
            .join(f, left_on="control_id", right_on="pid", suffix="_twin"))


def test_exact_strata_and_caliper_are_respected(twins) -> None:
    """Every pass of the default matching keeps its strata: the first all of ``exact``
    (job_recency included), the second all but region, the third also without job_recency;
    the status at entry holds in every pass."""
    s = twins.settings
    levels = s.exact_levels()
    assert levels == (DEFAULT_EXACT, tuple(k for k in DEFAULT_EXACT if k != "region_code"),
                      tuple(k for k in DEFAULT_EXACT if k not in ("region_code", "job_recency")))
    assert {"employed_l1", "registered_l1", "job_recency"} <= set(s.exact)  # status at entry
    seen = set()
    for c in twins.cohorts:
        p = _pairs_with(c, [*s.exact, "ps_logit"])
        for level, cols in enumerate(levels):
            pp = p.filter(pl.col("match_pass") == level)
            seen |= {level} if pp.height else set()
            for key in cols:
                assert (pp[key] == pp[f"{key}_twin"]).all(), (level, key)
        gap = (p["ps_logit"] - p["ps_logit_twin"]).abs()
        assert (gap <= c.result.caliper_distance + 1e-12).all()
        assert c.result.caliper_distance == pytest.approx(0.2 * c.result.score_sd)
    assert seen == {0, 1, 2}  # the small sample needs every pass
    n_later = twins.pairs.filter(pl.col("match_pass") > 0).select(
        "cohort", "treated_pid").unique().height
    assert twins.summary["n_matched_fallback"].sum() == n_later


def test_coarser_pass_matches_the_leftover_treated_in_the_coarser_strata(arrays) -> None:
    """Default strata, falling back to them without job_recency: the first pass is the
    one-pass match on the finer strata, the second the coarser one-pass match of the treated
    it left; nobody the coarser strata match is lost, and the counts say who came from which
    pass."""
    from impact.config import TwinsSection

    def run(**kw: object) -> object:
        s = TwinsSection(gate_min_treated=10, **kw).settings()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return match_cohorts(arrays, s)

    coarse = run(exact=list(STATUS_EXACT), coarsen=[])
    finer = run(coarsen=[])
    both = run(coarsen=[["job_recency"]])
    key = ["cohort", "treated_pid", "twin_pid"]
    first = both.pairs.filter(pl.col("match_pass") == 0).select(key).sort(key)
    assert first.equals(finer.pairs.select(key).sort(key))
    second = both.pairs.filter(pl.col("match_pass") == 1)
    assert second.height, "the finer strata leave some treated persons to the second pass"
    redo = coarse.pairs.join(second.select("cohort", "treated_pid").unique(),
                             on=["cohort", "treated_pid"])
    assert second.select(key).sort(key).equals(redo.select(key).sort(key))
    # the unmatched are those of the coarser strata; the counts reconcile
    um = ["cohort", "treated_id"]
    assert set(both.unmatched.select(um).iter_rows()) == set(coarse.unmatched.select(um)
                                                              .iter_rows())
    n_second = second.select("cohort", "treated_pid").unique().height
    assert both.summary["n_matched_fallback"].sum() == n_second
    assert both.summary["n_matched"].sum() == coarse.summary["n_matched"].sum()
    assert (both.summary["n_matched"].sum()
            == finer.summary["n_matched"].sum() + n_second)
    assert (finer.summary["n_matched_fallback"] == 0).all()


def test_coarsen_must_drop_exact_columns() -> None:
    with pytest.raises(ValueError, match=r"coarsen drops \['job_recency'\]"):
        TwinSettings(exact=STATUS_EXACT)
    assert TwinSettings(exact=STATUS_EXACT, coarsen=()).exact_levels() == (STATUS_EXACT,)
    with pytest.raises(ValueError, match="list of columns"):
        TwinSettings(coarsen=("region_code",))


def test_same_seed_same_twins(arrays, twins) -> None:
    first = [c.cohort for c in twins.cohorts[:4]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = match_cohorts(arrays, TwinSettings(gate_min_treated=10), cohorts=first)
        b = match_cohorts(arrays, TwinSettings(gate_min_treated=10), cohorts=first)
    assert a.pairs.height and a.pairs.equals(b.pairs)
    one = match_cohort(arrays, arrays.month_index(twins.cohorts[0].cohort), TwinSettings(
        ps_scope="per_cohort"))
    assert one.result.n_treated == twins.cohorts[0].result.n_treated


def test_summary_accounts_for_every_treated_person(twins, research) -> None:
    s = twins.summary
    assert (s["n_matched"] + s["n_unmatched"] == s["n_treated"]).all()
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    in_window = tr.filter(pl.col("cohort") >= date(2024, 1, 1))
    assert s["n_treated"].sum() + s["n_treated_ineligible"].sum() == in_window.height
    if twins.unmatched.height:
        assert set(twins.unmatched["reason"]) <= {"caliper", "no_controls", "exhausted"}


def test_matching_improves_balance_and_pre_trajectories(arrays, twins) -> None:
    pooled = twins.balance.filter(pl.col("cohort").is_null() & pl.col("cohort_group").is_null())
    assert pooled["smd_after"].abs().mean() < pooled["smd_before"].abs().mean()
    tr = pre_trajectories(arrays, twins).filter(pl.col("series") == "earnings_real")
    naive_gap = (tr["treated"] - tr["candidates"]).abs().mean()
    matched_gap = (tr["treated"] - tr["twins"]).abs().mean()
    assert matched_gap < 0.5 * naive_gap


def test_cohort_groups() -> None:
    assert cohort_groups([800, 900], 100) == [0, 1]
    assert cohort_groups([60, 50, 10], 100) == [0, 0, 0]
    assert cohort_groups([60, 50, 120, 10], 100) == [0, 0, 1, 1]
    assert cohort_groups([], 100) == []


def test_coarse_groups_map_every_level(arrays) -> None:
    assert set(NACE_A10) == set("ABCDEFGHIJKLMNOPQRSTU")  # every NACE Rev. 2 section
    assert sorted(set(NACE_A10.values())) == sorted(
        ["A", "B-E", "F", "G-I", "J", "K", "L", "M-N", "O-Q", "R-U"]
    )
    assert set(ISCO_GROUPS) == set("123456789")
    m = arrays.month_index(date(2025, 6, 1))
    f = features_at(arrays, m, np.arange(arrays.n_persons)).with_columns(
        pl.col("*").exclude("pid").cast(pl.String)
    )
    nace = f["nace_section"].replace_strict(NACE_A10, default=f["nace_section"])
    assert f["nace_group"].equals(nace.alias("nace_group"))
    field = f["isced_field"].replace_strict(ISCED_FIELD_GROUPS, default=f["isced_field"])
    assert f["isced_field_group"].equals(field.alias("isced_field_group"))
    isco = f["isco_major"].replace_strict(ISCO_GROUPS, default=f["isco_major"])
    assert f["isco_group"].equals(isco.alias("isco_group"))
    assert f["nace_group"].n_unique() < f["nace_section"].n_unique()


def test_group_balance_equals_the_table_of_the_stacked_cohorts(arrays, twins) -> None:
    """Cohort-group balance (from per-cohort parts) = balance_table on the stacked frames."""
    s = twins.settings
    members = [c for c in twins.cohorts if c.result.n_treated][:3]
    frames = []
    for c in members:
        df, _ = cohort_frame(arrays, arrays.month_index(c.cohort), s.pool)
        w = c.frame.select("pid", "weight")
        frames.append(df.join(w, on="pid", how="left").with_columns(pl.col("weight").fill_null(0)))
    direct = balance_table(
        pl.concat(frames), treatment="treated", covariates=s.covariates, weights="weight"
    )
    merged = pooled_balance([c.parts for c in members])
    assert merged["covariate"].to_list() == direct["covariate"].to_list()
    for col in ("smd_before", "smd_after", "ks_before", "ks_after", "vr_after"):
        np.testing.assert_allclose(
            merged[col].to_numpy().astype(float),
            direct[col].to_numpy().astype(float),
            rtol=1e-9,
            atol=1e-12,
            err_msg=col,
        )


def test_load_handles_late_entrants_and_levels_arriving_out_of_order(tmp_path) -> None:
    """A person entering mid-year gets a pseudonym; levels seen first in a later year are
    sorted with the others and the codes of earlier years remapped."""
    from impact.twins.features import CATEGORIES, SERIES

    rows = []
    for year, pid, months, nace in (
        (2021, 0, range(1, 13), "J"),
        (2022, 0, range(1, 13), "C"),
        (2022, 1, range(3, 13), None),  # enters in March 2022
    ):
        for mo in months:
            rows.append(
                {
                    "pid": pid,
                    "month": date(year, mo, 1),
                    "person_code": f"P{pid}",
                    "sex": "F" if pid else "M",
                    "ila_first_start": date(2022, 6, 1) if pid else None,
                    **{c: 1 for c in SERIES},
                    "earnings_real": 100.0 * pid + mo,
                    **{c: None for c in CATEGORIES},
                    "nace_section": nace,
                }
            )
    df = pl.DataFrame(rows).with_columns(pl.col(c).cast(pl.String) for c in CATEGORIES)
    for year in (2021, 2022):
        part = tmp_path / f"year={year}"
        part.mkdir()
        df.filter(pl.col("month").dt.year() == year).write_parquet(part / "part-0.parquet")
    a = PanelArrays.load(tmp_path, date(2021, 1, 1), date(2022, 12, 1))
    assert a.person_code.tolist() == ["P0", "P1"] and a.sex.tolist() == ["M", "F"]
    assert a.first_start.tolist() == [-1, 17]
    assert a.levels["nace_section"] == ["C", "J"]
    nace = np.array([*a.levels["nace_section"], None], dtype=object)[a.codes["nace_section"]]
    assert nace[0, :12].tolist() == ["J"] * 12 and nace[0, 12:].tolist() == ["C"] * 12
    assert (nace[1] == None).all()  # noqa: E711 - elementwise
    assert a.series["earnings_real"][1, 14] == 103.0 and a.series["age"][1, 13] == -1
    assert a.series["earnings_real"].flags.f_contiguous

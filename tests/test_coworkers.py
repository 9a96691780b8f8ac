"""Same-firm co-worker twins (twins.pool: coworkers): same employer in m-1, minimum firm size,
unmatched reasons, no look-ahead, and the other pools untouched."""

from __future__ import annotations

import shutil
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from impact.twins import coworkers
from impact.twins.features import CATEGORIES, SERIES, PanelArrays
from impact.twins.plan import combine_planned, make_plan, match_planned, write_cohort
from impact.twins.riskset import (
    TwinSettings,
    match_cohort,
    match_cohorts,
    risk_set,
)

FIRST = date(2021, 1, 1)
#: few exact keys: the 4,000-person fixture has ~50 treated, inside firms of 10-40 persons
SETTINGS = TwinSettings(pool="coworkers", exact=("sex",), coarsen=(), gate_min_treated=10)


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


def _prev(d: date) -> date:
    return date(d.year - (d.month == 1), 12 if d.month == 1 else d.month - 1, 1)


@pytest.fixture(scope="module")
def arrays(research) -> PanelArrays:
    return PanelArrays.load(research.root / "panel", FIRST, date(2028, 6, 1))


@pytest.fixture(scope="module")
def twins(arrays):
    return _quiet(match_cohorts, arrays, SETTINGS, pre=True)


@pytest.fixture(scope="module")
def employer(research) -> pl.DataFrame:
    """Main employer and firm size of every person-month, straight from the panel."""
    p = research.panel.select("pid", "month", "employer_id")
    size = (p.filter(pl.col("employer_id").is_not_null())
            .group_by("month", "employer_id").agg(pl.len().alias("firm_size")))
    return p.join(size, on=["month", "employer_id"], how="left")


def _at_m1(employer: pl.DataFrame, frame: pl.DataFrame, pid: str, cohort: str) -> pl.DataFrame:
    """``frame`` with the employer and firm size of ``pid`` in the month before ``cohort``."""
    e = employer.rename({"pid": pid, "employer_id": f"{pid}_employer",
                         "firm_size": f"{pid}_firm_size"})
    return frame.with_columns(
        pl.col(cohort).dt.offset_by("-1mo").alias("month")
    ).join(e, on=[pid, "month"], how="left").drop("month")


def test_twins_share_the_treated_persons_employer_in_m_minus_1(twins, employer) -> None:
    p = twins.pairs
    assert p.height > 0
    p = _at_m1(employer, p.with_columns(pl.col("treated_pid").cast(pl.Int32),
                                        pl.col("twin_pid").cast(pl.Int32)),
               "treated_pid", "cohort")
    p = _at_m1(employer, p, "twin_pid", "cohort")
    assert p["treated_pid_employer"].null_count() == 0
    assert (p["treated_pid_employer"] == p["twin_pid_employer"]).all()
    assert (p["treated_pid_firm_size"] >= SETTINGS.coworkers_min_firm_size).all()
    # pairs from more than one firm: the employer is a stratum key, not a single pool
    assert p["treated_pid_employer"].n_unique() > 1


def test_candidates_are_not_yet_treated_coworkers_of_a_treated_person(arrays, employer) -> None:
    m = arrays.month_index(date(2025, 6, 1))
    treated, cand, _ = risk_set(arrays, m, "coworkers", min_firm_size=10)
    _, nyt, _ = risk_set(arrays, m, "not_yet_treated")
    assert 0 < cand.size < nyt.size
    assert np.isin(cand, nyt).all()
    e = employer.filter(pl.col("month") == date(2025, 5, 1))
    firm = dict(zip(e["pid"].to_list(), e["employer_id"].to_list(), strict=True))
    size = dict(zip(e["pid"].to_list(), e["firm_size"].to_list(), strict=True))
    firms = {firm.get(int(t)) for t in treated if (size.get(int(t)) or 0) >= 10}
    assert {firm.get(int(c)) for c in cand} == firms - {None}
    assert all(size[int(c)] >= 10 for c in cand)
    # every not-yet-treated co-worker of those firms is a candidate
    want = sorted(int(c) for c in nyt if firm.get(int(c)) in firms and firm.get(int(c)))
    assert cand.tolist() == want


def test_unmatched_reasons_no_employer_and_small_firm(twins, employer) -> None:
    um = twins.unmatched
    assert set(um["reason"]) >= {coworkers.NO_EMPLOYER, coworkers.FIRM_TOO_SMALL}
    um = _at_m1(employer, um.with_columns(pl.col("treated_id").cast(pl.Int32)),
                "treated_id", "cohort")
    none = um.filter(pl.col("reason") == coworkers.NO_EMPLOYER)
    assert none["treated_id_employer"].null_count() == none.height
    small = um.filter(pl.col("reason") == coworkers.FIRM_TOO_SMALL)
    assert (small["treated_id_firm_size"] < SETTINGS.coworkers_min_firm_size).all()
    other = um.filter(~pl.col("reason").is_in(coworkers.REASONS))
    assert (other["treated_id_firm_size"] >= SETTINGS.coworkers_min_firm_size).all()
    # the summary counts them, every treated person once
    s = twins.summary
    assert (s["n_matched"] + s["n_unmatched"] == s["n_treated"]).all()
    for r in coworkers.REASONS:
        assert s[f"unmatched_{r}"].sum() == (um["reason"] == r).sum()
    assert s["n_unmatched"].sum() == twins.unmatched.height


def test_min_firm_size_is_applied(arrays, twins) -> None:
    """A larger minimum turns firms too small and only removes twins (same strata)."""
    big = _quiet(match_cohorts, arrays, TwinSettings(
        pool="coworkers", exact=("sex",), coarsen=(), gate_min_treated=10,
        coworkers_min_firm_size=25))
    s0, s1 = twins.summary, big.summary
    assert s1["unmatched_firm_too_small"].sum() > s0["unmatched_firm_too_small"].sum()
    assert s1["n_matched"].sum() < s0["n_matched"].sum()
    assert (s1["unmatched_no_employer"] == s0["unmatched_no_employer"]).all()
    assert (s1["n_candidates"] <= s0["n_candidates"]).all()


def test_cohort_by_cohort_equals_all_at_once(arrays, tmp_path: Path) -> None:
    """impact.twins.plan carries the pool and its minimum firm size to every cohort."""
    s = TwinSettings(pool="coworkers", exact=("sex",), coarsen=(), gate_min_treated=10,
                     coworkers_min_firm_size=5)
    whole = _quiet(match_cohorts, arrays, s, pre=True)
    plan = _quiet(make_plan, arrays, s)
    for c in plan.cohorts:
        write_cohort(_quiet(match_planned, arrays, plan, c), plan, tmp_path)
    planned = _quiet(combine_planned, plan, tmp_path)
    assert_frame_equal(planned.pairs, whole.pairs)
    assert_frame_equal(planned.unmatched, whole.unmatched)
    assert_frame_equal(planned.summary.drop("seconds"), whole.summary.drop("seconds"))
    assert_frame_equal(planned.pre, whole.pre)


def _rewrite_panel(src: Path, dst: Path, change: pl.Expr) -> None:
    """Copy the panel with ``employer_id`` replaced by ``change`` (keeps the layout)."""
    shutil.copytree(src, dst)
    for f in dst.rglob("*.parquet"):
        df = pl.read_parquet(f)
        df.with_columns(change.alias("employer_id")).write_parquet(f)


def test_no_look_ahead_employer_of_m_minus_1_only(research, tmp_path: Path) -> None:
    """Every person's employer changes from the cohort month on: same candidates and twins;
    a change in m-1 does move them."""
    cohort = date(2025, 6, 1)
    # one cohort on its own: Mahalanobis (a per-cohort logit on 4 treated separates)
    s = TwinSettings(pool="coworkers", exact=("sex",), coarsen=(), distance="mahalanobis",
                     caliper=None)
    src = research.root / "panel"
    base = PanelArrays.load(src, FIRST, date(2028, 6, 1))
    m = base.month_index(cohort)
    later = pl.when(pl.col("month") >= cohort).then(pl.lit("EX-SAME-FIRM")).otherwise(
        pl.col("employer_id"))
    _rewrite_panel(src, tmp_path / "later", later)
    planted = PanelArrays.load(tmp_path / "later", FIRST, date(2028, 6, 1))
    a = _quiet(match_cohort, base, m, s)
    b = _quiet(match_cohort, planted, m, s)
    assert a.result.pairs.height > 0
    assert_frame_equal(a.result.pairs, b.result.pairs)
    assert_frame_equal(a.result.unmatched, b.result.unmatched)
    # ... while the same change in m-1 (one firm for everybody employed) moves them
    at_m1 = pl.when((pl.col("month") == _prev(cohort)) & pl.col("employer_id").is_not_null()
                    ).then(pl.lit("EX-SAME-FIRM")).otherwise(pl.col("employer_id"))
    _rewrite_panel(src, tmp_path / "m1", at_m1)
    moved = PanelArrays.load(tmp_path / "m1", FIRST, date(2028, 6, 1))
    assert risk_set(moved, m, "coworkers")[1].size > risk_set(base, m, "coworkers")[1].size
    c = _quiet(match_cohort, moved, m, s)
    assert not c.result.pairs.equals(a.result.pairs)


def test_other_pools_never_read_employers(arrays) -> None:
    """The other pools do not touch the employer scan or the minimum firm size."""
    blind = PanelArrays(person_code=arrays.person_code, sex=arrays.sex,
                        first_start=arrays.first_start, months=arrays.months,
                        series=arrays.series, codes=arrays.codes, levels=arrays.levels)
    first = [date(2025, 6, 1), date(2025, 7, 1)]
    for pool in ("not_yet_treated", "never_treated", "account_holders"):
        a = _quiet(match_cohorts, blind, TwinSettings(pool=pool, gate_min_treated=10),
                   cohorts=first, pre=True)
        b = _quiet(match_cohorts, arrays, TwinSettings(pool=pool, gate_min_treated=10,
                                                       coworkers_min_firm_size=999),
                   cohorts=first, pre=True)
        assert not blind.employers
        assert_frame_equal(a.pairs, b.pairs)
        assert_frame_equal(a.summary.drop("seconds"), b.summary.drop("seconds"))
        assert not any(c.startswith("unmatched_no_employer") for c in a.summary.columns)
        assert set(a.unmatched["reason"]) <= {"caliper", "no_controls", "exhausted"}
        assert_frame_equal(a.pre, b.pre)
        assert a.pre.height or pool != "not_yet_treated"
    with pytest.raises(ValueError, match="main employers"):
        risk_set(blind, arrays.month_index(first[0]), "coworkers")


# --------------------------------------------------------------------------- tiny panel

COHORT = date(2024, 6, 1)


def _tiny_panel(root: Path) -> None:
    """48 months; cohort 2024-06. Firm EA: treated T1, 8 eligible co-workers and one aged
    70 (10 persons); firm EB: treated T2, 7 co-workers and P (9 persons), P moves to EA in
    the cohort month; T3 worked for EA until m-2, no employer in m-1."""
    rng = np.random.default_rng(0)
    people = [("T1", "EA", "EA", True, 35), ("T2", "EB", "EB", True, 35),
              ("T3", "EA", None, True, 35), ("P", "EB", "EB", False, 35),
              *((f"A{i}", "EA", "EA", False, 30 + i) for i in range(8)),
              ("OLD", "EA", "EA", False, 70),
              *((f"B{i}", "EB", "EB", False, 30 + i) for i in range(7))]
    months = pl.date_range(date(2020, 7, 1), date(2024, 6, 1), "1mo", eager=True).to_list()
    rows = []
    for pid, (code, before, at_m1, treated, age) in enumerate(people):
        wage = float(rng.uniform(800, 3000))
        for t, mo in enumerate(months):
            emp = before if mo < _prev(COHORT) else (at_m1 if mo == _prev(COHORT) else
                                                      ("EA" if code == "P" else at_m1))
            rows.append({
                "pid": pid, "month": mo, "person_code": code, "sex": "F",
                "ila_first_start": COHORT if treated else None,
                **{c: 0 for c in SERIES},
                "eligible": 1 if age < 65 else 0, "age": age, "isced_level": 3,
                "employed": int(emp is not None), "days_worked": 30 if emp else 0,
                "earnings_real": (wage + 5 * t + rng.normal(0, 50)) if emp else 0.0,
                **{c: None for c in CATEGORIES}, "region_code": "LV006",
                "employer_id": emp,
            })
    df = pl.DataFrame(rows).with_columns(pl.col(c).cast(pl.String) for c in CATEGORIES)
    for year in range(2020, 2025):
        part = root / f"year={year}"
        part.mkdir(parents=True)
        df.filter(pl.col("month").dt.year() == year).write_parquet(part / "part-0.parquet")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> PanelArrays:
    root = tmp_path_factory.mktemp("tiny_panel")
    _tiny_panel(root)
    return PanelArrays.load(root)


def _code(a: PanelArrays, pids) -> list[str]:
    return sorted(a.person_code[np.asarray(pids, dtype=np.int64)].tolist())


@pytest.mark.parametrize("min_size", [9, 10, 11])
def test_tiny_panel_firm_size_boundary(tiny, min_size: int) -> None:
    m = tiny.month_index(COHORT)
    s = TwinSettings(pool="coworkers", exact=(), coarsen=(), caliper=None, ratio=20,
                     coworkers_min_firm_size=min_size, gate_min_treated=1)
    res = _quiet(match_cohorts, tiny, s)
    treated, cand, _ = risk_set(tiny, m, "coworkers", min_firm_size=min_size)
    assert _code(tiny, treated) == ["T1", "T2", "T3"]
    ea = [f"A{i}" for i in range(8)]
    eb = [*(f"B{i}" for i in range(7)), "P"]  # P: EB in m-1 (EA only from the cohort month)
    want = {9: sorted([*ea, *eb]), 10: sorted(ea), 11: []}[min_size]
    assert _code(tiny, cand) == want
    unmatched = tiny.person_code[res.unmatched["treated_id"].to_numpy()].tolist()
    reasons = dict(zip(unmatched, res.unmatched["reason"].to_list(), strict=True))
    assert reasons["T3"] == coworkers.NO_EMPLOYER
    p = res.pairs
    twins_of = {t: _code(tiny, p.filter(pl.col("treated_pid") == pid)["twin_pid"])
                for t, pid in (("T1", 0), ("T2", 1))}
    if min_size <= 10:
        assert twins_of["T1"] == sorted(ea) and "T1" not in reasons
    else:
        assert reasons["T1"] == coworkers.FIRM_TOO_SMALL and not twins_of["T1"]
    if min_size == 9:
        assert twins_of["T2"] == sorted(eb) and "T2" not in reasons
    else:
        assert reasons["T2"] == coworkers.FIRM_TOO_SMALL and not twins_of["T2"]
    row = res.summary.row(0, named=True)
    assert row["n_treated"] == 3
    assert row["unmatched_no_employer"] == 1
    assert row["unmatched_firm_too_small"] == {9: 0, 10: 1, 11: 2}[min_size]
    assert row["n_candidates"] == len(want)


def test_firm_sizes_and_reasons_helpers() -> None:
    codes = np.array([0, 0, 1, -1, 0, 2, 2], dtype=np.int32)
    assert coworkers.firm_sizes(codes).tolist() == [3, 3, 1, 0, 3, 2, 2]

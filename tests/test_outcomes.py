"""Event-time outcome trajectories (impact.outcomes): alignment, censoring, definitions.

Hand-made panels: ``earnings_real = 1000 * pid + t`` makes every cell identify its person
and calendar month, so the alignment of twins on their treated person's calendar months can
be read off the values.
"""

from __future__ import annotations

import warnings
from datetime import date

import numpy as np
import polars as pl
import pytest

from impact.outcomes import (
    Status,
    build_trajectories,
    candidate_change_means,
    load_sector_rel_wage,
    outcome_values,
    sector_daily_wage_table,
)
from impact.twins.features import CATEGORIES, SERIES, PanelArrays

T = 60
M0 = date(2020, 1, 1)


def month(i: int) -> date:
    return date(M0.year + (M0.month - 1 + i) // 12, (M0.month - 1 + i) % 12 + 1, 1)


def tiny(n: int = 6, first_start: dict[int, int] | None = None) -> PanelArrays:
    """``n`` persons x 60 months, everyone employed 20 days at ``1000 * pid + t``."""
    months = [month(i) for i in range(T)]
    series = {c: np.zeros((n, T), dtype=d) for c, d in SERIES.items()}
    pid = np.arange(n)[:, None]
    t = np.arange(T)[None, :]
    series["earnings_real"][:] = 1000 * pid + t
    series["days_worked"][:] = 20
    series["employed"][:] = 1
    series["daily_wage_real"][:] = (1000 * pid + t) / 20
    series["eligible"][:] = 1
    series["age"][:] = 40
    series["skill_level"][:] = 2
    codes = {c: np.full((n, T), -1, dtype=np.int16) for c in CATEGORIES}
    codes["nace_section"][:] = np.arange(n)[:, None] % 2  # sections "C", "J"
    levels = {c: [] for c in CATEGORIES}
    levels["nace_section"] = ["C", "J"]
    fs = np.full(n, -1, dtype=np.int32)
    for p, m in (first_start or {}).items():
        fs[p] = m
    return PanelArrays(
        person_code=np.array([f"P{i:03d}" for i in range(n)], dtype=object),
        sex=np.array(["F"] * n, dtype=object),
        first_start=fs,
        months=months,
        series=series,
        codes=codes,
        levels=levels,
    )


def pairs_frame(rows: list[tuple[int, int, int, float]]) -> pl.DataFrame:
    """(cohort month index, treated pid, twin pid, weight) -> a twins table."""
    return pl.DataFrame(
        {
            "cohort": [month(c) for c, _, _, _ in rows],
            "treated_pid": [t for _, t, _, _ in rows],
            "twin_pid": [j for _, _, j, _ in rows],
            "weight": [w for _, _, _, w in rows],
        },
        schema_overrides={"treated_pid": pl.Int32, "twin_pid": pl.Int32},
    )


def treatment_frame(arrays: PanelArrays, ends: dict[int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "person_code": [arrays.person_code[p] for p in ends],
            "end_month": [month(m) for m in ends.values()],
        }
    )


@pytest.fixture()
def setup():
    # person 0 starts in month 40 (ends 43); twins 2 and 3; twin 3 starts itself in month 46
    # person 1 starts in month 45 (ends 45); twins 3 and 4
    arrays = tiny(6, {0: 40, 1: 45, 3: 46})
    pairs = pairs_frame([(40, 0, 2, 0.5), (40, 0, 3, 0.5), (45, 1, 3, 0.5), (45, 1, 4, 0.5)])
    tr = treatment_frame(arrays, {0: 43, 1: 45})
    return arrays, pairs, tr


def test_twins_take_the_treated_persons_calendar_months(setup) -> None:
    arrays, pairs, tr = setup
    traj = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real"])
    g = traj.grid("start")
    e = g.event_time
    assert e[0] == -36 and e[-1] == T - 1 - 40  # as far as the data reach for cohort 40
    y = g.treated["earnings_real"]
    # treated rows: person 0 (cohort 40), person 1 (cohort 45)
    assert list(traj.treated_pid) == [0, 1]
    ok0 = 40 + e < T
    assert np.array_equal(y[0, ok0], 40 + e[ok0])
    ok1 = 45 + e < T
    assert np.array_equal(y[1, ok1], 1000 + 45 + e[ok1])
    # pair rows in canonical order: (0,2), (0,3), (1,3), (1,4)
    assert list(traj.twin_pid) == [2, 3, 3, 4]
    z = g.twins["earnings_real"]
    col = g.column(-5)
    assert z[0, col] == 2000 + 35  # twin 2 in month 35 = cohort 40 - 5
    assert z[2, col] == 3000 + 40  # twin 3 for person 1: month 45 - 5
    # end clock: e = 0 is the leaving month (43 and 45)
    ge = traj.grid("end")
    c0 = ge.column(0)
    assert ge.treated["earnings_real"][0, c0] == 43
    assert ge.twins["earnings_real"][0, c0] == 2043
    assert ge.twins["earnings_real"][3, ge.column(6)] == 4000 + 51


def test_a_twin_is_censored_from_its_own_start(setup) -> None:
    arrays, pairs, tr = setup
    traj = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real"])
    g = traj.grid("start")
    # twin 3 of person 0 (cohort 40) starts in month 46 -> censored from e = 6
    row = 1
    for e in (-36, -1, 0, 5):
        assert g.twin_status[row, g.column(e)] == Status.OBSERVED
        assert np.isfinite(g.twins["earnings_real"][row, g.column(e)])
    for e in (6, 7, 19):
        assert g.twin_status[row, g.column(e)] == Status.OWN_START
        assert np.isnan(g.twins["earnings_real"][row, g.column(e)])
    # the same twin of person 1 (cohort 45) is censored from e = 1
    assert g.twin_status[2, g.column(0)] == Status.OBSERVED
    assert g.twin_status[2, g.column(1)] == Status.OWN_START
    # the treated persons themselves are never censored by their own start
    assert (g.treated_status[:, g.column(0) :][:, :10] == Status.OBSERVED).all()
    counts = g.status_counts().filter(pl.col("event_time") == 6).row(0, named=True)
    assert counts["twins_own_start"] == 2 and counts["twins_observed"] == 2


def test_months_beyond_the_data_and_out_of_the_panel(setup) -> None:
    arrays, pairs, tr = setup
    arrays.series["age"][4, 50:] = -1  # twin 4 emigrates in month 50
    traj = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real", "employed"])
    g = traj.grid("start")
    # person 1 (cohort 45) reaches month 59 at e = 14; e = 15 is beyond the data
    c = g.column(15)
    assert g.treated_status[1, c] == Status.BEYOND_DATA
    assert np.isnan(g.treated["earnings_real"][1, c])
    assert (g.twin_status[[2, 3], c] != Status.OBSERVED).all()
    assert g.twin_status[3, c] == Status.BEYOND_DATA
    # twin 4 out of the panel from month 50 = e 5 of cohort 45: missing, not zero
    assert g.twin_status[3, g.column(4)] == Status.OBSERVED
    assert g.twin_status[3, g.column(5)] == Status.OUT_OF_PANEL
    assert np.isnan(g.twins["employed"][3, g.column(5)])


def test_a_twin_that_started_before_the_cohort_is_rejected() -> None:
    arrays = tiny(4, {0: 40, 2: 38})
    with pytest.raises(ValueError, match="started ILA"):
        build_trajectories(arrays, pairs_frame([(40, 0, 2, 1.0)]), outcomes=["employed"])


def test_without_treatment_table_only_the_start_clock() -> None:
    arrays = tiny(4, {0: 40})
    traj = build_trajectories(arrays, pairs_frame([(40, 0, 2, 1.0)]), outcomes=["employed"])
    assert set(traj.grids) == {"start"}
    with pytest.raises(KeyError):
        traj.grid("end")


def test_baseline_is_the_mean_of_the_pre_start_window(setup) -> None:
    arrays, pairs, tr = setup
    traj = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real"])
    bt, bp = traj.baseline("earnings_real")  # months g-12 .. g-1: mean g - 6.5
    assert np.allclose(bt, [40 - 6.5, 1000 + 45 - 6.5])
    assert np.allclose(bp, [2000 + 33.5, 3000 + 33.5, 3000 + 38.5, 4000 + 38.5])
    bt3, _ = traj.baseline("earnings_real", (-3, -1))
    assert np.allclose(bt3, [38, 1043])
    with pytest.raises(ValueError):
        traj.baseline("earnings_real", (-3, 0))


def test_outcome_definitions() -> None:
    arrays = tiny(3)
    s = arrays.series
    s["days_worked"][0, 5] = 0
    s["employed"][1, 5] = 0
    s["skill_level"][1, 5] = 0
    s["skill_level"][2, 5] = 0  # employed, occupation unknown
    pid = np.array([0, 1, 2])
    t = np.array([5, 5, 5])
    dw, _ = outcome_values(arrays, "daily_wage_real", pid, t)
    assert np.isnan(dw[0]) and dw[2] == pytest.approx((2000 + 5) / 20)
    sk, _ = outcome_values(arrays, "skill_level", pid, t)
    assert sk[0] == 2 and sk[1] == 0 and np.isnan(sk[2])
    rel, _ = outcome_values(arrays, "sector_rel_wage", pid, t, sector_rel_wage={"C": 0.9, "J": 1.6})
    assert rel[0] == 0.9 and np.isnan(rel[1]) and rel[2] == 0.9
    with pytest.raises(ValueError):
        outcome_values(arrays, "sector_rel_wage", pid, t)
    with pytest.raises(KeyError):
        outcome_values(arrays, "wage", pid, t)
    v, st = outcome_values(arrays, "employed", pid, np.array([-1, 59, 60]))
    assert list(st) == [Status.BEYOND_DATA, Status.OBSERVED, Status.BEYOND_DATA]
    assert np.isnan(v[0]) and v[1] == 1 and np.isnan(v[2])


def test_sector_daily_wage_table_by_hand() -> None:
    arrays = tiny(4)  # sections: pids 0, 2 -> C; 1, 3 -> J
    arrays.series["days_worked"][2, 7] = 0  # pid 2 does not count in month 7
    tab = sector_daily_wage_table(arrays)
    assert tab.shape == (2, T)
    assert tab[0, 3] == pytest.approx(((0 + 3) / 20 + (2000 + 3) / 20) / 2)
    assert tab[1, 3] == pytest.approx(((1000 + 3) / 20 + (3000 + 3) / 20) / 2)
    assert tab[0, 7] == pytest.approx((0 + 7) / 20)
    v, _ = outcome_values(
        arrays, "sector_daily_wage", np.array([2]), np.array([3]), sector_wage=tab
    )
    assert v[0] == pytest.approx(tab[0, 3])


def test_candidate_change_means_by_hand() -> None:
    # cohort 40: treated pid 0; candidates 1..4 (pid 4 starts in 45 -> censored from 45)
    arrays = tiny(5, {0: 40, 4: 45})
    mean, count = candidate_change_means(arrays, [40], "earnings_real", baseline=(-2, -1))
    # change of every candidate at month t: t - 38.5
    assert mean[0, 44] == pytest.approx(44 - 38.5)
    assert count[0, 44] == 4 and count[0, 45] == 3
    assert mean[0, 20] == pytest.approx(20 - 38.5)  # pre-period months too
    m2, c2 = candidate_change_means(arrays, [40], "earnings_real", baseline=(-2, -1), chunk=3)
    assert np.array_equal(count, c2) and np.allclose(mean, m2, equal_nan=True)


def test_row_order_of_the_pairs_does_not_matter(setup) -> None:
    arrays, pairs, tr = setup
    a = build_trajectories(arrays, pairs, tr, outcomes=["earnings_real"])
    b = build_trajectories(arrays, pairs.reverse(), tr.reverse(), outcomes=["earnings_real"])
    for clock in ("start", "end"):
        x, y = a.grid(clock), b.grid(clock)
        assert np.array_equal(
            x.treated["earnings_real"], y.treated["earnings_real"], equal_nan=True
        )
        assert np.array_equal(x.twins["earnings_real"], y.twins["earnings_real"], equal_nan=True)
    assert np.array_equal(a.twin_pid, b.twin_pid)


def test_on_the_synthetic_panel(research) -> None:
    """Trajectories on real twins: values equal the panel rows; no twin after its start."""
    from impact.twins.riskset import TwinSettings, match_cohorts

    arrays = PanelArrays.load(research.root / "panel", date(2021, 1, 1), date(2028, 6, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tw = match_cohorts(arrays, TwinSettings(gate_min_treated=10))
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    traj = build_trajectories(
        arrays, tw.pairs, tr, sector_rel_wage=load_sector_rel_wage(research.root / "sources")
    )
    assert traj.n_treated == tw.pairs["treated_pid"].n_unique()
    assert (traj.end >= traj.cohort).all()
    g = traj.grid("start")
    # treated outcome at e = 3 equals the panel row of (person, cohort + 3)
    e = 3
    c = g.column(e)
    t = traj.cohort + e
    inside = t < len(arrays.months)
    keys = pl.DataFrame(
        {
            "person_code": traj.treated_code[inside],
            "month": [arrays.months[m] for m in t[inside]],
            "got": g.treated["earnings_real"][inside, c],
        }
    )
    panel = research.panel.select("person_code", "month", "earnings_real")
    j = keys.join(panel, on=["person_code", "month"], how="left")
    have = j.filter(pl.col("earnings_real").is_not_null())
    assert have.height > 0
    assert np.allclose(have["got"], have["earnings_real"], rtol=1e-5, atol=0.01)
    # no twin is observed at or after its own first start
    cal = traj.cohort[traj.pair_treated][:, None] + g.event_time[None, :]
    after = (traj.twin_start[:, None] >= 0) & (cal >= traj.twin_start[:, None])
    assert not np.isfinite(g.twins["earnings_real"][after]).any()
    assert (g.twin_status[after & (cal < len(arrays.months))] != Status.OBSERVED).all()
    # the pre-period is complete for earnings (everyone resident before the start)
    assert np.isfinite(g.treated["earnings_real"][:, g.column(-12) : g.column(0)]).all()

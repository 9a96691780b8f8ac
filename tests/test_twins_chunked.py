"""Twins with memory bounded by configuration: a month window per run and persons in chunks.

* chunked (``twins.person_chunk``) equals everyone at once: the plan (same fingerprint), every
  cohort's pairs, the balance tables, summary, unmatched and pre-trajectories, for the
  default pool, ``account_holders`` and ``coworkers``, with a chunk that does not divide
  the population and chunks smaller than a cohort (tiny panel);
* cohorts matched on arrays loaded from 36 months before them equal those matched on arrays
  loaded from the plan's first month;
* a first ILA start before the loaded months is not "never treated".
"""

from __future__ import annotations

import math
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from impact.twins.features import PanelArrays
from impact.twins.plan import (
    cohort_window,
    combine_planned,
    match_planned_cohorts,
    update_plan,
    write_cohort,
)
from impact.twins.riskset import (
    STARTED_BEFORE,
    Population,
    TwinSettings,
    load_window,
    risk_set,
    shift_month,
)
from tests.test_coworkers import COHORT, _tiny_panel
from tests.twins_files import assert_same_twins

FIRST = date(2021, 1, 1)
LAST = date(2028, 6, 1)
SETTINGS = {
    "not_yet_treated": TwinSettings(gate_min_treated=10),
    "account_holders": TwinSettings(gate_min_treated=10, pool="account_holders"),
    "coworkers": TwinSettings(gate_min_treated=10, pool="coworkers", exact=("sex",), coarsen=(),
                              coworkers_min_firm_size=3),
}


def _run(pop: Population, s: TwinSettings, out: Path) -> str:
    """Plan, every cohort, combination under ``out``; the plan's fingerprint."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, _ = update_plan(pop, s, out, force=True)
        for o in match_planned_cohorts(pop, plan, list(plan.cohorts)):
            write_cohort(o, plan, out)
        combine_planned(plan, out)
    return plan.fingerprint


@pytest.fixture(scope="module")
def panel_dir(research) -> Path:
    return research.root / "panel"


@pytest.fixture(scope="module")
def whole(panel_dir: Path, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Every pool's twins on every person's arrays (``person_chunk`` None)."""
    pop = Population.read(panel_dir, FIRST, LAST)
    out = {}
    for pool, s in SETTINGS.items():
        d = tmp_path_factory.mktemp(f"whole_{pool}")
        out[pool] = (d, _run(pop, s, d))
    return out


@pytest.mark.parametrize(("pool", "chunk"), [
    ("not_yet_treated", 1500),  # does not divide the 4,000 persons
    ("not_yet_treated", 1000),
    ("account_holders", 1500),
    ("coworkers", 1500),
])
def test_chunked_equals_unchunked(panel_dir, whole, pool: str, chunk: int,
                                  tmp_path: Path) -> None:
    ref, fingerprint = whole[pool]
    pop = Population.read(panel_dir, FIRST, LAST, chunk=chunk)
    assert _run(pop, SETTINGS[pool], tmp_path) == fingerprint
    assert_same_twins(ref, tmp_path)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_chunked")
    _tiny_panel(root)
    return root


@pytest.mark.parametrize("pool", ["not_yet_treated", "coworkers"])
def test_chunks_smaller_than_a_cohort(tiny_dir: Path, pool: str, tmp_path: Path) -> None:
    """20 persons, 3 treated in the cohort: chunks of 1 and 2 persons split the cohort's
    treated, candidates and firms."""
    s = TwinSettings(pool=pool, exact=(), coarsen=(), caliper=None, ratio=3, gate_min_treated=1,
                     coworkers_min_firm_size=9, ps_controls_per_treated=4)
    first = shift_month(COHORT, -36)
    ref = _run(Population.read(tiny_dir, first), s, tmp_path / "whole")
    assert pl.read_parquet(tmp_path / "whole" / "summary.parquet")["n_matched"].sum() > 0
    for chunk in (1, 2, 7):
        out = tmp_path / f"chunk{chunk}"
        assert _run(Population.read(tiny_dir, first, chunk=chunk), s, out) == ref
        assert_same_twins(tmp_path / "whole", out)


def _comparable(summary: dict) -> dict:
    """A cohort summary without its run time, undefined numbers (NaN) as None so that two
    summaries of a cohort without matches compare equal."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in summary.items() if k != "seconds"}


@pytest.mark.parametrize("chunk", [None, 1500])
def test_window_loaded_equals_full_loaded(panel_dir, whole, chunk: int | None) -> None:
    """Cohorts 2025-12 .. 2026-05 matched with the plan made on the arrays from 2021-01, on
    a population of 2022-12 .. 2026-05 only (36 months before the first of them)."""
    import pickle

    from impact.twins.plan import read_plan

    ref, _ = whole["not_yet_treated"]
    plan = read_plan(ref)
    cohorts = [c for c in plan.cohorts if c >= date(2025, 12, 1)]
    first, last = cohort_window(cohorts)
    assert first == date(2022, 12, 1) and last == date(2026, 5, 1)
    pop = Population.read(panel_dir, first, last, chunk=chunk)
    if chunk is None:
        assert pop.arrays is not None and pop.arrays.months[0] == first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = match_planned_cohorts(pop, plan, cohorts)
    for o in outs:
        with (ref / "cohorts" / f"{o.cohort:%Y-%m}.pkl").open("rb") as f:
            fingerprint, want = pickle.load(f)  # written by write_cohort in the test
        assert fingerprint == plan.fingerprint
        assert_frame_equal(o.pairs, want.pairs)
        assert_frame_equal(o.balance, want.balance)
        assert_frame_equal(o.unmatched, want.unmatched)
        assert_frame_equal(o.pre, want.pre)
        assert _comparable(o.summary) == _comparable(want.summary)


def test_start_before_window_is_not_never_treated(panel_dir) -> None:
    """Persons whose first start is the month before the first loaded month: ``-1`` in the
    plain load (never treated), :data:`STARTED_BEFORE` with :func:`load_window`; the risk
    sets of later months are those of arrays loaded from earlier."""
    start = date(2025, 6, 1)  # the test panel's largest cohort
    first = shift_month(start, 1)
    full = load_window(panel_dir, FIRST, LAST)
    plain = PanelArrays.load(panel_dir, first, LAST)
    window = load_window(panel_dir, first, LAST)
    starters = np.flatnonzero(full.first_start == full.month_index(start))
    assert starters.size >= 5
    assert (plain.first_start[starters] == -1).all()  # the collision load_window removes
    assert (window.first_start[starters] == STARTED_BEFORE).all()
    assert (full.first_start[full.first_start < 0] == -1).all()  # nothing before 2021
    later = full.first_start > full.month_index(start)
    assert (window.first_start[later] == full.first_start[later] - full.month_index(first)).all()
    for pool in ("never_treated", "not_yet_treated", "account_holders"):
        for month in (first, date(2025, 9, 1), date(2026, 1, 1)):
            if pool == "account_holders" and month == first:
                continue  # the account of m-1 is not loaded
            a = risk_set(full, full.month_index(month), pool)
            b = risk_set(window, window.month_index(month), pool)
            assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2], strict=True))
            assert a[2] == b[2]
        # the plain load makes the earlier starters candidates
        c = risk_set(plain, plain.month_index(date(2025, 9, 1)), pool)[1]
        assert np.isin(starters, c).any()
    # a chunked population (first starts as month numbers) has the same risk sets
    pop = Population.read(panel_dir, first, LAST, chunk=1500)
    for month in (first, date(2025, 9, 1)):
        a = risk_set(full, full.month_index(month), "not_yet_treated")
        b = pop.risk(month, "not_yet_treated")
        assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2], strict=True))


def test_employer_codes_read_in_chunks(panel_dir) -> None:
    """The dense rank of the employer pseudonyms of a month, read 999 or 1,500 pids at a
    time, is that of the whole month."""
    from impact.twins.coworkers import read_employers

    month = date(2025, 5, 1)
    whole = read_employers(panel_dir, month, 4000)
    assert (whole >= 0).sum() > 1000
    for chunk in (999, 1500):
        assert np.array_equal(read_employers(panel_dir, month, 4000, chunk), whole)
